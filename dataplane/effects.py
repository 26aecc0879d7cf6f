"""What an applied Op does to the observed kernel state (pure).

The reconciler trusts its own writes: after a successful batch it carries the observed
state forward through these effects instead of dumping the kernel again, so a change
costs its netlink writes and no dump. The periodic safety net still dumps everything,
which catches whatever else changed the kernel meanwhile.
"""

from __future__ import annotations

from dataclasses import replace

from .model import (
    AddAddr,
    ApplyNft,
    CreateBridge,
    CreateEndpoint,
    DelAddr,
    DelLink,
    EnableIpForward,
    Observed,
    ObservedLink,
    Op,
    SetLink,
    bridge_alias,
    endpoint_alias,
)


def after(observed: Observed, op: Op) -> Observed:
    links = dict(observed.links)
    match op:
        case CreateBridge(b):
            links[b.ifname] = ObservedLink(b.ifname, "bridge", bridge_alias(b.network_id), b.mtu, True)
        case CreateEndpoint(e):
            alias = endpoint_alias(e.network_id, e.endpoint_id)
            links[e.host_ifname] = ObservedLink(e.host_ifname, "veth", alias, e.mtu, True, e.bridge)
        case SetLink(name, mtu, up, master):
            link = links[name]
            links[name] = replace(
                link,
                mtu=link.mtu if mtu is None else mtu,
                up=link.up if up is None else up,
                master=link.master if master is None else master,
            )
        case AddAddr(name, address):
            links[name] = replace(links[name], addresses=links[name].addresses | {address})
        case DelAddr(name, address):
            links[name] = replace(links[name], addresses=links[name].addresses - {address})
        case DelLink(name, _alias):
            del links[name]
            for other, link in list(links.items()):
                if link.master == name:  # ports are released, not deleted
                    links[other] = replace(link, master=None)
        case EnableIpForward():
            return replace(observed, ip_forward=True)
        case ApplyNft(ruleset):
            return replace(observed, nft=ruleset.fingerprint)
        case _:
            raise TypeError(f"unknown op {op!r}")
    return replace(observed, links=links)
