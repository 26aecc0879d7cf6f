"""What the data plane is asked for (Desired) and what it saw in the kernel (Observed).

Plain frozen values so the daemon can build them without importing anything kernel-ish,
and so plan() stays a pure function over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

# Every device overlayd creates carries an alias starting with this, so a restarted
# daemon can tell its own objects from everything else using the kernel alone.
ALIAS_PREFIX = "overlayd:"


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
class EndpointSpec:
    """One container attachment: a veth pair, host end on the bridge, peer in the netns."""

    endpoint_id: str  # 64 hex
    network_id: str
    bridge: str  # BridgeSpec.ifname
    host_ifname: str  # host end, e.g. "ove-<endpoint_id[:11]>"
    netns_path: str  # /run/netns/x or /proc/PID/ns/net
    ifname: str  # inside the container, e.g. "eth0"
    address: IPv4Interface  # e.g. 172.18.0.2/16
    mac: str  # "02:42:ac:12:00:02"
    mtu: int = 1500
    default_gateway: IPv4Address | None = None  # set on the container's first network only


@dataclass(frozen=True)
class Desired:
    bridges: frozenset[BridgeSpec] = field(default_factory=frozenset)
    endpoints: frozenset[EndpointSpec] = field(default_factory=frozenset)


# --- what observe() saw ----------------------------------------------------------------------


def bridge_alias(network_id: str) -> str:
    return f"{ALIAS_PREFIX}{network_id}"


def endpoint_alias(network_id: str, endpoint_id: str) -> str:
    return f"{ALIAS_PREFIX}{network_id}:{endpoint_id}"


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

    @property
    def owned(self) -> bool:
        """Made by overlayd (any instance): the only links that may ever be deleted."""
        return self.alias is not None and self.alias.startswith(ALIAS_PREFIX)


@dataclass(frozen=True)
class Observed:
    """The host namespace as the kernel reports it, normalized for plan()."""

    links: dict[str, ObservedLink] = field(default_factory=dict)  # by ifname
    # netns paths (of desired endpoints) that exist and are network namespaces
    live_netns: frozenset[str] = frozenset()
    nft: str | None = None  # fingerprint of overlayd's nft tables, None when absent
    ip_forward: bool = False


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


@dataclass(frozen=True)
class CreateEndpoint:
    """Veth pair: peer configured inside spec.netns_path, host end enslaved and up last."""

    spec: EndpointSpec


@dataclass(frozen=True)
class SetLink:
    """Change attributes of an owned link; None means leave as it is."""

    ifname: str
    mtu: int | None = None
    up: bool | None = None
    master: str | None = None


@dataclass(frozen=True)
class AddAddr:
    ifname: str
    address: IPv4Interface


@dataclass(frozen=True)
class DelAddr:
    ifname: str
    address: IPv4Interface


@dataclass(frozen=True)
class DelLink:
    """Delete an owned link; apply re-checks the alias so a foreign device is never hit."""

    ifname: str
    alias: str


@dataclass(frozen=True)
class EnableIpForward:
    """net.ipv4.ip_forward=1 in the host namespace (never turned off again)."""


@dataclass(frozen=True)
class ApplyNft:
    """Replace overlayd's nft tables in one atomic `nft -f -` transaction."""

    ruleset: NftRuleset


LinkOp = CreateBridge | CreateEndpoint | SetLink | AddAddr | DelAddr | DelLink
Op = LinkOp | EnableIpForward | ApplyNft
