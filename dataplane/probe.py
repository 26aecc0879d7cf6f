"""Facts about the host's network read from the kernel (for defaults, not for programming)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Network, ip_address

from pyroute2.iproute.linux import AsyncIPRoute


async def default_route_address() -> str:
    """IPv4 address of the interface holding the default route; "" when there is none."""
    async with AsyncIPRoute() as ipr:
        oif = None
        async for route in await ipr.route("dump", family=socket.AF_INET):
            if route.get("dst_len") == 0 and route.get("table") in (254, None):
                oif = route.get("oif")
                if oif is None:
                    multipath = route.get("multipath") or []
                    oif = multipath[0]["oif"] if multipath else None
                if oif is not None:
                    break
        if oif is None:
            return ""
        async for addr in await ipr.addr("dump", family=socket.AF_INET):
            if addr.get("index") == oif:
                return addr.get("address") or ""
    return ""


async def host_routes() -> list[IPv4Network]:
    """Destinations of the main table's routes, default route excluded: subnets the host
    already reaches, which a new network must not shadow (dockerd 27+ does the same)."""
    out: list[IPv4Network] = []
    async with AsyncIPRoute() as ipr:
        async for route in await ipr.route("dump", family=socket.AF_INET):
            if route.get("table") not in (254, None) or not route.get("dst_len"):
                continue
            dst = route.get("dst")
            if dst:
                out.append(IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
    return out


async def address_mtu(address: str) -> int | None:
    """MTU of the interface holding `address` (IPv4 or IPv6) in this namespace: the underlay
    MTU for an advertise/VTEP address. None when no interface holds it."""
    family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
    wanted = ip_address(address)
    async with AsyncIPRoute() as ipr:
        index = None
        async for addr in await ipr.addr("dump", family=family):
            local = addr.get("local") or addr.get("address")
            if local is not None and ip_address(local) == wanted:
                index = addr.get("index")
                break
        if index is None:
            return None
        (link,) = await ipr.link("get", index=index)
        return int(link.get("mtu"))
