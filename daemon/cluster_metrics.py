"""Prometheus view of the swarm and gossip layers, read at scrape time (no bookkeeping
on the hot paths)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.gossip_service import GossipService
from daemon.swarm import SwarmService

_DROPS = ("dropped_undecryptable", "dropped_replayed", "dropped_malformed",
          "dropped_oversized_in", "dropped_oversized_out", "dropped_streams_busy")  # fmt: skip


class ClusterCollector(Collector):
    def __init__(self, swarm: SwarmService, gossip: GossipService) -> None:
        self._swarm = swarm
        self._gossip = gossip

    def collect(self) -> Iterator[Metric]:
        yield from self._swarm_metrics()
        yield from self._gossip_metrics()

    def _swarm_metrics(self) -> Iterator[Metric]:
        state = self._swarm.view()
        nodes = GaugeMetricFamily("overlayd_swarm_nodes", "Swarm nodes by role and state.",
                                  labels=["role", "state"])  # fmt: skip
        counts: dict[tuple[str, str], int] = {}
        for node in state.nodes.values() if state is not None else ():
            counts[(node.role, node.state)] = counts.get((node.role, node.state), 0) + 1
        for (role, st), n in sorted(counts.items()):
            nodes.add_metric([role, st], n)
        yield nodes
        manager = self._swarm.manager
        yield GaugeMetricFamily("overlayd_swarm_leader", "1 when this node is the raft leader.",
                                value=1 if manager is not None and manager.is_leader else 0)  # fmt: skip
        if manager is not None:
            yield GaugeMetricFamily("overlayd_raft_applied_index", "Last raft index applied.",
                                    value=manager.node.applied)  # fmt: skip
            yield GaugeMetricFamily("overlayd_raft_term", "Current raft term.",
                                    value=manager.node.core.hard_state.term)  # fmt: skip

    def _gossip_metrics(self) -> Iterator[Metric]:
        members = GaugeMetricFamily("overlayd_gossip_members", "Gossip members by state.",
                                    labels=["state"])  # fmt: skip
        counts: dict[str, int] = {}
        for _, st in self._gossip.members():
            counts[st] = counts.get(st, 0) + 1
        for st in ("alive", "suspect", "dead", "left"):
            members.add_metric([st], counts.get(st, 0))
        yield members
        tables = GaugeMetricFamily("overlayd_gossip_table_entries",
                                   "Endpoint records per network table.", labels=["network"])  # fmt: skip
        for net, size in sorted(self._gossip.table_sizes().items()):
            tables.add_metric([net], size)
        yield tables
        stats = self._gossip.stats()
        packets = CounterMetricFamily("overlayd_gossip_packets", "Gossip datagrams.",
                                      labels=["direction"])  # fmt: skip
        packets.add_metric(["in"], stats.get("packets_in", 0))
        packets.add_metric(["out"], stats.get("packets_out", 0))
        yield packets
        traffic = CounterMetricFamily("overlayd_gossip_bytes", "Gossip bytes (UDP and TCP).",
                                      labels=["direction"])  # fmt: skip
        traffic.add_metric(["in"], stats.get("bytes_in", 0) + stats.get("stream_bytes_in", 0))
        traffic.add_metric(["out"], stats.get("bytes_out", 0) + stats.get("stream_bytes_out", 0))
        yield traffic
        drops = CounterMetricFamily("overlayd_gossip_dropped", "Gossip input dropped, by reason.",
                                    labels=["reason"])  # fmt: skip
        for key in _DROPS:
            drops.add_metric([key.removeprefix("dropped_")], stats.get(key, 0))
        yield drops
