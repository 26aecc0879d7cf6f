"""Links, addresses and routes over rtnetlink (pyroute2 AsyncIPRoute): the only kernel writer
for them. observe() dumps the host namespace; apply() carries out one LinkOp.

The host socket stays open; a container namespace is entered per endpoint creation through
nsenter.ipr_in (no fork; a wrong path fails instead of silently creating a namespace). Every device created gets its `overlayd:` alias in the first
request after the create (the kernel ignores IFLA_IFALIAS on RTM_NEWLINK), and DelLink
re-reads the alias right before deleting.

dump_links() and apply_link_op() take the socket to act through, so overlay sandboxes
(dataplane.overlay_netlink) run the very same code inside their own namespace.
"""

from __future__ import annotations

import os
from contextlib import suppress
from ipaddress import IPv4Address, IPv4Interface
from socket import AF_INET
from typing import Any

from pyroute2.iproute.linux import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

from . import nsenter
from .model import (
    ALIAS_PREFIX,
    AddAddr,
    BridgeSpec,
    CreateBridge,
    CreateEndpoint,
    DelAddr,
    DelLink,
    EndpointSpec,
    LinkOp,
    ObservedLink,
    SetLink,
    VxlanInfo,
    bridge_alias,
    endpoint_alias,
)

_DUMP_ATTEMPTS = 5
_ENOENT, _ENODEV, _EADDRNOTAVAIL = 2, 19, 99
_EAFNOSUPPORT, _EOPNOTSUPP = 97, 95


class OwnershipError(RuntimeError):
    """A DelLink target no longer carries the alias the plan saw: it is not ours to delete."""


def bridge_mac(spec: BridgeSpec) -> str:
    """02:42:<gateway IPv4>: fixed, so the bridge MAC never follows its ports (no ARP churn)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in spec.gateway.ip.packed)


def temp_peer_name(spec: EndpointSpec) -> str:
    """Name of the container end until it is renamed to spec.ifname (15 chars max)."""
    return "ovt" + spec.endpoint_id[:12]


class Netlink:
    """The host namespace."""

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None

    @property
    def host(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()  # no multicast groups bound: no event backlog
        return self._ipr

    async def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def observe(self) -> dict[str, ObservedLink]:
        """All links of the host namespace by name."""
        links, _ = await dump_links(self.host)
        return links

    async def apply(self, op: LinkOp) -> None:
        await apply_link_op(self.host, op)


# --- observe -------------------------------------------------------------------------------


async def dump_links(ipr: AsyncIPRoute) -> tuple[dict[str, ObservedLink], dict[str, int]]:
    """Links of ipr's namespace by name, and their indexes; an interrupted dump is redone."""
    for attempt in range(_DUMP_ATTEMPTS):
        try:
            return await _dump(ipr)
        except NetlinkDumpInterrupted:
            if attempt == _DUMP_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def _dump(ipr: AsyncIPRoute) -> tuple[dict[str, ObservedLink], dict[str, int]]:
    raw = [msg async for msg in await ipr.link("dump")]
    addrs: dict[int, set[IPv4Interface]] = {}
    async for msg in await ipr.addr("dump", family=AF_INET):
        ip = msg.get("local") or msg.get("address")
        addrs.setdefault(msg["index"], set()).add(IPv4Interface(f"{ip}/{msg['prefixlen']}"))
    names = {msg["index"]: msg.get("ifname") for msg in raw}
    links: dict[str, ObservedLink] = {}
    for msg in raw:
        name = msg.get("ifname")
        kind = msg.get(("linkinfo", "kind"))
        links[name] = ObservedLink(
            ifname=name,
            kind=kind,
            alias=msg.get("ifalias"),
            mtu=msg.get("mtu"),
            up=bool(msg["flags"] & IFF_UP),
            master=names.get(msg.get("master")),
            addresses=frozenset(addrs.get(msg["index"], ())),
            vxlan=_vxlan_info(msg) if kind == "vxlan" else None,
        )
    return links, {name: index for index, name in names.items()}


def _vxlan_info(msg: Any) -> VxlanInfo | None:
    data = msg.get(("linkinfo", "data"))
    if data is None or data.get("IFLA_VXLAN_ID") is None:
        return None
    local = data.get("IFLA_VXLAN_LOCAL")
    return VxlanInfo(
        vni=data.get("IFLA_VXLAN_ID"),
        port=data.get("IFLA_VXLAN_PORT"),
        local=IPv4Address(local) if local else None,
        learning=bool(data.get("IFLA_VXLAN_LEARNING")),
        proxy=bool(data.get("IFLA_VXLAN_PROXY")),
        # the link net (where its UDP socket lives) is another namespace than its own
        underlay=msg.get("link_netnsid") is not None,
    )


# --- apply ---------------------------------------------------------------------------------


async def apply_link_op(ipr: AsyncIPRoute, op: LinkOp) -> None:
    """Carry out op through ipr (the host's socket, or a sandbox's for op.netns)."""
    match op:
        case CreateBridge(spec):
            await _create_bridge(ipr, spec)
        case CreateEndpoint(spec):
            await create_endpoint(ipr, spec)
        case SetLink(ifname, mtu, up, master, _netns, peer):
            await _set_link(ipr, ifname, mtu, up, master)
            if peer is not None and mtu is not None:
                async with nsenter.ipr_in(peer[0]) as inside:
                    await inside.link("set", index=await index_of(inside, peer[1]), mtu=mtu)
        case AddAddr(ifname, address):
            await ipr.addr("replace", index=await index_of(ipr, ifname), **_addr(address))
        case DelAddr(ifname, address):
            await _del_addr(ipr, ifname, address)
        case DelLink(ifname, alias, netns, half_made):
            await _del_link(ipr, ifname, alias, unaliased_ok=netns is not None or half_made)
        case _:
            raise TypeError(f"not a link op: {op!r}")


