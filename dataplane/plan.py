"""plan(desired, observed) -> ops: the minimal, ordered difference. Pure: no I/O, no clock.

Order: first delete what blocks a create (an owned device holding a desired name or alias
under the wrong identity, a half-made endpoint, whatever holds a desired VNI), then create
and fix bridges, nft, forwarding, endpoints and overlay sandboxes with their peers, and
delete stale owned devices and sandboxes last, so traffic keeps flowing meanwhile.
Host devices without an `overlayd:` alias are never in an op, whatever their name; for
what happens inside overlay sandboxes see overlay_plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import nftables
from .ipsec_plan import plan_xfrm
from .layout import DEFAULT_RUN_DIR
from .model import (
    AddAddr,
    ApplyNft,
    BridgeSpec,
    CreateBridge,
    CreateEndpoint,
    DelAddr,
    DelLink,
    Desired,
    EnableBridgeNetfilter,
    EnableIpForward,
    EndpointSpec,
    Observed,
    ObservedLink,
    Op,
    SetLink,
    bridge_alias,
    endpoint_alias,
)
from .names import valid_ifname
from .overlay_assess import OverlayAssessment, assess_overlays
from .overlay_plan import OverlayPlan, plan_overlays


@dataclass
class Assessment:
    """Which desired objects can be acted on now, and why the others cannot."""

    bridges: list[BridgeSpec] = field(default_factory=list)
    endpoints: list[EndpointSpec] = field(default_factory=list)
    gone: list[EndpointSpec] = field(default_factory=list)  # their netns no longer exists
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # noted, but not failures
    overlay: OverlayAssessment = field(default_factory=OverlayAssessment)
    half_made: set[str] = field(default_factory=set)  # see _half_made: deleted, made again


def _host_only(desired: Desired) -> Desired:
    """Without the overlay endpoints, whose host ends live in sandboxes."""
    overlays = {o.network_id for o in desired.overlays}
    if not overlays:
        return desired
    eps = frozenset(e for e in desired.endpoints if e.network_id not in overlays)
    return replace(desired, endpoints=eps)


def assess(desired: Desired, observed: Observed, *, run_dir: str = DEFAULT_RUN_DIR) -> Assessment:
    """What can be done now, and why not the rest. `run_dir`: where this instance's
    sandboxes live (layout.py)."""
    out = _assess_host(_host_only(desired), observed)
    inside = {(e.netns_path, e.ifname) for e in out.endpoints}
    bridge_ids = {b.network_id for b in desired.bridges}
    if desired.hold_overlays:
        return out  # nothing about overlays is known: nothing to say about them either
    out.overlay = assess_overlays(desired, observed, run_dir, inside, bridge_ids)
    out.gone += out.overlay.gone
    out.problems += out.overlay.problems
    out.warnings += out.overlay.warnings
    return out


def _assess_host(desired: Desired, observed: Observed) -> Assessment:
    out = Assessment()
    links = observed.links
    taken: set[str] = set()
    aliases: set[str] = set()

    def claim(name: str, alias: str, what: str, kind: str, ours_by_name: bool) -> bool:
        if alias in aliases:
            out.problems.append(f"{what}: declared twice")
            return False
        if not valid_ifname(name):
            out.problems.append(f"{what}: invalid interface name {name!r}")
            return False
        if name in taken:
            out.problems.append(f"{what}: interface name {name!r} is used twice")
            return False
        link = links.get(name)
        if link is not None and not link.owned:
            if not (ours_by_name and _half_made(link, kind)):
                out.problems.append(f"{what}: {name!r} exists and is not overlayd's")
                return False
            out.half_made.add(name)
        taken.add(name)
        aliases.add(alias)
        return True

    usable: dict[str, BridgeSpec] = {}
    inside: set[tuple[str, str]] = set()  # (netns path, container ifname)
    for b in sorted(desired.bridges, key=lambda b: (b.ifname, b.network_id)):
        generated = b.ifname == f"br-{b.network_id[:12]}"
        if claim(b.ifname, bridge_alias(b.network_id), f"network {b.network_id}", "bridge",
                 generated):  # fmt: skip
            usable[b.ifname] = b
            out.bridges.append(b)
    for e in sorted(desired.endpoints, key=lambda e: e.endpoint_id):
        what = f"endpoint {e.endpoint_id}"
        bridge = usable.get(e.bridge)
        if e.netns_path not in observed.live_netns:
            out.gone.append(e)
        elif bridge is None or bridge.network_id != e.network_id:
            out.problems.append(f"{what}: bridge {e.bridge!r} of {e.network_id} is not usable")
        elif not valid_ifname(e.ifname):
            out.problems.append(f"{what}: invalid container interface name {e.ifname!r}")
        elif (e.netns_path, e.ifname) in inside:
            out.problems.append(f"{what}: {e.ifname!r} used twice in {e.netns_path}")
        elif claim(e.host_ifname, endpoint_alias(e.network_id, e.endpoint_id), what, "veth",
                   e.host_ifname == f"ove-{e.endpoint_id[:11]}"):  # fmt: skip
            inside.add((e.netns_path, e.ifname))
            out.endpoints.append(e)
    return out


def _half_made(link: ObservedLink, kind: str) -> bool:
    """What a kill -9 between a create and the request that sets the alias leaves: the
    kind asked for, no alias, down. Only for names overlayd derives from its own random
    IDs (br-<network>, ove-<endpoint>), which nobody else makes."""
    return not link.alias and not link.up and link.kind == kind


def _identities(desired: Desired, a: Assessment) -> dict[str, tuple[str, str]]:
    """ifname -> (alias, kind) for every desired object; the usable ones win a name."""
    ids = {b.ifname: (bridge_alias(b.network_id), "bridge") for b in a.bridges}
    ids |= {
        e.host_ifname: (endpoint_alias(e.network_id, e.endpoint_id), "veth") for e in a.endpoints
    }
    for b in desired.bridges:
        ids.setdefault(b.ifname, (bridge_alias(b.network_id), "bridge"))
    for e in desired.endpoints:
        ids.setdefault(e.host_ifname, (endpoint_alias(e.network_id, e.endpoint_id), "veth"))
    return ids


def _matches(link: ObservedLink, ident: tuple[str, str] | None) -> bool:
    return ident is not None and (link.alias, link.kind) == ident


def _blockers(
    a: Assessment,
    links: dict[str, ObservedLink],
    idents: dict[str, tuple[str, str]],
    extra: set[str],
) -> dict[str, ObservedLink]:
    """Owned links in the way of a create: a desired name or alias under the wrong identity,
    a half-made endpoint (host end never set up), which is recreated from scratch, or one
    of `extra` (owned vxlan devices holding a VNI an overlay needs)."""
    wanted = {b.ifname: bridge_alias(b.network_id) for b in a.bridges}
    wanted |= {e.host_ifname: endpoint_alias(e.network_id, e.endpoint_id) for e in a.endpoints}
    alias_home = {alias: name for name, alias in wanted.items()}
    out: dict[str, ObservedLink] = {}
    for link in links.values():
        if not link.owned:
            continue
        holds_name = link.ifname in wanted and not _matches(link, idents[link.ifname])
        holds_alias = alias_home.get(link.alias or "", link.ifname) != link.ifname
        if holds_name or holds_alias:
            out[link.ifname] = link
    for e in a.endpoints:
        link = links.get(e.host_ifname)
        if link is not None and not link.up:
            out[link.ifname] = link
    for name in extra:
        out[name] = links[name]
    for name in a.half_made:
        out[name] = links[name]
    return out


def _bridge_ops(b: BridgeSpec, link: ObservedLink | None) -> list[Op]:
    if link is None:
        return [CreateBridge(b), AddAddr(b.ifname, b.gateway)]
    ops: list[Op] = []
    mtu = b.mtu if link.mtu != b.mtu else None
    if mtu is not None or not link.up:
        ops.append(SetLink(b.ifname, mtu=mtu, up=None if link.up else True))
    if b.gateway not in link.addresses:
        ops.append(AddAddr(b.ifname, b.gateway))
    return ops + [DelAddr(b.ifname, x) for x in sorted(link.addresses - {b.gateway})]


def _endpoint_ops(e: EndpointSpec, link: ObservedLink | None, bridge_new: bool) -> list[Op]:
    if link is None:
        return [CreateEndpoint(e)]
    # a re-created bridge has lost its ports, though they still look right in this dump
    master = e.bridge if (link.master != e.bridge or bridge_new) else None
    mtu = e.mtu if link.mtu != e.mtu else None
    if master is None and mtu is None:
        return []
    peer = (e.netns_path, e.ifname) if mtu is not None else None
    return [SetLink(e.host_ifname, mtu=mtu, master=master, peer=peer)]


def _del(link: ObservedLink) -> DelLink:
    return DelLink(link.ifname, link.alias or "", half_made=not link.owned)


def _ports_first(link: ObservedLink) -> tuple[bool, str]:
    return (link.kind == "bridge", link.ifname)


def plan(desired: Desired, observed: Observed, *, run_dir: str = DEFAULT_RUN_DIR) -> list[Op]:
    return plan_assessed(desired, observed, run_dir=run_dir)[0]


def plan_assessed(
    desired: Desired, observed: Observed, *, run_dir: str = DEFAULT_RUN_DIR, nft: bool = True
) -> tuple[list[Op], Assessment]:
    """plan() and the assessment it was made from (assessing 10 000 peers is not free).
    `nft` False: no nftables ops (dockerd's --iptables=false)."""
    a = assess(desired, observed, run_dir=run_dir)
    host = _host_only(desired)
    links = observed.links
    idents = _identities(host, a)
    if desired.hold_overlays:
        overlay = OverlayPlan()
    else:
        seen = len(a.overlay.problems)
        overlay = plan_overlays(desired, observed, a.overlay, run_dir)
        a.problems += a.overlay.problems[seen:]  # found while planning (foreign br0, ...)
    blockers = _blockers(a, links, idents, overlay.host_blockers)
    present = {n: link for n, link in links.items() if n not in blockers}

    ops: list[Op] = [_del(link) for link in sorted(blockers.values(), key=_ports_first)]
    ops += overlay.first
    for b in a.bridges:
        ops += _bridge_ops(b, present.get(b.ifname))
    # SAs and policies before the vxlan devices that send through them, removals after
    xfrm_early, xfrm_late, xfrm_problems = plan_xfrm(desired, observed)
    a.problems.extend(xfrm_problems)
    ops += xfrm_early
    ipsec = desired.ipsec
    esp_ports = [ipsec.port] if ipsec is not None else []
    ruleset = nftables.render(a.bridges, esp_ports)
    # held (the swarm's state unknown for a moment): the encrypted port is not known either,
    # so the guard on it stays as it is, like the SAs
    held = ipsec is not None and ipsec.hold
    if nft and not observed.bridge_nf and any(not b.icc for b in a.bridges):
        ops.append(EnableBridgeNetfilter())  # before the rule that relies on it
    if nft and not held and ruleset.fingerprint != observed.nft:
        ops.append(ApplyNft(ruleset))
    if not observed.ip_forward and any(b.masquerade and not b.internal for b in a.bridges):
        ops.append(EnableIpForward())
    for e in a.endpoints:
        ops += _endpoint_ops(e, present.get(e.host_ifname), e.bridge not in present)
    ops += overlay.middle
    stale = [
        link
        for link in present.values()
        if link.owned and not _matches(link, idents.get(link.ifname))
    ]
    stale_ops = [_del(link) for link in sorted(stale, key=_ports_first)]
    return ops + stale_ops + overlay.last + xfrm_late, a
