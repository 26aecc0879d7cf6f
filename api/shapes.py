"""Docker JSON shapes built from engine records (pure functions)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from api import versions
from daemon.networks import NetworkView
from daemon.records import IpamConfig


@lru_cache(maxsize=4096)
def _ipam_config(cfg: IpamConfig) -> dict[str, Any]:
    """Configs are immutable and rendered on every list: render each once."""
    return cfg.to_docker()


def network(view: NetworkView, api_version: str, *, detailed: bool = True) -> dict[str, Any]:
    """Key order is dockerd's (the CLI prints it as received). `detailed=False` is the
    list form: `Containers` present but empty, as dockerd does for API >= 1.28."""
    net = view.network
    doc: dict[str, Any] = {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": net.scope,
        "Driver": net.driver,
    }
    doc["EnableIPv4"] = net.enable_ipv4
    doc["EnableIPv6"] = net.enable_ipv6
    doc["IPAM"] = {
        "Driver": net.ipam_driver,
        "Options": net.ipam_options,
        "Config": [_ipam_config(c) for c in net.ipam_config] if net.ipam_config else None,
    }
    doc["Internal"] = net.internal
    doc["Attachable"] = net.attachable
    doc["Ingress"] = net.ingress
    doc["ConfigFrom"] = {"Network": net.config_from}
    doc["ConfigOnly"] = net.config_only
    doc["Containers"] = {}
    if detailed or versions.less_than(api_version, "1.28"):
        doc["Containers"] = {
            ep.container_id: {
                "Name": ep.container_name,
                "EndpointID": ep.id,
                "MacAddress": ep.mac,
                "IPv4Address": ep.ipv4,
                "IPv6Address": "",
            }
            for ep in view.endpoints
        }
    doc["Options"] = dict(net.options)
    doc["Labels"] = dict(net.labels)
    if detailed and view.peers:
        doc["Peers"] = [{"Name": name, "IP": ip} for name, ip in view.peers]
    return doc
