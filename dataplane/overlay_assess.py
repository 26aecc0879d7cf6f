"""What of the desired overlays can be done now (pure): usable networks and endpoints,
which vxlan devices may be made, and the remote peers to program per network.

Problems (a bad spec, a VNI held by a vxlan device overlayd does not own, no VTEP) are
reported like the bridge ones and fail a strict converge; inconsistent remote peers
(gossip not converged yet) are only warnings, since they must never fail a local change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from .layout import sandbox_path
from .model import (
    SANDBOX_BRIDGE,
    SANDBOX_VXLAN,
    Desired,
    EndpointSpec,
    NeighEntry,
    Observed,
    ObservedLink,
    OverlaySpec,
    PeerSpec,
)
from .names import valid_ifname

NETWORK_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")
_RESERVED = {"lo", SANDBOX_BRIDGE, SANDBOX_VXLAN}
_OUR_KINDS = ("bridge", "vxlan", "veth")


@dataclass
class OverlayAssessment:
    overlays: list[OverlaySpec] = field(default_factory=list)  # sandbox wanted, by network id
    endpoints: dict[str, list[EndpointSpec]] = field(default_factory=dict)  # usable, per net
    vxlan_ok: set[str] = field(default_factory=set)  # nets whose vxlan0 may be made / kept
    fdb: dict[str, dict[str, IPv4Address]] = field(default_factory=dict)  # net: mac -> vtep
    # net: int(ip) -> entry (int keys: IPv4Address hashes in Python, 10 000s per plan)
    neigh: dict[str, dict[int, NeighEntry]] = field(default_factory=dict)
    gone: list[EndpointSpec] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # inconsistent peers, skipped


def ours(link: ObservedLink) -> bool:
    """A device inside one of our sandboxes that overlayd made. A sandbox is a netns in this
    instance's own directory, so the netns itself marks ownership: every bridge, vxlan or
    veth in it is ours, aliased or not (one without an alias was left by a crash between
    its create and the alias request). Fallback devices the kernel puts into every netns
    (lo, tunl0, sit0, ...) are not."""
    return link.owned or (link.alias is None and link.kind in _OUR_KINDS)


def assess_overlays(
    desired: Desired,
    observed: Observed,
    run_dir: str,
    inside: set[tuple[str, str]],
    bridge_ids: set[str],
) -> OverlayAssessment:
    """`inside`: (netns, ifname) pairs the bridge endpoints already hold (updated here)."""
    out = OverlayAssessment()
    specs = _usable_overlays(desired, run_dir, bridge_ids, out)
    all_ids = {o.network_id for o in desired.overlays}
    seen_eps: set[tuple[str, str]] = set()
    names: dict[str, set[str]] = {}  # net -> host_ifnames taken in its sandbox
    for e in sorted(desired.endpoints, key=lambda e: e.endpoint_id):
        if e.network_id not in all_ids:
            continue
        what = f"endpoint {e.endpoint_id}"
        taken = names.setdefault(e.network_id, set())
        if e.network_id not in specs:
            out.problems.append(f"{what}: overlay network {e.network_id} is not usable")
        elif e.netns_path not in observed.live_netns:
            out.gone.append(e)
        elif (e.network_id, e.endpoint_id) in seen_eps:
            out.problems.append(f"{what}: declared twice")
        elif e.bridge != SANDBOX_BRIDGE:
            out.problems.append(f"{what}: an overlay endpoint's bridge is {SANDBOX_BRIDGE!r}")
        elif not valid_ifname(e.ifname):
            out.problems.append(f"{what}: invalid container interface name {e.ifname!r}")
        elif (e.netns_path, e.ifname) in inside:
            out.problems.append(f"{what}: {e.ifname!r} used twice in {e.netns_path}")
        elif not valid_ifname(e.host_ifname) or e.host_ifname in _RESERVED:
            out.problems.append(f"{what}: invalid sandbox interface name {e.host_ifname!r}")
        elif e.host_ifname in taken:
            out.problems.append(f"{what}: {e.host_ifname!r} is used twice in the sandbox")
        else:
            seen_eps.add((e.network_id, e.endpoint_id))
            inside.add((e.netns_path, e.ifname))
            taken.add(e.host_ifname)
            out.endpoints.setdefault(e.network_id, []).append(e)
    out.overlays = [specs[n] for n in sorted(specs) if n in out.endpoints]
    _vxlans(desired, observed, run_dir, out)
    for o in out.overlays:
        if o.network_id in out.vxlan_ok:
            _peers(desired, o, out)
    return out


def _usable_overlays(
    desired: Desired, run_dir: str, bridge_ids: set[str], out: OverlayAssessment
) -> dict[str, OverlaySpec]:
    specs: dict[str, OverlaySpec] = {}
    vnis: dict[tuple[int, int], str] = {}
    paths: dict[str, str] = {}
    for o in sorted(desired.overlays, key=lambda o: (o.network_id, o.vni)):
        what = f"overlay network {o.network_id}"
        if not NETWORK_ID_RE.fullmatch(o.network_id):
            out.problems.append(f"{what}: invalid network id")
        elif o.network_id in specs:
            out.problems.append(f"{what}: declared twice")
        elif o.network_id in bridge_ids:
            out.problems.append(f"{what}: also declared as a bridge network")
        elif not 1 <= o.vni < 1 << 24 or not 1 <= o.dstport < 1 << 16:
            out.problems.append(f"{what}: invalid VNI {o.vni} or port {o.dstport}")
        elif o.mtu < 68:
            out.problems.append(f"{what}: invalid MTU {o.mtu}")
        elif (o.vni, o.dstport) in vnis:
            out.problems.append(f"{what}: VNI {o.vni} is also {vnis[(o.vni, o.dstport)]}'s")
        elif sandbox_path(run_dir, o.network_id) in paths:
            other = paths[sandbox_path(run_dir, o.network_id)]
            out.problems.append(f"{what}: sandbox name collides with network {other}")
        else:
            specs[o.network_id] = o
            vnis[(o.vni, o.dstport)] = o.network_id
            paths[sandbox_path(run_dir, o.network_id)] = o.network_id
    return specs


def _vxlans(desired: Desired, observed: Observed, run_dir: str, out: OverlayAssessment) -> None:
    """Which wanted overlays can have their vxlan: a VTEP is known and no vxlan device
    overlayd does not own holds the VNI (the kernel would say EEXIST), in the host namespace
    or in a sandbox that stays (a stale sandbox is removed first, with all it holds)."""
    wanted = {sandbox_path(run_dir, o.network_id) for o in out.overlays}
    holders = [(name, link) for name, link in observed.links.items() if not link.owned]
    for path in sorted(wanted & set(observed.sandboxes)):
        links = observed.sandboxes[path].links
        holders += [(f"{path}:{n}", link) for n, link in links.items() if not ours(link)]
    foreign = {
        (link.vxlan.vni, link.vxlan.port): name
        for name, link in holders
        if link.kind == "vxlan" and link.vxlan is not None
    }
    for o in out.overlays:
        holder = foreign.get((o.vni, o.dstport))
        if desired.vtep is None:
            out.problems.append(f"overlay network {o.network_id}: no VTEP address known")
        elif not _bridge_usable(observed, sandbox_path(run_dir, o.network_id)):
            out.problems.append(
                f"overlay network {o.network_id}: its sandbox holds a {SANDBOX_BRIDGE} "
                "overlayd did not make; remove it by hand"
            )
        elif holder is not None:
            out.problems.append(
                f"overlay network {o.network_id}: VNI {o.vni} (port {o.dstport}) is held by "
                f"vxlan device {holder!r}, which is not overlayd's"
            )
        else:
            out.vxlan_ok.add(o.network_id)


def _bridge_usable(observed: Observed, path: str) -> bool:
    """No sandbox yet, or its br0 is absent or ours: the vxlan can be enslaved to it."""
    sandbox = observed.sandboxes.get(path)
    if sandbox is None or not sandbox.alive:
        return True
    br = sandbox.links.get(SANDBOX_BRIDGE)
    return br is None or ours(br)


def _peers(desired: Desired, o: OverlaySpec, out: OverlayAssessment) -> None:
    """Remote endpoints to program; records clashing with a local endpoint or with each
    other (gossip not converged yet) are skipped or decided deterministically, and only
    warned about: a remote inconsistency must not fail a local change."""
    net = o.network_id
    mine = [p for p in desired.peers if p.network_id == net]
    local_ips = {int(e.address.ip) for e in out.endpoints[net]} | {int(o.gateway.ip)}
    local_macs = {e.mac.lower() for e in out.endpoints[net]}
    fdb, neigh, warnings = _pick(mine, local_ips, local_macs, desired.vtep, net)
    if warnings:  # who wins a clash must not depend on set order: decide again, sorted
        mine.sort(key=lambda p: (int(p.ip), p.mac.lower(), int(p.vtep)))
        fdb, neigh, warnings = _pick(mine, local_ips, local_macs, desired.vtep, net)
    out.fdb[net] = fdb
    out.neigh[net] = neigh
    out.warnings += warnings


def _pick(
    peers: list[PeerSpec],
    local_ips: set[int],
    local_macs: set[str],
    vtep: IPv4Address | None,
    net: str,
) -> tuple[dict[str, IPv4Address], dict[int, NeighEntry], list[str]]:
    fdb: dict[str, IPv4Address] = {}
    neigh: dict[int, NeighEntry] = {}
    warnings: list[str] = []
    for p in peers:
        mac = p.mac.lower()
        ip = int(p.ip)
        had = neigh.get(ip)
        if ip in local_ips or mac in local_macs or p.vtep == vtep:
            warnings.append(f"network {net}: remote {p.ip} {mac} clashes with a local one")
        elif had is not None and had.mac != mac:
            warnings.append(f"network {net}: {p.ip} claimed by {had.mac} and {mac}")
        elif fdb.get(mac, p.vtep) != p.vtep:
            warnings.append(f"network {net}: {mac} claimed by {fdb[mac]} and {p.vtep}")
        else:
            fdb[mac] = p.vtep
            neigh[ip] = NeighEntry(p.ip, mac)
    return fdb, neigh, warnings
