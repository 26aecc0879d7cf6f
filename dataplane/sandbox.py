"""Overlay sandbox namespaces: create, enter and remove them (layout.py says where).

Sandboxes are made and entered without a fork (nsenter.py); entering one opens the two
netlink sockets it is then driven through for as long as it exists: one for pyroute2
(links, addresses), one for FDB/neigh batches (nlbatch.py). The bind mount must live in
the host's mount namespace: run overlayd under `nsenter --net=`, not `ip netns exec`
(see DESIGN.md). Blocking calls of a few milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from dataclasses import dataclass

from pyroute2.iproute.linux import AsyncIPRoute

from . import nsenter, sysctl
from .layout import SANDBOX_PREFIX, sandbox_dir
from .netns import netns_key
from .nlbatch import NeighSocket

_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def list_sandboxes(run_dir: str) -> dict[str, bool]:
    """Every sandbox file of this instance -> whether it still is a mounted netns."""
    d = sandbox_dir(run_dir)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return {}
    paths = (os.path.join(d, n) for n in sorted(names) if n.startswith(SANDBOX_PREFIX))
    return {p: netns_key(p) is not None for p in paths}


def create_netns(path: str) -> tuple[socket.socket, socket.socket]:
    """A new netns mounted at path (which must not exist)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    try:
        ipr, neigh = nsenter.create(path, 2, then=sysctl.bridge_netfilter_off)
    except BaseException:
        remove_netns(path)
        raise
    return ipr, neigh


def open_netns(path: str) -> tuple[socket.socket, socket.socket]:
    """Sockets into the existing netns at path; FileNotFoundError if there is none."""
    ipr, neigh = nsenter.enter(path, 2, then=sysctl.bridge_netfilter_off)
    return ipr, neigh


def remove_netns(path: str) -> None:
    """Unmount (lazily: a process still inside keeps its netns) and delete the file."""
    for _ in range(4):  # stacked mounts, should anyone have mounted twice
        if _libc.umount2(path.encode(), _MNT_DETACH) != 0:
            break
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass
class SandboxConn:
    """Open handles into one sandbox, kept for as long as it exists (no fork per call)."""

    path: str
    key: str  # netns identity when opened: a different one at the same path means reopen
    ipr: AsyncIPRoute
    neigh: NeighSocket

    @classmethod
    def wrap(cls, path: str, socks: tuple[socket.socket, socket.socket]) -> SandboxConn:
        key = netns_key(path)
        if key is None:
            for s in socks:
                s.close()
            raise FileNotFoundError(errno.ENOENT, "sandbox vanished", path)
        return cls(path, key, AsyncIPRoute(fileno=socks[0].detach()), NeighSocket(socks[1]))

    def close(self) -> None:
        self.ipr.close()
        self.neigh.close()
