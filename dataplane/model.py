"""What the data plane is asked for (Desired) and what it saw in the kernel (Observed).

Plain frozen values so the daemon can build them without importing anything kernel-ish,
and so plan() stays a pure function over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import NamedTuple

from .xfrmmsg import PolicyEntry, SaEntry

# Every device overlayd creates carries an alias starting with this, so a restarted
# daemon can tell its own objects from everything else using the kernel alone.
ALIAS_PREFIX = "overlayd:"

# Device names inside an overlay sandbox (Docker's layout). The sandbox is a netns of its
# own, so these names never meet the host's or another sandbox's.
SANDBOX_BRIDGE = "br0"
SANDBOX_VXLAN = "vxlan0"


@dataclass(frozen=True)
class BridgeSpec:
    """A local bridge network's Linux bridge."""

    network_id: str
    ifname: str  # e.g. "obr-<id[:11]>" or "overlayd0" for the default network
    gateway: IPv4Interface  # gateway address with the subnet's prefix, e.g. 172.18.0.1/16
    subnet: IPv4Network
    mtu: int = 1500
    internal: bool = False  # no route out: no NAT, traffic only between its own endpoints
    masquerade: bool = True  # outbound NAT for traffic leaving through another interface
    icc: bool = True  # endpoints on this bridge may talk to each other


@dataclass(frozen=True)
class OverlaySpec:
    """An overlay (VXLAN) network this host may take part in.

    A sandbox netns is made for it only while it has at least one local endpoint (an
    EndpointSpec with this network_id); without one it costs nothing. The daemon computes
    `mtu` (see dataplane.mtu.overlay_mtu, or the com.docker.network.driver.mtu option)."""

    network_id: str
    vni: int  # 1 .. 2**24-1
    subnet: IPv4Network
    gateway: IPv4Interface  # address of br0 in the sandbox, e.g. 10.0.1.1/24
    mtu: int  # of br0, vxlan0 and every endpoint's veth
    dstport: int = 4789  # the swarm's data-path port
    encrypted: bool = False  # VXLAN between hosts goes through ESP (ipsec_plan.py)


@dataclass(frozen=True)
class PeerSpec:
    """A remote endpoint of an overlay network: FDB mac -> vtep and neigh ip -> mac."""

    network_id: str
    ip: IPv4Address
    mac: str  # "02:42:0a:00:01:05"
    vtep: IPv4Address  # underlay address of the host the endpoint lives on


@dataclass(frozen=True)
class EndpointSpec:
    """One container attachment: a veth pair, host end on the bridge, peer in the netns.

    If network_id names an OverlaySpec it is an overlay endpoint: its "host" end lives
    inside that network's sandbox netns, enslaved to br0, so `bridge` must be
    SANDBOX_BRIDGE and host_ifname only has to be unique within the sandbox."""

    endpoint_id: str  # 64 hex
    network_id: str
    bridge: str  # BridgeSpec.ifname, or SANDBOX_BRIDGE for an overlay endpoint
    host_ifname: str  # host end, e.g. "ove-<endpoint_id[:11]>"
    netns_path: str  # /run/netns/x or /proc/PID/ns/net
    ifname: str  # inside the container, e.g. "eth0"
    address: IPv4Interface  # e.g. 172.18.0.2/16
    mac: str  # "02:42:ac:12:00:02"
    mtu: int = 1500
    default_gateway: IPv4Address | None = None  # set on the container's first network only
    # the namespace's identity when it was connected (netns.netns_key): a /proc/PID/ns/net
    # whose PID now belongs to another process names another namespace; None: not checked
    netns_key: str | None = None


@dataclass(frozen=True)
class IpsecSpec:
    """What encrypted overlays need, present while the swarm has any encrypted network.

    keys: the managers' data-path key ring (rotated every 12 h, the same on every node):
    receive with each, send with `primary`. epoch: ours, random, new whenever this host
    starts sending from scratch (so that no SA key is ever used twice); peers: every other
    node's VTEP and epoch (SAs exist with all of them, not only with the current peers of
    some network: a flapping peer must not re-create SAs). port: the encrypted networks'
    VXLAN port."""

    keys: tuple[bytes, ...] = field(repr=False)
    primary: bytes = field(repr=False)
    epoch: str
    peers: tuple[tuple[IPv4Address, str], ...]
    port: int
    # the swarm's state is not known right now (a role switch, a manager catching up, a
    # stop): SAs and policies stay exactly as they are in the kernel
    hold: bool = False


HOLD_IPSEC = IpsecSpec((), b"", "", (), 0, hold=True)


