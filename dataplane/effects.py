"""What an applied Op does to the observed kernel state (pure).

The reconciler trusts its own writes: after a successful batch it carries the observed
state forward through these effects instead of dumping the kernel again, so a change
costs its netlink writes and no dump. The periodic safety net still dumps everything,
which catches whatever else changed the kernel meanwhile.
"""

from __future__ import annotations

from dataclasses import replace

from .model import (
    SANDBOX_BRIDGE,
    SANDBOX_VXLAN,
    AddAddr,
    ApplyNft,
    CreateBridge,
    CreateEndpoint,
    CreateOverlayBridge,
    CreateSandbox,
    CreateVxlan,
    DelAddr,
    DelLink,
    DelSandbox,
    EnableBridgeNetfilter,
    EnableIpForward,
    Observed,
    ObservedLink,
    ObservedSandbox,
    Op,
    ProgramPeers,
    ProgramXfrm,
    SetLink,
    VxlanInfo,
    XfrmObserved,
    bridge_alias,
    endpoint_alias,
    vxlan_alias,
)


def after(observed: Observed, op: Op) -> Observed:
    match op:
        case EnableIpForward():
            return replace(observed, ip_forward=True)
        case EnableBridgeNetfilter():
            return replace(observed, bridge_nf=True)
        case ApplyNft(ruleset):
            return replace(observed, nft=ruleset.fingerprint)
        case CreateSandbox(path, _net):
            lo = ObservedLink("lo", None, None, 65536, True)
            return _sandboxes(observed, path, ObservedSandbox(path, True, {"lo": lo}))
        case DelSandbox(path):
            return _sandboxes(observed, path, None)
        case ProgramPeers():
            sb = observed.sandboxes[op.netns]
            return _sandboxes(observed, op.netns, _peers(sb, op))
        case ProgramXfrm():
            x = observed.xfrm
            sas = (x.sas - set(op.del_sas)) | set(op.add_sas)
            policies = (x.policies - set(op.del_policies)) | set(op.put_policies)
            return replace(observed, xfrm=XfrmObserved(sas, policies))
    netns = getattr(op, "netns", None)
    if netns is None:
        return replace(observed, links=_links(observed.links, op))
    sb = observed.sandboxes[netns]
    links = _links(sb.links, op)
    if isinstance(op, CreateVxlan) or (isinstance(op, DelLink) and op.ifname == SANDBOX_VXLAN):
        sb = replace(sb, fdb=frozenset(), neigh=frozenset())  # a new device starts empty
    return _sandboxes(observed, netns, replace(sb, links=links))


def _sandboxes(observed: Observed, path: str, sb: ObservedSandbox | None) -> Observed:
    sandboxes = dict(observed.sandboxes)
    if sb is None:
        sandboxes.pop(path, None)
    else:
        sandboxes[path] = sb
    return replace(observed, sandboxes=sandboxes)


def _links(before: dict[str, ObservedLink], op: Op) -> dict[str, ObservedLink]:
    links = dict(before)
    match op:
        case CreateBridge(b):
            links[b.ifname] = ObservedLink(
                b.ifname, "bridge", bridge_alias(b.network_id), b.mtu, True
            )
        case CreateOverlayBridge(o):
            alias = bridge_alias(o.network_id)
            links[SANDBOX_BRIDGE] = ObservedLink(SANDBOX_BRIDGE, "bridge", alias, o.mtu, True)
        case CreateVxlan(o, _netns, vtep):
            info = VxlanInfo(o.vni, o.dstport, vtep, learning=False, proxy=True, underlay=True)
            alias = vxlan_alias(o.network_id)
            links[SANDBOX_VXLAN] = ObservedLink(
                SANDBOX_VXLAN, "vxlan", alias, o.mtu, True, SANDBOX_BRIDGE, vxlan=info
            )
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
        case _:
            raise TypeError(f"unknown op {op!r}")
    return links


def _peers(sb: ObservedSandbox, op: ProgramPeers) -> ObservedSandbox:
    """As the kernel does it: a replace leaves one destination for its MAC (plan deletes
    the others in the same batch), neighbours are replaced and deleted by IP. Copies of
    the sets keep their stored hashes, so a small change to a large table stays cheap."""
    fdb = set(sb.fdb)
    if op.replace_fdb:
        macs = {e.mac for e in op.replace_fdb}
        fdb.difference_update([e for e in sb.fdb if e.mac in macs])
        fdb.update(op.replace_fdb)
    fdb.difference_update(op.del_fdb)
    neigh = set(sb.neigh)
    if op.replace_neigh or op.del_neigh:
        ips = {e.ip for e in op.replace_neigh} | {e.ip for e in op.del_neigh}
        neigh.difference_update([e for e in sb.neigh if e.ip in ips])
        neigh.update(op.replace_neigh)
    return replace(sb, fdb=frozenset(fdb), neigh=frozenset(neigh))
