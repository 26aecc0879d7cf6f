"""Links, addresses and routes over rtnetlink (pyroute2 AsyncIPRoute): the only kernel writer
for them. observe() dumps the host namespace; apply() carries out one LinkOp.

The host socket stays open (opening one in another netns forks a helper process); a container
namespace is opened per endpoint creation with flags=0, so a wrong path fails instead of
silently creating a namespace. Every device created gets its `overlayd:` alias in the first
request after the create (the kernel ignores IFLA_IFALIAS on RTM_NEWLINK), and DelLink
re-reads the alias right before deleting.
"""

from __future__ import annotations

import os
from contextlib import suppress
from ipaddress import IPv4Interface
from socket import AF_INET

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

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
    bridge_alias,
    endpoint_alias,
)

_DUMP_ATTEMPTS = 5
_ENOENT, _ENODEV, _EADDRNOTAVAIL = 2, 19, 99


class OwnershipError(RuntimeError):
    """A DelLink target no longer carries the alias the plan saw: it is not ours to delete."""


def bridge_mac(spec: BridgeSpec) -> str:
    """02:42:<gateway IPv4>: fixed, so the bridge MAC never follows its ports (no ARP churn)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in spec.gateway.ip.packed)


def temp_peer_name(spec: EndpointSpec) -> str:
    """Name of the container end until it is renamed to spec.ifname (15 chars max)."""
    return "ovt" + spec.endpoint_id[:12]


class Netlink:
    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None

    @property
    def _host(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()  # no multicast groups bound: no event backlog
        return self._ipr

    async def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    # --- observe ---------------------------------------------------------------------------

    async def observe(self) -> dict[str, ObservedLink]:
        """All links of the host namespace by name; a dump interrupted by a change is redone."""
        for attempt in range(_DUMP_ATTEMPTS):
            try:
                return await self._dump()
            except NetlinkDumpInterrupted:
                if attempt == _DUMP_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _dump(self) -> dict[str, ObservedLink]:
        ipr = self._host
        raw = [msg async for msg in await ipr.link("dump")]
        addrs: dict[int, set[IPv4Interface]] = {}
        async for msg in await ipr.addr("dump", family=AF_INET):
            ip = msg.get("local") or msg.get("address")
            addrs.setdefault(msg["index"], set()).add(IPv4Interface(f"{ip}/{msg['prefixlen']}"))
        names = {msg["index"]: msg.get("ifname") for msg in raw}
        links: dict[str, ObservedLink] = {}
        for msg in raw:
            name = msg.get("ifname")
            links[name] = ObservedLink(
                ifname=name,
                kind=msg.get(("linkinfo", "kind")),
                alias=msg.get("ifalias"),
                mtu=msg.get("mtu"),
                up=bool(msg["flags"] & IFF_UP),
                master=names.get(msg.get("master")),
                addresses=frozenset(addrs.get(msg["index"], ())),
            )
        return links

    # --- apply -----------------------------------------------------------------------------

    async def apply(self, op: LinkOp) -> None:
        match op:
            case CreateBridge(spec):
                await self._create_bridge(spec)
            case CreateEndpoint(spec):
                await self._create_endpoint(spec)
            case SetLink(ifname, mtu, up, master):
                await self._set_link(ifname, mtu, up, master)
            case AddAddr(ifname, address):
                await self._host.addr("replace", index=await self._index(ifname), **_addr(address))
            case DelAddr(ifname, address):
                await self._del_addr(ifname, address)
            case DelLink(ifname, alias):
                await self._del_link(ifname, alias)
            case _:
                raise TypeError(f"not a link op: {op!r}")

    async def _index(self, ifname: str, ipr: AsyncIPRoute | None = None) -> int:
        found = await (ipr or self._host).link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no link {ifname!r}")
        return found[0]

    async def _create_bridge(self, spec: BridgeSpec) -> None:
        ipr = self._host
        await ipr.link("add", ifname=spec.ifname, kind="bridge", address=bridge_mac(spec))
        # MTU via setlink, not at create: only then does the bridge keep it as ports come
        # and go (the kernel's "MTU set by user" flag)
        await ipr.link(
            "set",
            index=await self._index(spec.ifname),
            ifalias=bridge_alias(spec.network_id),
            mtu=spec.mtu,
            state="up",
        )

    async def _create_endpoint(self, spec: EndpointSpec) -> None:
        ipr = self._host
        tmp = temp_peer_name(spec)
        fd = os.open(spec.netns_path, os.O_RDONLY)
        try:
            peer = {"ifname": tmp, "net_ns_fd": fd, "mtu": spec.mtu, "address": spec.mac}
            await ipr.link("add", ifname=spec.host_ifname, kind="veth", mtu=spec.mtu, peer=peer)
        finally:
            os.close(fd)
        host = await self._index(spec.host_ifname)
        try:
            alias = endpoint_alias(spec.network_id, spec.endpoint_id)
            await ipr.link("set", index=host, ifalias=alias)
            async with AsyncIPRoute(netns=spec.netns_path, flags=0) as inside:
                await self._configure_inside(inside, spec, tmp)
            # last: an up host end marks the endpoint complete (plan recreates it if down)
            master = await self._index(spec.bridge)
            await ipr.link("set", index=host, master=master, state="up")
        except BaseException:
            # take the pair (both ends) away now rather than leave a stray peer in the
            # container; should this fail too, the down host end tells plan to redo it
            with suppress(Exception):
                await ipr.link("del", index=host)
            raise

    async def _configure_inside(self, c: AsyncIPRoute, spec: EndpointSpec, tmp: str) -> None:
        idx = await self._index(tmp, c)
        await c.link("set", index=idx, ifname=spec.ifname)  # still down: a rename is allowed
        await c.addr("replace", index=idx, **_addr(spec.address))
        await c.link("set", index=idx, state="up")
        await c.link("set", index=await self._index("lo", c), state="up")
        if spec.default_gateway is not None:
            await c.route("replace", dst="0.0.0.0/0", gateway=str(spec.default_gateway), oif=idx)

    async def _set_link(
        self, ifname: str, mtu: int | None, up: bool | None, master: str | None
    ) -> None:
        attrs: dict[str, object] = {}
        if mtu is not None:
            attrs["mtu"] = mtu
        if master is not None:
            attrs["master"] = await self._index(master)
        if up is not None:
            attrs["state"] = "up" if up else "down"
        await self._host.link("set", index=await self._index(ifname), **attrs)

    async def _del_addr(self, ifname: str, address: IPv4Interface) -> None:
        try:
            await self._host.addr("del", index=await self._index(ifname), **_addr(address))
        except NetlinkError as e:
            if e.code != _EADDRNOTAVAIL:
                raise

    async def _del_link(self, ifname: str, alias: str) -> None:
        try:
            (msg,) = await self._host.link("get", ifname=ifname)
        except NetlinkError as e:
            if e.code in (_ENODEV, _ENOENT):
                return  # already gone: the goal of the op
            raise
        seen = msg.get("ifalias")
        if seen != alias or not alias.startswith(ALIAS_PREFIX):
            raise OwnershipError(f"not deleting {ifname!r}: alias is {seen!r}, expected {alias!r}")
        try:
            await self._host.link("del", index=msg["index"])
        except NetlinkError as e:
            if e.code not in (_ENODEV, _ENOENT):
                raise


def _addr(address: IPv4Interface) -> dict[str, object]:
    return {"address": str(address.ip), "prefixlen": address.network.prefixlen}
