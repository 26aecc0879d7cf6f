"""The overlay part of plan(): sandboxes, their devices and endpoints, remote peers. Pure.

Inside a sandbox every device overlay_assess.ours() calls ours may be deleted or fixed
(one without an alias is a half-made one: deleted and made again); anything else there
is reported. Fallback devices the kernel puts into every netns (lo, tunl0, ...) are never
touched. In the host namespace only vxlan devices carrying our alias are ever deleted; a foreign one
holding a desired VNI is reported. FDB/neigh entries are diffed only against the managed
ones that observe() reports (permanent, on our vxlan0), so kernel-made ones are never in an
op. Ops come in three phases that plan() interleaves with the host's: `first` removes what
blocks a create, `middle` creates and fixes, `last` deletes what is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from .layout import sandbox_path
from .model import (
    SANDBOX_BRIDGE,
    SANDBOX_VXLAN,
    AddAddr,
    CreateEndpoint,
    CreateOverlayBridge,
    CreateSandbox,
    CreateVxlan,
    DelAddr,
    DelLink,
    DelSandbox,
    Desired,
    FdbEntry,
    NeighEntry,
    Observed,
    ObservedLink,
    ObservedSandbox,
    Op,
    OverlaySpec,
    ProgramPeers,
    SetLink,
    VxlanInfo,
    bridge_alias,
    endpoint_alias,
    vxlan_alias,
)
from .overlay_assess import OverlayAssessment, ours


def _want_vxlan(o: OverlaySpec, vtep: IPv4Address) -> VxlanInfo:
    return VxlanInfo(o.vni, o.dstport, vtep, learning=False, proxy=True, underlay=True)


# --- plan -----------------------------------------------------------------------------------


@dataclass
class OverlayPlan:
    first: list[Op] = field(default_factory=list)
    middle: list[Op] = field(default_factory=list)
    last: list[Op] = field(default_factory=list)
    host_blockers: set[str] = field(default_factory=set)  # host links plan() deletes first


def plan_overlays(
    desired: Desired, observed: Observed, a: OverlayAssessment, run_dir: str
) -> OverlayPlan:
    out = OverlayPlan()
    wanted = {sandbox_path(run_dir, o.network_id): o for o in a.overlays}
    vnis = {(o.vni, o.dstport) for o in a.overlays if o.network_id in a.vxlan_ok}
    for name, link in observed.links.items():
        info = link.vxlan if link.owned else None
        if info is not None and (info.vni, info.port) in vnis:
            out.host_blockers.add(name)  # e.g. left by an older version: holds our VNI
    for path, o in wanted.items():
        sb = observed.sandboxes.get(path)
        if sb is not None and sb.unreadable is not None:
            a.problems.append(f"overlay network {o.network_id}: its sandbox {path} could not "
                              f"be read ({sb.unreadable}); left as it is")  # fmt: skip
            a.endpoints[o.network_id] = []  # not known to be in place
            continue
        _sandbox(desired, sb, path, o, a, vnis, out)
    for path, sb in sorted(observed.sandboxes.items()):
        if sb.unreadable is not None:
            continue  # not even deleted: what it holds is unknown this round
        if path not in wanted:
            blocking = any(_holds(link, vnis) for link in sb.links.values())
            (out.first if blocking or not sb.alive else out.last).append(DelSandbox(path))
    return out


def _holds(link: ObservedLink, vnis: set[tuple[int, int]]) -> bool:
    info = link.vxlan if link.kind == "vxlan" else None
    return info is not None and (info.vni, info.port) in vnis


def _sandbox(
    desired: Desired,
    sb: ObservedSandbox | None,
    path: str,
    o: OverlaySpec,
    a: OverlayAssessment,
    vnis: set[tuple[int, int]],
    out: OverlayPlan,
) -> None:
    net = o.network_id
    if sb is not None and (not sb.alive or sb.network_id not in (None, net)):
        out.first.append(DelSandbox(path))  # a leftover file, or another network's sandbox
        sb = None
    if sb is None:
        out.middle.append(CreateSandbox(path, net))
        sb = ObservedSandbox(path, True, {})
    links = sb.links
    eps = a.endpoints[net]
    idents = {SANDBOX_BRIDGE: (bridge_alias(net), "bridge")}
    idents[SANDBOX_VXLAN] = (vxlan_alias(net), "vxlan")
    idents |= {e.host_ifname: (endpoint_alias(net, e.endpoint_id), "veth") for e in eps}
    homes = {alias: name for name, (alias, _) in idents.items()}

    # first: ours but in the way (wrong identity for a desired name, a desired alias under
    # another name, a half-made endpoint, a vxlan with the wrong settings)
    gone: set[str] = set()
    vx_want = _want_vxlan(o, desired.vtep) if desired.vtep is not None else None
    for name, link in sorted(links.items()):
        if not ours(link):
            continue
        ident = idents.get(name)
        wrong = ident is not None and (link.alias, link.kind) != ident
        elsewhere = homes.get(link.alias or "", name) != name
        half = name in idents and link.kind == "veth" and not link.up
        stale_vx = name == SANDBOX_VXLAN and vx_want is not None and link.vxlan != vx_want
        # any other vxlan of ours holding a VNI some overlay is about to create
        blocks = _holds(link, vnis) and not (name == SANDBOX_VXLAN and link.vxlan == vx_want)
        if wrong or elsewhere or half or stale_vx or blocks:
            out.first.append(DelLink(name, link.alias or "", path))
            gone.add(name)
    present = {n: link for n, link in links.items() if n not in gone}
    for name in (SANDBOX_BRIDGE, SANDBOX_VXLAN):
        link = present.get(name)
        if link is not None and not ours(link):
            a.problems.append(f"overlay network {net}: {name!r} in {path} is not overlayd's")
            return

    br = present.get(SANDBOX_BRIDGE)
    out.middle += _bridge_ops(o, br, path)
    br_new = br is None
    vx = present.get(SANDBOX_VXLAN)
    entries_from = sb
    if net in a.vxlan_ok and desired.vtep is not None:
        if vx is None:
            out.middle.append(CreateVxlan(o, path, desired.vtep))
            entries_from = ObservedSandbox(path, True)  # a new device has no entries
        else:
            out.middle += _port_ops(SANDBOX_VXLAN, o.mtu, vx, br_new, path)
        peers = _peer_op(path, a.fdb[net], a.neigh[net], entries_from)
        if peers is not None:
            out.middle.append(peers)
    for e in eps:
        link = present.get(e.host_ifname)
        if link is not None and not ours(link):
            a.problems.append(f"endpoint {e.endpoint_id}: {e.host_ifname!r} is not overlayd's")
        elif link is None:
            out.middle.append(CreateEndpoint(e, path))
        else:
            out.middle += _port_ops(e.host_ifname, e.mtu, link, br_new, path,
                                    peer=(e.netns_path, e.ifname))  # fmt: skip

    stale = [
        link
        for name, link in present.items()
        if ours(link) and (link.alias, link.kind) != idents.get(name)
    ]
    stale.sort(key=lambda x: (x.kind != "veth", x.kind == "bridge", x.ifname))
    out.last += [DelLink(link.ifname, link.alias or "", path) for link in stale]


def _bridge_ops(o: OverlaySpec, link: ObservedLink | None, path: str) -> list[Op]:
    if link is None:
        return [CreateOverlayBridge(o, path), AddAddr(SANDBOX_BRIDGE, o.gateway, path)]
    ops: list[Op] = []
    mtu = o.mtu if link.mtu != o.mtu else None
    if mtu is not None or not link.up:
        ops.append(SetLink(SANDBOX_BRIDGE, mtu=mtu, up=None if link.up else True, netns=path))
    if o.gateway not in link.addresses:
        ops.append(AddAddr(SANDBOX_BRIDGE, o.gateway, path))
    extra = sorted(link.addresses - {o.gateway})
    return ops + [DelAddr(SANDBOX_BRIDGE, x, path) for x in extra]


def _port_ops(name: str, mtu: int, link: ObservedLink, br_new: bool, path: str,
              peer: tuple[str, str] | None = None) -> list[Op]:  # fmt: skip
    """A port of br0 (vxlan0 or a veth, whose container end is `peer`): enslaved, MTU, up."""
    master = SANDBOX_BRIDGE if (link.master != SANDBOX_BRIDGE or br_new) else None
    new_mtu = mtu if link.mtu != mtu else None
    up = None if link.up else True
    if master is None and new_mtu is None and up is None:
        return []
    peer = peer if new_mtu is not None else None
    return [SetLink(name, mtu=new_mtu, up=up, master=master, netns=path, peer=peer)]


def _peer_op(
    path: str,
    fdb: dict[str, IPv4Address],
    neigh: dict[int, NeighEntry],
    sb: ObservedSandbox,
) -> ProgramPeers | None:
    """The minimal batch: replace what differs, delete what is not desired. A replace
    re-points a MAC's (first) destination, and an FDB delete names its destination, so it
    can never hit the replacement; a neighbour is deleted by IP alone, so only IPs not
    re-pointed in the same batch are deleted. Dict lookups only: this runs over every
    remote endpoint on every reconcile."""
    seen: dict[str, list[IPv4Address]] = {}
    for e in sb.fdb:
        seen.setdefault(e.mac, []).append(e.dst)
    replace_fdb: list[FdbEntry] = []
    for mac, dst in fdb.items():
        dsts = seen.get(mac)
        if dsts is None or dst not in dsts:
            replace_fdb.append(FdbEntry(mac, dst))  # overwrites the first destination...
            if dsts is not None and len(dsts) == 1:
                del seen[mac]  # ...so a single old one needs no delete of its own
    del_fdb = [FdbEntry(m, d) for m, dsts in seen.items() for d in dsts if fdb.get(m) != d]
    had = {int(e.ip): e for e in sb.neigh}
    replace_neigh = [e for ip, e in neigh.items() if had.get(ip) != e]
    del_neigh = [e for ip, e in had.items() if ip not in neigh]
    if not (replace_fdb or del_fdb or replace_neigh or del_neigh):
        return None
    return ProgramPeers(
        path,
        SANDBOX_VXLAN,
        tuple(sorted(replace_fdb, key=_fdb_key)),
        tuple(sorted(replace_neigh, key=_neigh_key)),
        tuple(sorted(del_neigh, key=_neigh_key)),
        tuple(sorted(del_fdb, key=_fdb_key)),
    )


def _fdb_key(e: FdbEntry) -> tuple[str, int]:
    return e.mac, int(e.dst)  # ints: IPv4Address.__lt__ is Python code, 10 000s of calls


def _neigh_key(e: NeighEntry) -> int:
    return int(e.ip)
