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
