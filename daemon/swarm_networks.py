"""Swarm networks as the NetworkService sees them: records, IPs and the overlay plan.

The replicated state is the source: every node holds it (managers in raft, workers
through their session), so a network created on a manager is known with the same ID,
VNI and subnet everywhere. Remote endpoints come from the swarm's address allocations:
each names the node it lives on, whose address is the VTEP.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from daemon.errors import Unavailable
from daemon.networks import OPT_ENCRYPTED, OPT_MTU, CreateNetworkRequest, _mtu_option
from daemon.records import NetworkRecord
from daemon.swarm import SwarmService, new_network_id
from dataplane.model import HOLD_IPSEC, IpsecSpec, OverlaySpec, PeerSpec
from dataplane.mtu import overlay_mtu
from manager.ipam import mac_for
from manager.state import SwarmNetwork
from manager.timefmt import stamp


def _vxlan_port(data_path_port: int, encrypted: bool) -> int:
    """Encrypted networks' VXLAN goes to the next port: the hosts' xfrm policies for that
    port then cover exactly their traffic (dataplane.ipsec_plan); on the wire it is ESP."""
    return data_path_port + 1 if encrypted else data_path_port


def _record(net: SwarmNetwork) -> NetworkRecord:
    return NetworkRecord(
        id=net.id,
        name=net.name,
        driver="overlay",
        scope="swarm",
        created=net.created_at,
        internal=net.internal,
        attachable=net.attachable,
        ingress=net.ingress,
        ipam_config=net.configs(),
        options=dict(net.options),
        labels=dict(net.labels),
        user_subnet=net.user_subnet,
    )


class SwarmNetworkAdapter:
    def __init__(self, svc: SwarmService, underlay_mtu: int = 1500) -> None:
        self._svc = svc
        # Set by the engine when gossip runs: which hosts are alive, and remote records.
        self.liveness: Callable[[], dict[str, bool]] = dict
        self.remote_entries: Callable[[set[str]], list[tuple[str, Any]]] = lambda n: []
        self.underlay_mtu = underlay_mtu
        self._cache: tuple[int, dict[str, NetworkRecord]] | None = None

    def active(self) -> bool:
        return self._svc.identity is not None

    def state_known(self) -> bool:
        """False while this node is in a swarm but holds no copy of its state."""
        return self._svc.view() is not None

    def is_manager(self) -> bool:
        return self._svc.control_available

    def network_records(self) -> dict[str, NetworkRecord]:
        state = self._svc.view()
        if state is None:
            return {}
        key = state.applied_index
        if (
            self._cache is None
            or self._cache[0] != key
            or len(self._cache[1]) != len(state.networks)
        ):
            self._cache = (key, {n.id: _record(n) for n in state.networks.values()})
        return self._cache[1]

    async def create_network(self, req: CreateNetworkRequest) -> str:
        return str(
            await self._svc.propose(
                {
                    "op": "network.create",
                    "now": stamp(),
                    "network": {
                        "id": new_network_id(),
                        "name": req.name,
                        "ipam_config": req.ipam_config,
                        "labels": dict(req.labels),
                        "options": dict(req.options),
                        "attachable": req.attachable,
                        "internal": req.internal,
                        "ingress": req.ingress,
                    },
                }
            )
        )

    async def remove_network(self, net_id: str) -> None:
        await self._svc.propose({"op": "network.remove", "id": net_id})

    def _node_id(self) -> str:
        ident = self._svc.identity
        if ident is None:
            raise Unavailable("This node is not part of a swarm")
        return ident.node_id

    async def allocate(self, net_id: str, endpoint_id: str, requested: IPv4Address | None,
                       mac: str = "") -> str:  # fmt: skip
        cmd = {"op": "ip.allocate", "network_id": net_id, "endpoint_id": endpoint_id,
               "node_id": self._node_id(), "requested": str(requested) if requested else None,
               "mac": mac or None}  # fmt: skip
        return str(await self._svc.call_managers(cmd))

    async def release(self, net_id: str, endpoint_id: str) -> None:
        await self._svc.call_managers({"op": "ip.release", "network_id": net_id,
                                       "endpoint_id": endpoint_id, "node_id": self._node_id()})  # fmt: skip

    def overlay_spec(self, net: NetworkRecord) -> OverlaySpec | None:
        state = self._svc.view()
        swarm_net = state.networks.get(net.id) if state is not None else None
        if swarm_net is None or state is None or not net.ipam_config:
            return None
        cfg = net.ipam_config[0]
        if cfg.gateway is None:
            return None
        encrypted = OPT_ENCRYPTED in net.options
        port = state.cluster.data_path_port if state.cluster else 4789
        mtu = overlay_mtu(self.underlay_mtu, encrypted=encrypted)
        if OPT_MTU in net.options:
            mtu = _mtu_option(net.options)
        return OverlaySpec(
            network_id=net.id,
            vni=swarm_net.vni,
            subnet=cfg.subnet,
            gateway=IPv4Interface(f"{cfg.gateway}/{cfg.subnet.prefixlen}"),
            mtu=mtu,
            dstport=_vxlan_port(port, encrypted),
            encrypted=encrypted,
        )

    def peers(self, network_ids: set[str]) -> list[PeerSpec]:
        """Allocations on other hosts (raft: durable) whose host is alive, by gossip where
        gossip knows it (fast), else by the manager's heartbeat view; plus records gossip
        brought that the replicated state has not shown us yet."""
        state = self._svc.view()
        ident = self._svc.identity
        if state is None or ident is None:
            return []
        alive = self.liveness()
        out: dict[tuple[str, IPv4Address], PeerSpec] = {}
        for alloc in state.allocations.values():
            if alloc.network_id not in network_ids or alloc.node_id == ident.node_id:
                continue
            node = state.nodes.get(alloc.node_id)
            if node is None or not node.addr:
                continue
            if not alive.get(node.id, node.state != "down"):
                continue
            try:  # one bad row must not stop every other peer from being programmed
                ip, vtep = IPv4Interface(alloc.address).ip, IPv4Address(node.addr)
            except ValueError:
                continue
            mac = alloc.mac or mac_for(ip)
            out[(alloc.network_id, ip)] = PeerSpec(alloc.network_id, ip, mac, vtep)
        for net, rec in self.remote_entries(network_ids):
            try:
                ip, vtep = IPv4Address(rec.ip), IPv4Address(rec.vtep)
            except ValueError:
                continue
            if vtep == self.vtep():
                continue
            out.setdefault((net, ip), PeerSpec(net, ip, rec.mac.lower(), vtep))
        return list(out.values())

    def orphans(self, local_endpoint_ids: set[str]) -> list[tuple[str, str]]:
        """(network, endpoint) allocations naming this node with no local endpoint."""
        state = self._svc.view()
        ident = self._svc.identity
        if state is None or ident is None:
            return []
        return sorted(
            (a.network_id, a.endpoint_id)
            for a in state.allocations.values()
            if a.node_id == ident.node_id and a.endpoint_id not in local_endpoint_ids
        )

    def peer_hosts(self, net_id: str) -> list[tuple[str, str]]:
        """Hosts with endpoints on the network (docker network inspect's `Peers`)."""
        state = self._svc.view()
        if state is None:
            return []
        ids = sorted({a.node_id for a in state.allocations.values() if a.network_id == net_id})
        nodes = [state.nodes[i] for i in ids if i in state.nodes]
        return [(f"{n.hostname}-{n.id[:12]}", n.addr) for n in nodes]

    def vtep(self) -> IPv4Address | None:
        ident = self._svc.identity
        try:
            return IPv4Address(ident.data_addr) if ident else None
        except ValueError:
            return None

    def ipsec_spec(self) -> IpsecSpec | None:
        """What encrypted overlays need (dataplane.ipsec_plan), while the swarm has any:
        the managers' key ring (hex, newest last, rotated every 12 h), our epoch, and every
        other node's VTEP and epoch."""
        state = self._svc.view()
        ident = self._svc.identity
        if ident is None:
            return None  # not in a swarm: nothing of ours belongs in the kernel
        if state is None or not self._svc.ipsec_epoch:
            return HOLD_IPSEC  # in one, but its state is not known right now
        if not any(OPT_ENCRYPTED in n.options for n in state.networks.values()):
            return None
        ring = state.keyrings.get("ipsec")
        try:
            keys = tuple(bytes.fromhex(k) for k in ring.keys) if ring else ()
            primary = bytes.fromhex(ring.primary) if ring and ring.primary else b""
        except ValueError:
            keys, primary = (), b""
        peers = []
        for node in state.nodes.values():
            try:
                addr = IPv4Address(node.addr)
            except ValueError:
                continue
            if node.id != ident.node_id:
                peers.append((addr, node.ipsec_epoch))
        port = _vxlan_port(state.cluster.data_path_port if state.cluster else 4789, True)
        return IpsecSpec(keys, primary, self._svc.ipsec_epoch, tuple(sorted(peers)), port)

