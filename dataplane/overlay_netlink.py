"""Overlay sandboxes through netlink: observe their contents, apply OverlayOps and link ops
scoped to a sandbox (op.netns). The only kernel writer for sandboxes, next to netlink.py.

One connection per sandbox (sandbox.SandboxConn) stays open for the sandbox's life; FDB and
neigh entries go through its batch socket (nlbatch), in a worker thread, since a batch of
10 000 entries keeps the kernel busy for tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from contextlib import suppress
from ipaddress import IPv4Address

from pyroute2.iproute.linux import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from . import neighmsg
from .model import (
    SANDBOX_BRIDGE,
    SANDBOX_VXLAN,
    CreateOverlayBridge,
    CreateSandbox,
    CreateVxlan,
    DelSandbox,
    FdbEntry,
    LinkOp,
    NeighEntry,
    ObservedSandbox,
    OverlayOp,
    OverlaySpec,
    ProgramPeers,
    bridge_alias,
    vxlan_alias,
)
from .neighmsg import NeighRecord
from .netlink import apply_link_op, dump_links, index_of
from .netns import netns_key
from .nlbatch import NeighSocket
from .sandbox import SandboxConn, create_netns, list_sandboxes, open_netns, remove_netns

log = logging.getLogger(__name__)


class PeerBatchError(RuntimeError):
    """Some entries of a ProgramPeers batch failed; the others were applied."""


def overlay_bridge_mac(spec: OverlaySpec) -> str:
    """02:42:<gateway IPv4>, as for local bridges: never follows its ports."""
    return "02:42:" + ":".join(f"{b:02x}" for b in spec.gateway.ip.packed)


class Overlays:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self._conns: dict[str, SandboxConn] = {}

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def _conn(self, path: str) -> SandboxConn:
        """The open connection into path, (re)opened if the netns there is another one."""
        conn = self._conns.get(path)
        if conn is not None:
            if os.path.exists(path) and conn.key == netns_key(path):
                return conn
            conn.close()
            del self._conns[path]
        conn = SandboxConn.wrap(path, open_netns(path))
        self._conns[path] = conn
        return conn

    # --- observe -------------------------------------------------------------------------

    async def observe(self) -> dict[str, ObservedSandbox]:
        found = list_sandboxes(self.run_dir)
        for path in set(self._conns) - {p for p, alive in found.items() if alive}:
            self._conns.pop(path).close()
        out: dict[str, ObservedSandbox] = {}
        for path, alive in found.items():
            if not alive:
                out[path] = ObservedSandbox(path, False)
                continue
            try:
                out[path] = await self._observe_one(path)
            except Exception as e:  # one sandbox must not blind the whole data plane
                log.warning("sandbox %s could not be read: %r", path, e)
                broken = self._conns.pop(path, None)
                if broken is not None:
                    broken.close()  # reopened next time
                out[path] = ObservedSandbox(path, True, unreadable=repr(e))
        return out

    async def _observe_one(self, path: str) -> ObservedSandbox:
        try:
            conn = self._conn(path)
        except FileNotFoundError:
            return ObservedSandbox(path, False)
        links, indexes = await dump_links(conn.ipr)
        vx = links.get(SANDBOX_VXLAN)
        if vx is None or vx.kind != "vxlan" or not vx.owned:
            return ObservedSandbox(path, True, links)
        fdb, neigh = await asyncio.to_thread(_entries, conn.neigh, indexes[SANDBOX_VXLAN])
        return ObservedSandbox(path, True, links, fdb, neigh)

    # --- apply ---------------------------------------------------------------------------

    async def apply(self, op: OverlayOp | LinkOp, host: AsyncIPRoute) -> None:
        """An OverlayOp, or a link op whose netns is a sandbox. `host` is the host
        namespace's socket (vxlan devices are created through it)."""
        match op:
            case CreateSandbox(path, _network_id):
                await self._create(path)
            case DelSandbox(path):
                await self._delete(path)
            case CreateOverlayBridge(spec, path):
                await _create_bridge(self._conn(path).ipr, spec)
            case CreateVxlan(spec, path, vtep):
                await _create_vxlan(host, self._conn(path).ipr, spec, path, vtep)
            case ProgramPeers():
                await self._program(op)
            case _:
                if op.netns is None:
                    raise TypeError(f"not a sandbox op: {op!r}")
                await apply_link_op(self._conn(op.netns).ipr, op)

    async def _create(self, path: str) -> None:
        conn = SandboxConn.wrap(path, create_netns(path))
        self._conns[path] = conn
        await conn.ipr.link("set", index=await index_of(conn.ipr, "lo"), state="up")

    async def _delete(self, path: str) -> None:
        """Devices first, explicitly: the netns itself dies only when its last reference
        goes (asynchronously), and its vxlan must free the VNI now. Veths go first, so a
        container loses its interface before the network behind it."""
        try:
            conn = self._conn(path)
        except (FileNotFoundError, OSError):
            conn = None
        if conn is not None:
            links, indexes = await dump_links(conn.ipr)
            order = sorted(links.values(), key=lambda x: (x.kind != "veth", x.kind == "bridge"))
            for link in order:
                if link.ifname != "lo":
                    try:
                        await conn.ipr.link("del", index=indexes[link.ifname])
                    except NetlinkError as e:
                        if e.code not in (errno.ENODEV, errno.ENOENT):
                            raise
            conn.close()
            self._conns.pop(path, None)
        remove_netns(path)

    async def _program(self, op: ProgramPeers) -> None:
        conn = self._conn(op.netns)
        index = await index_of(conn.ipr, op.ifname)
        await asyncio.to_thread(_program, conn.neigh, index, op)