async def index_of(ipr: AsyncIPRoute, ifname: str) -> int:
    found = await ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no link {ifname!r}")
    return found[0]


async def _create_bridge(ipr: AsyncIPRoute, spec: BridgeSpec) -> None:
    await ipr.link("add", ifname=spec.ifname, kind="bridge", address=bridge_mac(spec))
    # MTU via setlink, not at create: only then does the bridge keep it as ports come
    # and go (the kernel's "MTU set by user" flag)
    await ipr.link(
        "set",
        index=await index_of(ipr, spec.ifname),
        ifalias=bridge_alias(spec.network_id),
        mtu=spec.mtu,
        state="up",
    )


async def create_endpoint(ipr: AsyncIPRoute, spec: EndpointSpec) -> None:
    """Veth pair made through ipr; its peer is created inside the container's netns."""
    tmp = temp_peer_name(spec)
    fd = os.open(spec.netns_path, os.O_RDONLY)
    try:
        peer = {"ifname": tmp, "net_ns_fd": fd, "mtu": spec.mtu, "address": spec.mac}
        await ipr.link("add", ifname=spec.host_ifname, kind="veth", mtu=spec.mtu, peer=peer)
    finally:
        os.close(fd)
    host = await index_of(ipr, spec.host_ifname)
    try:
        alias = endpoint_alias(spec.network_id, spec.endpoint_id)
        await ipr.link("set", index=host, ifalias=alias)
        async with nsenter.ipr_in(spec.netns_path) as inside:
            await _configure_inside(inside, spec, tmp)
        # last: an up host end marks the endpoint complete (plan recreates it if down)
        master = await index_of(ipr, spec.bridge)
        await ipr.link("set", index=host, master=master, state="up")
    except BaseException:
        # take the pair (both ends) away now rather than leave a stray peer in the
        # container; should this fail too, the down host end tells plan to redo it
        with suppress(Exception):
            await ipr.link("del", index=host)
        raise


async def _configure_inside(c: AsyncIPRoute, spec: EndpointSpec, tmp: str) -> None:
    idx = await index_of(c, tmp)
    await c.link("set", index=idx, ifname=spec.ifname)  # still down: a rename is allowed
    await _no_ipv6_link_local(c, idx)
    await c.addr("replace", index=idx, **_addr(spec.address))
    await c.link("set", index=idx, state="up")
    await c.link("set", index=await index_of(c, "lo"), state="up")
    if spec.default_gateway is not None:
        await c.route("replace", dst="0.0.0.0/0", gateway=str(spec.default_gateway), oif=idx)


_IN6_ADDR_GEN_MODE_NONE = 1


async def _no_ipv6_link_local(c: AsyncIPRoute, idx: int) -> None:
    """No fe80:: address on the container's interface (set while it is down): no rule here
    filters IPv6, and a link-local address derived from the MAC would let containers of
    different networks talk over docker_gwbridge. Docker >= 26 disables IPv6 there too."""
    spec = {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE",
                                                _IN6_ADDR_GEN_MODE_NONE)]})]}  # fmt: skip
    try:
        await c.link("set", index=idx, IFLA_AF_SPEC=spec)
    except NetlinkError as e:
        if e.code not in (_EAFNOSUPPORT, _EOPNOTSUPP):
            raise  # a kernel without IPv6 has nothing to switch off


async def _set_link(
    ipr: AsyncIPRoute, ifname: str, mtu: int | None, up: bool | None, master: str | None
) -> None:
    attrs: dict[str, object] = {}
    if mtu is not None:
        attrs["mtu"] = mtu
    if master is not None:
        attrs["master"] = await index_of(ipr, master)
    if up is not None:
        attrs["state"] = "up" if up else "down"
    await ipr.link("set", index=await index_of(ipr, ifname), **attrs)


async def _del_addr(ipr: AsyncIPRoute, ifname: str, address: IPv4Interface) -> None:
    try:
        await ipr.addr("del", index=await index_of(ipr, ifname), **_addr(address))
    except NetlinkError as e:
        if e.code != _EADDRNOTAVAIL:
            raise


async def _del_link(ipr: AsyncIPRoute, ifname: str, alias: str, unaliased_ok: bool) -> None:
    """Delete ifname if it still carries `alias`. In a sandbox (unaliased_ok) alias "" names
    a device left without one by a crash right after its create: the netns is ours."""
    try:
        (msg,) = await ipr.link("get", ifname=ifname)
    except NetlinkError as e:
        if e.code in (_ENODEV, _ENOENT):
            return  # already gone: the goal of the op
        raise
    seen = msg.get("ifalias") or ""
    ours = alias.startswith(ALIAS_PREFIX) or (unaliased_ok and alias == "")
    if seen != alias or not ours:
        raise OwnershipError(f"not deleting {ifname!r}: alias is {seen!r}, expected {alias!r}")
    try:
        await ipr.link("del", index=msg["index"])
    except NetlinkError as e:
        if e.code not in (_ENODEV, _ENOENT):
            raise


def _addr(address: IPv4Interface) -> dict[str, object]:
    return {"address": str(address.ip), "prefixlen": address.network.prefixlen}
