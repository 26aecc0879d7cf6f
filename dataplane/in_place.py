"""Which desired endpoints a reconcile left not in place, and whether something every
endpoint relies on failed.

A connect is acknowledged only when its own endpoint is in place, but one broken object
elsewhere (a foreign device on another network's name, a refused peer batch in another
sandbox) must not fail every connect on the host. So failures are traced to what they
concern: an endpoint, a network (its bridge, sandbox, vxlan device or peers: every
endpoint on it), or the host as a whole (nftables, ip_forward, xfrm: isolation and
encryption for everyone). Removals of stale objects concern nobody: whatever a failed
removal stands in the way of fails on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from .layout import sandbox_path
from .model import (
    AddAddr,
    CreateBridge,
    CreateEndpoint,
    CreateOverlayBridge,
    CreateSandbox,
    CreateVxlan,
    DelAddr,
    DelLink,
    DelSandbox,
    Desired,
    EnableBridgeNetfilter,
    EndpointSpec,
    Op,
    ProgramPeers,
    SetLink,
)


def not_in_place(
    desired: Desired,
    usable: Iterable[EndpointSpec],
    gone: Iterable[EndpointSpec],
    failed: Iterable[Op],
    run_dir: str,
) -> tuple[frozenset[str], bool]:
    """(endpoint IDs not in place, whether a host-wide op failed). `usable`: the endpoints
    the plan could act on; `gone`: those whose container namespace no longer exists."""
    ok = {e.endpoint_id for e in usable} | {e.endpoint_id for e in gone}
    blocked = {e.endpoint_id for e in desired.endpoints if e.endpoint_id not in ok}
    bridges = {b.ifname: b.network_id for b in desired.bridges}
    host_ends = {e.host_ifname: e.endpoint_id for e in desired.endpoints}
    sandboxes = {sandbox_path(run_dir, o.network_id): o.network_id for o in desired.overlays}
    nets: set[str] = set()
    host_wide = False
    for op in failed:
        match op:
            case CreateEndpoint(spec):
                blocked.add(spec.endpoint_id)
            case CreateBridge(spec) | CreateOverlayBridge(spec) | CreateVxlan(spec):
                nets.add(spec.network_id)
            case CreateSandbox(_, network_id):
                nets.add(network_id)
            case ProgramPeers(netns):
                nets.add(sandboxes.get(netns, ""))
            case SetLink(ifname, netns=ns) | AddAddr(ifname, netns=ns) | DelAddr(ifname, netns=ns):
                if ns is not None:
                    nets.add(sandboxes.get(ns, ""))  # br0, vxlan0 or a port in a sandbox
                elif ifname in bridges:
                    nets.add(bridges[ifname])
                elif ifname in host_ends:
                    blocked.add(host_ends[ifname])
            case DelLink() | DelSandbox():
                pass
            case EnableBridgeNetfilter():  # what icc=false networks rely on
                nets.update(b.network_id for b in desired.bridges if not b.icc)
            case _:
                host_wide = True  # ApplyNft, EnableIpForward, ProgramXfrm
    blocked |= {e.endpoint_id for e in desired.endpoints if e.network_id in nets}
    return frozenset(blocked), host_wide
