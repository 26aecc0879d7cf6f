"""Netlink sockets inside another network namespace, without forking.

pyroute2's netns support (AsyncIPRoute(netns=...)) forks a child that enters the namespace
and passes a socket back: 15-50 ms each, which was most of an endpoint's creation time.
setns(2)/unshare(2) with CLONE_NEWNET act on the calling thread only, so a short-lived
thread enters (or creates) the namespace, opens the sockets and exits; a socket stays in
the namespace it was created in. The thread is a fresh one, never a pool thread, so no
thread of this process is ever left in a foreign namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from pyroute2.iproute.linux import AsyncIPRoute

from .netns import netns_key

T = TypeVar("T")

NETLINK_ROUTE = 0
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]  # fmt: skip
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(rc: int, what: str, path: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} {path}: {os.strerror(err)}")


def _rtnl(n: int) -> list[socket.socket]:
    return [socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE) for _ in range(n)]


def _in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread that then exits, taking its namespace with it."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=run, name="overlayd-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def enter(path: str, n: int = 1, then: Callable[[], None] | None = None) -> list[socket.socket]:
    """n rtnetlink sockets inside the existing netns at path. FileNotFoundError if path is
    not a network namespace: nothing is ever created (the flags=0 of pyroute2). `then`
    runs inside first (/proc/sys/net there is that namespace's)."""
    if netns_key(path) is None:
        raise FileNotFoundError(errno.ENOENT, "no network namespace", path)

    def inside() -> list[socket.socket]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, _CLONE_NEWNET), "setns into", path)
        finally:
            os.close(fd)
        if then is not None:
            then()
        return _rtnl(n)

    return _in_thread(inside)


def create(path: str, n: int = 1, then: Callable[[], None] | None = None) -> list[socket.socket]:
    """A new netns bind-mounted at path (an existing, empty file), and n sockets in it;
    `then` runs inside first."""

    def inside() -> list[socket.socket]:
        _check(_libc.unshare(_CLONE_NEWNET), "unshare for", path)
        src = b"/proc/thread-self/ns/net"  # not /proc/self: that is the main thread's
        _check(_libc.mount(src, path.encode(), b"none", _MS_BIND, None), "bind-mount", path)
        if then is not None:
            then()
        return _rtnl(n)

    return _in_thread(inside)


def in_scratch_netns(fn: Callable[[], T]) -> T:
    """fn run inside a new, unnamed network namespace that is gone when it returns (no
    mount holds it): for probing what the kernel accepts without touching any real one."""

    def inside() -> T:
        _check(_libc.unshare(_CLONE_NEWNET), "unshare for", "a scratch netns")
        return fn()

    return _in_thread(inside)


@contextlib.asynccontextmanager
async def ipr_in(path: str) -> AsyncIterator[AsyncIPRoute]:
    """An AsyncIPRoute inside the netns at path, closed on exit."""
    (sock,) = enter(path)
    ipr = AsyncIPRoute(fileno=sock.detach())
    try:
        yield ipr
    finally:
        ipr.close()