@dataclass(frozen=True)
class Desired:
    bridges: frozenset[BridgeSpec] = field(default_factory=frozenset)
    endpoints: frozenset[EndpointSpec] = field(default_factory=frozenset)
    overlays: frozenset[OverlaySpec] = field(default_factory=frozenset)
    peers: frozenset[PeerSpec] = field(default_factory=frozenset)
    # this host's underlay address: the vxlan devices' `local`, and what peers use as our
    # VTEP; None leaves existing vxlan devices and their entries as they are
    vtep: IPv4Address | None = None
    ipsec: IpsecSpec | None = None  # None: the swarm has no encrypted network (or no swarm)
    # in a swarm whose state is not known right now (a failed start of the manager, a role
    # switch): sandboxes, their endpoints and peers stay exactly as they are in the kernel
    hold_overlays: bool = False


# --- what observe() saw ----------------------------------------------------------------------


def bridge_alias(network_id: str) -> str:
    return f"{ALIAS_PREFIX}{network_id}"


def endpoint_alias(network_id: str, endpoint_id: str) -> str:
    return f"{ALIAS_PREFIX}{network_id}:{endpoint_id}"


def vxlan_alias(network_id: str) -> str:
    return f"{ALIAS_PREFIX}{network_id}:vxlan"


@dataclass(frozen=True)
class VxlanInfo:
    """The vxlan attributes plan() insists on; any difference means delete and re-create."""

    vni: int
    port: int
    local: IPv4Address | None
    learning: bool
    proxy: bool
    underlay: bool = True  # its UDP socket lives in another netns (the host's)


class FdbEntry(NamedTuple):
    """A permanent NTF_SELF entry on a vxlan device: frames for mac go to VTEP dst."""

    mac: str
    dst: IPv4Address


class NeighEntry(NamedTuple):
    """A permanent neighbour entry on a vxlan device (answered locally: `proxy`)."""

    ip: IPv4Address
    mac: str


@dataclass(frozen=True)
class ObservedLink:
    """One link in the host namespace, reduced to what plan() compares."""

    ifname: str
    kind: str | None  # IFLA_INFO_KIND: "bridge", "veth", ... (None for lo and plain NICs)
    alias: str | None
    mtu: int
    up: bool  # IFF_UP (admin state; an empty bridge is up but has no carrier)
    master: str | None = None  # ifname of the bridge it is enslaved to
    addresses: frozenset[IPv4Interface] = frozenset()
    vxlan: VxlanInfo | None = None  # for kind "vxlan"

    @property
    def owned(self) -> bool:
        """Made by overlayd (any instance): the only links that may ever be deleted."""
        return self.alias is not None and self.alias.startswith(ALIAS_PREFIX)


@dataclass(frozen=True)
class ObservedSandbox:
    """One file in this instance's sandbox directory and, if it is a live netns, what is in
    it. fdb/neigh hold only the entries overlayd manages: permanent ones on the sandbox's
    owned vxlan0 (NTF_SELF, not NTF_MASTER, for FDB). Kernel-made entries are not here,
    so nothing can plan to touch them."""

    path: str
    alive: bool  # False: a leftover file whose netns is gone (only removal applies)
    links: dict[str, ObservedLink] = field(default_factory=dict)
    fdb: frozenset[FdbEntry] = frozenset()
    neigh: frozenset[NeighEntry] = frozenset()
    # why it could not be read this time (a dump cut short again and again, no fd left):
    # left exactly as it is for the round, its endpoints counted as not in place
    unreadable: str | None = None

    @property
    def network_id(self) -> str | None:
        """Whose sandbox this is, from br0's alias; None if br0 is missing or not ours."""
        br = self.links.get(SANDBOX_BRIDGE)
        alias = br.alias if br is not None and br.kind == "bridge" else None
        if alias is None or not alias.startswith(ALIAS_PREFIX) or alias.count(":") != 1:
            return None
        return alias[len(ALIAS_PREFIX) :]


@dataclass(frozen=True)
class XfrmObserved:
    """overlayd's SAs (by reqid) and outbound policies (by mark) in the host namespace."""

    sas: frozenset[SaEntry] = frozenset()
    policies: frozenset[PolicyEntry] = frozenset()


@dataclass(frozen=True)
class Observed:
    """The host namespace as the kernel reports it, normalized for plan()."""

    links: dict[str, ObservedLink] = field(default_factory=dict)  # by ifname
    # netns paths (of desired endpoints) that exist and are network namespaces
    live_netns: frozenset[str] = frozenset()
    nft: str | None = None  # fingerprint of overlayd's nft tables, None when absent
    ip_forward: bool = False
    bridge_nf: bool = True  # bridged IPv4 frames reach the ip hooks (bridge-nf-call-iptables)
    sandboxes: dict[str, ObservedSandbox] = field(default_factory=dict)  # by path
    xfrm: XfrmObserved = field(default_factory=XfrmObserved)


# --- what apply() does: a closed set of idempotent operations -------------------------------


@dataclass(frozen=True)
class NftRuleset:
    """Our nft tables, rendered. fingerprint None means "no tables" (the script removes them)."""

    script: str
    fingerprint: str | None


