"""Container network namespaces: turn what a client calls a container into a path and identity.

A "container" is any netns (DESIGN.md): a name under /run/netns, a path to a netns file, or
a PID. The key (st_dev:st_ino of the nsfs inode) names the namespace itself, so two refs to
one namespace compare equal however they were spelled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

NETNS_RUN_DIR = "/run/netns"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ContainerNetns:
    path: str  # how to reach it later: /run/netns/<name>, /proc/<pid>/ns/net or the given path
    name: str  # netns name, "pid-<pid>" for a PID, else the file's basename
    key: str  # f"{st_dev}:{st_ino}" of the nsfs inode: identity of the namespace


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def netns_key(path: str) -> str | None:
    """Identity of the netns at path, or None if there is none (missing, or not a netns)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_dev != _nsfs_dev():
        return None  # e.g. a leftover /run/netns/x whose bind mount is gone
    return f"{st.st_dev}:{st.st_ino}"


def is_netns(path: str) -> bool:
    return netns_key(path) is not None


def _in_run_dir(path: str) -> bool:
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(NETNS_RUN_DIR)


def resolve_container(ref: str) -> ContainerNetns:
    """Resolve a name, a path or a PID to the namespace it names; LookupError if none.

    All-digit refs are PIDs; a netns literally named "1234" is reachable as /run/netns/1234.
    """
    ref = ref.strip()
    if not ref:
        raise LookupError("empty container reference")
    if "\0" in ref:
        raise LookupError(f"invalid container reference {ref!r}")
    if ref.isascii() and ref.isdigit():  # "²".isdigit() is True, int("²") fails
        path, name = f"/proc/{int(ref)}/ns/net", f"pid-{int(ref)}"
    elif "/" in ref:
        path = os.path.abspath(ref)
        m = re.fullmatch(r"/proc/(\d+)/ns/net", path)
        if m:
            name = f"pid-{m.group(1)}"
        else:
            name = os.path.basename(path)
            if _in_run_dir(path):
                path = os.path.join(NETNS_RUN_DIR, name)
    elif _NAME_RE.match(ref) and ref not in (".", ".."):
        path, name = os.path.join(NETNS_RUN_DIR, ref), ref
    else:
        raise LookupError(f"invalid container reference {ref!r}")
    if not os.path.exists(path):
        raise LookupError(f"no network namespace {ref!r} ({path} does not exist)")
    key = netns_key(path)
    if key is None:
        raise LookupError(f"{path} (from {ref!r}) is not a network namespace")
    return ContainerNetns(path=path, name=name, key=key)


async def free_ifname(netns_path: str, prefix: str = "eth", taken: Iterable[str] = ()) -> str:
    """Lowest <prefix><N> not present in that netns nor in `taken` (names already promised
    to endpoints not yet created). The netns is entered without a fork and never created."""
    from .nsenter import ipr_in  # nsenter needs netns_key from here

    try:
        async with ipr_in(netns_path) as ipr:
            names = {link.get("ifname") async for link in await ipr.link("dump")}
            names.update(taken)
    except FileNotFoundError as e:
        raise LookupError(f"no network namespace at {netns_path}") from e
    names |= set(taken)
    n = 0
    while f"{prefix}{n}" in names:
        n += 1
    return f"{prefix}{n}"


def host_netns_keys() -> frozenset[str]:
    """This process's own netns and PID 1's: never a container. Attaching one would put a
    veth, an address and a default route into the host's own network."""
    keys = {netns_key("/proc/self/ns/net"), netns_key("/proc/1/ns/net")}
    return frozenset(k for k in keys if k is not None)