async def _create_bridge(ipr: AsyncIPRoute, spec: OverlaySpec) -> None:
    await ipr.link("add", ifname=SANDBOX_BRIDGE, kind="bridge", address=overlay_bridge_mac(spec))
    index = await index_of(ipr, SANDBOX_BRIDGE)
    # MTU by setlink (see netlink._create_bridge); alias in the first request after create
    await ipr.link(
        "set", index=index, ifalias=bridge_alias(spec.network_id), mtu=spec.mtu, state="up"
    )


async def _create_vxlan(
    host: AsyncIPRoute, ipr: AsyncIPRoute, spec: OverlaySpec, path: str, vtep: IPv4Address
) -> None:
    """Created by the host's socket with the sandbox as its target namespace: the device
    lands in the sandbox while its link net, where the UDP socket is bound, stays the host.
    A VNI that is still taken (same VNI and port, any device made from the host namespace)
    is the kernel's EEXIST."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        await host.link(
            "add",
            ifname=SANDBOX_VXLAN,
            kind="vxlan",
            net_ns_fd=fd,
            mtu=spec.mtu,
            vxlan_id=spec.vni,
            vxlan_port=spec.dstport,
            vxlan_local=str(vtep),
            vxlan_learning=0,
            vxlan_proxy=1,
            # No outer UDP checksum, as Docker's vxlan: the inner packets carry their own.
            vxlan_udp_csum=0,
        )
    except NetlinkError as e:
        if e.code == errno.EEXIST:
            raise RuntimeError(
                f"VNI {spec.vni} (port {spec.dstport}) is held by a vxlan device overlayd "
                "cannot see or does not own"
            ) from e
        raise
    finally:
        os.close(fd)
    index = await index_of(ipr, SANDBOX_VXLAN)
    try:
        master = await index_of(ipr, SANDBOX_BRIDGE)
        await ipr.link("set", index=index, ifalias=vxlan_alias(spec.network_id))
        await ipr.link("set", index=index, master=master, state="up")
    except BaseException:
        with suppress(Exception):
            await ipr.link("del", index=index)  # no unaliased vxlan left holding the VNI
        raise


# --- FDB and neigh (worker thread) ------------------------------------------------------


def _entries(sock: NeighSocket, index: int) -> tuple[frozenset[FdbEntry], frozenset[NeighEntry]]:
    """The entries overlayd manages on device `index`: permanent NTF_SELF FDB entries
    (not NTF_MASTER: those are br0's, kernel-made) and permanent neighbours."""
    fdb = frozenset(
        FdbEntry(neighmsg.mac_str(r.lladdr), IPv4Address(r.dst))
        for r in sock.dump(neighmsg.AF_BRIDGE)
        if r.ifindex == index and _managed_fdb(r)
    )
    neigh = frozenset(
        NeighEntry(IPv4Address(r.dst), neighmsg.mac_str(r.lladdr))
        for r in sock.dump(neighmsg.AF_INET)
        if r.ifindex == index and _managed_neigh(r)
    )
    return fdb, neigh


def _managed_fdb(r: NeighRecord) -> bool:
    return (
        r.flags & neighmsg.NTF_SELF != 0
        and r.flags & neighmsg.NTF_MASTER == 0
        and r.state & neighmsg.NUD_PERMANENT != 0
        and not r.extra
        and r.lladdr is not None
        and len(r.lladdr) == 6
        and r.dst is not None
        and len(r.dst) == 4
    )


def _managed_neigh(r: NeighRecord) -> bool:
    return (
        r.state & neighmsg.NUD_PERMANENT != 0
        and r.dst is not None
        and len(r.dst) == 4
        and r.lladdr is not None
        and len(r.lladdr) == 6
    )


def _program(sock: NeighSocket, index: int, op: ProgramPeers) -> None:
    n = len(op.replace_fdb) + len(op.replace_neigh) + len(op.del_neigh) + len(op.del_fdb)
    if n == 0:
        return
    seq = sock.seqs(n)
    msgs: list[bytes] = []
    for e in op.replace_fdb:
        msgs.append(neighmsg.fdb_replace(seq + len(msgs), index, e.mac, e.dst))
    for e in op.replace_neigh:
        msgs.append(neighmsg.neigh_replace(seq + len(msgs), index, e.ip, e.mac))
    first_del = len(msgs)
    for e in op.del_neigh:
        msgs.append(neighmsg.neigh_delete(seq + len(msgs), index, e.ip))
    for e in op.del_fdb:
        msgs.append(neighmsg.fdb_delete(seq + len(msgs), index, e.mac, e.dst))
    failed = [
        (i, r)
        for i, r in sock.exchange(msgs)
        if not (i >= first_del and r.error == errno.ENOENT)  # gone already: the goal
    ]
    if failed:
        i, r = failed[0]
        what = r.message or os.strerror(r.error)
        raise PeerBatchError(f"{len(failed)} of {n} FDB/neigh changes failed, e.g. #{i}: {what}")