@dataclass(frozen=True)
class CreateBridge:
    """Bridge with alias, MTU and a fixed MAC, admin up. Its address comes as AddAddr."""

    spec: BridgeSpec


# `netns` on a link op: None is the host namespace, else the path of an overlay sandbox.


@dataclass(frozen=True)
class CreateEndpoint:
    """Veth pair: peer configured inside spec.netns_path, host end enslaved and up last."""

    spec: EndpointSpec
    netns: str | None = None


@dataclass(frozen=True)
class SetLink:
    """Change attributes of an owned link; None means leave as it is. `peer`: (container
    netns path, ifname) of a veth's other end, which gets the same new MTU (the two ends
    of a pair must agree, or big frames are dropped)."""

    ifname: str
    mtu: int | None = None
    up: bool | None = None
    master: str | None = None
    netns: str | None = None
    peer: tuple[str, str] | None = None


@dataclass(frozen=True)
class AddAddr:
    ifname: str
    address: IPv4Interface
    netns: str | None = None


@dataclass(frozen=True)
class DelAddr:
    ifname: str
    address: IPv4Interface
    netns: str | None = None


@dataclass(frozen=True)
class DelLink:
    """Delete an owned link; apply re-checks the alias so a foreign device is never hit.
    `half_made`: a host device of a name only overlayd makes, left without its alias by a
    crash between its create and the request that sets the alias (alias "" re-checked)."""

    ifname: str
    alias: str
    netns: str | None = None
    half_made: bool = False


@dataclass(frozen=True)
class CreateSandbox:
    """A new netns bind-mounted at `path`, lo up. Its devices come as further ops."""

    path: str
    network_id: str


@dataclass(frozen=True)
class DelSandbox:
    """Delete our devices inside (so the VNI is free at once), then unmount and unlink."""

    path: str


@dataclass(frozen=True)
class CreateOverlayBridge:
    """br0 in the sandbox: alias, fixed MAC, MTU, up. Its address comes as AddAddr."""

    spec: OverlaySpec
    netns: str


@dataclass(frozen=True)
class CreateVxlan:
    """vxlan0 made from the host namespace straight into the sandbox (its UDP socket stays
    on the underlay), learning off, proxy on, then alias, master br0, up."""

    spec: OverlaySpec
    netns: str
    vtep: IPv4Address


@dataclass(frozen=True)
class ProgramPeers:
    """One batch of FDB/neigh changes on a sandbox's vxlan device, applied in this order
    (a neighbour only ever points at a MAC that has its FDB entry)."""

    netns: str
    ifname: str
    replace_fdb: tuple[FdbEntry, ...] = ()
    replace_neigh: tuple[NeighEntry, ...] = ()
    del_neigh: tuple[NeighEntry, ...] = ()
    del_fdb: tuple[FdbEntry, ...] = ()

    def __repr__(self) -> str:  # 10 000 entries must not end up in a log line
        return (
            f"ProgramPeers({self.netns!r}, {self.ifname!r}, fdb +{len(self.replace_fdb)}"
            f" -{len(self.del_fdb)}, neigh +{len(self.replace_neigh)} -{len(self.del_neigh)})"
        )


@dataclass(frozen=True)
class EnableIpForward:
    """net.ipv4.ip_forward=1 in the host namespace (never turned off again)."""


@dataclass(frozen=True)
class EnableBridgeNetfilter:
    """br_netfilter loaded and net.bridge.bridge-nf-call-iptables=1 in the host namespace:
    the icc=false rule only sees frames bridged between two ports through it (Docker does
    the same). Never turned off again."""


@dataclass(frozen=True)
class ApplyNft:
    """Replace overlayd's nft tables in one atomic `nft -f -` transaction."""

    ruleset: NftRuleset


@dataclass(frozen=True)
class ProgramXfrm:
    """One batch of ESP changes in the host namespace, applied in this order."""

    add_sas: tuple[SaEntry, ...] = ()
    put_policies: tuple[PolicyEntry, ...] = ()
    del_policies: tuple[PolicyEntry, ...] = ()
    del_sas: tuple[SaEntry, ...] = ()

    def __repr__(self) -> str:  # keys must never reach a log line
        return (
            f"ProgramXfrm(SA +{len(self.add_sas)} -{len(self.del_sas)}, "
            f"policy +{len(self.put_policies)} -{len(self.del_policies)})"
        )


LinkOp = CreateBridge | CreateEndpoint | SetLink | AddAddr | DelAddr | DelLink
OverlayOp = CreateSandbox | DelSandbox | CreateOverlayBridge | CreateVxlan | ProgramPeers
Op = LinkOp | EnableIpForward | EnableBridgeNetfilter | ApplyNft | OverlayOp | ProgramXfrm
