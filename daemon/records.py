"""The local records the engine keeps: networks and endpoints.

Plain dataclasses with JSON round-trips; the store persists them, the API shapes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from manager.ipam import IpamConfig

PREDEFINED = ("bridge", "host", "none")


@dataclass
class NetworkRecord:
    id: str
    name: str
    driver: str
    scope: str
    created: str  # RFC 3339 with nanoseconds, as Docker prints it
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    config_only: bool = False
    config_from: str = ""
    ipam_driver: str = "default"
    ipam_options: dict[str, str] | None = None
    ipam_config: list[IpamConfig] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user_subnet: bool = False  # subnet given by the user: static IPs allowed on connect
    ipam_last: str | None = None  # serial allocation cursor (last address handed out)
    ifname: str = ""  # kernel bridge name for bridge networks

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED and self.driver in ("bridge", "host", "null")

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ipam_config"] = [c.to_docker() for c in self.ipam_config]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> NetworkRecord:
        doc = dict(doc)
        doc["ipam_config"] = [IpamConfig.from_docker(c) for c in doc.get("ipam_config", [])]
        return cls(**doc)


@dataclass
class EndpointRecord:
    id: str  # 64 hex
    network_id: str
    container_id: str  # 64 hex, derived from the netns identity
    container_name: str
    netns_path: str
    netns_key: str  # "dev:ino" of the netns file: identity of the namespace
    ifname: str  # eth<N> inside the container
    ipv4: str  # "172.18.0.2/16" or ""
    mac: str
    aliases: list[str] = field(default_factory=list)
    gateway: str = ""  # default route via this address if it was the container's first network

    @property
    def ipv4_interface(self) -> IPv4Interface | None:
        return IPv4Interface(self.ipv4) if self.ipv4 else None

    @property
    def ipv4_address(self) -> IPv4Address | None:
        iface = self.ipv4_interface
        return iface.ip if iface else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EndpointRecord:
        return cls(**doc)
