"""Gossip tunables: one frozen dataclass, `GossipConfig.lan()` for a data-centre LAN.

Docker's memberlist defaults (probe 1 s, suspicion min 4 s) take 5-7 s to
drop a killed host; the figures we must beat are in issue 5 (≤ 1.5 s full
detection at 3-5 hosts, 0 false positives at 10 % loss, 99.9 % of 1000 nodes
reached in ≤ 1.0 s, idle traffic below serf's ~330 kbit/s per node). Each
default below says which of those it serves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """All gossip timing and sizing; seconds for durations, bytes for sizes."""

    # --- failure detection (SWIM + Lifeguard) ---------------------------------
    # One probe per node every 150 ms (memberlist: 1 s). With 3-5 nodes every
    # member is probed by someone ~every 50 ms and by each peer within
    # (n-1) * 150 ms, so the first suspicion comes <= 0.6 s after a death;
    # a ping + ack is ~140 bytes sealed, ~7.5 kbit/s per node.
    probe_interval: float = 0.15
    # LAN round trips are < 1 ms; 80 ms leaves room for scheduler jitter on a
    # busy host before we fall back to indirect probes (and a second direct
    # ping) within the same probe period.
    probe_timeout: float = 0.08
    # k helpers for indirect probes (memberlist's 3): with one extra direct
    # retry, a healthy peer is suspected by one probe with p ~0.2 % at 10 %
    # loss, ~2 % at 20 % loss; each such suspicion is refuted well before it
    # can time out.
    indirect_checks: int = 3
    # A helper that got no ack from the target says so (a nack) after this long: the
    # prober sends its indirect requests at probe_timeout and counts nacks until
    # probe_interval, so the nack has to be out within those 70 ms, with room for the
    # trip. (At probe_timeout, 160 ms, every nack came too late and healthy probers
    # took the missing nacks as their own fault, slowing their probes up to 8x.)
    indirect_nack_after: float = 0.04
    # Suspicion min = mult * max(1, log10 n) * probe_interval: 0.6 s at <= 10
    # nodes (full detection measured <= 1.2 s with 3-5 nodes), 1.8 s at 1000.
    # 0.6 s is what a node lagging 200-300 ms needs to hear the accusation
    # and get its refutation through 20 % loss (mult 3, i.e. 0.45 s, was not).
    suspicion_mult: int = 4
    # Lifeguard: the timer starts at max = 4 * min (2.4 s at <= 10 nodes) and
    # shrinks to min once k = mult - 2 = 2 other nodes independently agree, so
    # a lone suspicious (perhaps slow) prober cannot kill anyone quickly.
    suspicion_max_mult: int = 4
    # On hearing a new suspicion, about this many nodes (each with p = 3/(n-2))
    # probe the suspect at once instead of waiting for its turn in their
    # round-robin, so the confirmations (or the refutation) needed to reach
    # the min timeout arrive within one probe period, for ~3 extra pings per
    # suspicion at any cluster size.
    confirm_probes: int = 3
    # Lifeguard local health: a node that misses nacks stretches its own probe
    # deadline up to 8x (memberlist's value) instead of accusing others.
    awareness_max: int = 8

    # --- dissemination ---------------------------------------------------------
    # Piggyback gossip every 100 ms to 4 random peers (memberlist: 200 ms to 3):
    # infection grows ~5x per hop, so 1000 nodes are reached in ~5 hops, well
    # under 1 s. Idle rounds send nothing (no queued broadcast, no packet).
    gossip_interval: float = 0.1
    gossip_nodes: int = 4
    # Each broadcast is sent mult * ceil(log10(n+1)) times (16 at 1000 nodes):
    # the chance a node is never reached is ~e^-16 even with 20 % loss.
    retransmit_mult: int = 4
    # Keep gossiping to a dead node this long so a wrongly-dead node hears
    # about it and refutes (memberlist: 30 s).
    gossip_to_dead: float = 30.0
    # Full state exchange over a stream (TCP) with one random node; scaled up
    # like memberlist's pushPullScale beyond 32 nodes (x6 at 1000 nodes, ~3 min)
    # so its share of idle bandwidth stays a few kbit/s.
    push_pull_interval: float = 30.0
    # Serf's reconnect: every 2 s try a push-pull with one random dead member,
    # which is how the halves of a healed partition find each other again.
    reconnect_interval: float = 2.0
    # Forget dead members after an hour (serf keeps 24 h); left members after a
    # minute, once their leave has been gossiped.
    dead_reap: float = 3600.0
    left_reap: float = 60.0

    # --- wire -----------------------------------------------------------------
    # UDP payloads stay <= 1400 bytes (memberlist's UDPBufferSize) so they never
    # fragment under a 1500-byte MTU, even with VXLAN/IPsec next to them.
    packet_size: int = 1400
    # A stream (push-pull, table sync) bigger than this is refused unread.
    max_stream_size: int = 32 * 1024 * 1024

    # --- network tables (NetworkDB role) ----------------------------------------
    # Table events are pushed at once to `table_fanout` peers of the network
    # (eager push: target <= 10 ms A -> B), then gossiped every 100 ms.
    table_gossip_interval: float = 0.1
    table_fanout: int = 4
    # Retransmits of a table event: mult * ceil(log10(participants + 1)), as for
    # SWIM; anti-entropy repairs whatever this budget fails to deliver.
    table_retransmit_mult: int = 4
    # Anti-entropy: every second, one digest (count + hash) per network to one
    # random peer of it; a mismatch triggers a one-round-trip stream sync. This
    # is what makes a lost broadcast impossible to keep lost (moby#53141).
    table_sync_interval: float = 1.0
    # Tombstones outlive any plausible anti-entropy delay; the owner re-asserts
    # its deletions anyway, so a late resurrection is corrected.
    tombstone_ttl: float = 300.0
    # Entries of a dead owner stay hidden (not deleted) this long so they come
    # back at once if the owner returns (the NXDOMAIN case of moby#47728).
    owner_reap: float = 3600.0
    # A "left network" record is kept this long (NetworkDB: 30 min), long enough for every
    # peer to have heard it, then dropped: records of short-lived networks would otherwise
    # ride in every push-pull and table sync for ever.
    participation_reap: float = 1800.0

    @classmethod
    def lan(cls) -> GossipConfig:
        """Defaults for a LAN: the values above."""
        return cls()

    def suspicion_min(self, n: int) -> float:
        """memberlist's suspicionTimeout: scales with log10 of cluster size."""
        return self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval

    def retransmit_limit(self, n: int, mult: int | None = None) -> int:
        """memberlist's retransmitLimit: mult * ceil(log10(n + 1))."""
        return (self.retransmit_mult if mult is None else mult) * math.ceil(math.log10(n + 1))

    def push_pull_period(self, n: int) -> float:
        """memberlist's pushPullScale: longer periods past 32 nodes."""
        if n <= 32:
            return self.push_pull_interval
        mult = math.ceil(math.log2(n) - math.log2(32)) + 1
        return self.push_pull_interval * mult
