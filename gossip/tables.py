"""Per-network endpoint tables (Docker NetworkDB's role), a pure SWIM delegate.

Rows are keyed by (network, endpoint id), carry their owner and a Lamport
clock; deletions are tombstones that every node reaps at the same residual
time. Only nodes that take part in a network store or exchange its rows:
table events are pushed at once to a few peers of the network, then gossiped
there with retransmit limits, and every second each node sends one peer per
network a digest (count + XOR of row hashes). A digest that still differs
after a short grace triggers a stream sync, which carries our rows and brings
back theirs in one round trip, so a broadcast that ran out of retransmits is
repaired, never lost (moby#53141/#53437). A join push-pull carries full rows,
so a restarted node converges in one round trip. The owner is the authority
on its own rows: shown an older or unknown version of one, it re-asserts the
current one (or a tombstone) with a higher clock. Rows of an owner that SWIM
declares dead are hidden (one REMOVED event each) and shown again (ADDED)
when it returns, until `owner_reap` passes.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from hashlib import blake2b

from gossip import codec
from gossip.codec import DecodeError
from gossip.config import GossipConfig
from gossip.delegate import DelegateOutput
from gossip.events import Change, EndpointEvent, Event
from gossip.messages import (
    EndpointRecord,
    NetDigest,
    NetworkEvent,
    TableDigest,
    TableEntry,
    TableMessage,
    TableState,
)
from gossip.queue import TransmitLimitedQueue

_PART = codec.COMPOUND_PER_PART
PARTICIPATION = ""  # the digest name of the who-is-where records (no network has an empty name)
Key = tuple[str, str]


@dataclass(slots=True)
class Row:
    owner: str
    clock: int
    record: EndpointRecord | None
    reap_at: float
    digest: int


class _Bag:
    """A set with O(1) random choice (participants of one network)."""

    __slots__ = ("_idx", "_items")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._idx: dict[str, int] = {}

    def __contains__(self, item: str) -> bool:
        return item in self._idx

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> set[str]:
        return set(self._items)

    def add(self, item: str) -> None:
        if item not in self._idx:
            self._idx[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: str) -> None:
        i = self._idx.pop(item, None)
        if i is not None:
            last = self._items.pop()
            if i < len(self._items):
                self._items[i] = last
                self._idx[last] = i

    def sample(self, rng: random.Random, k: int, pred: Callable[[str], bool]) -> list[str]:
        out: list[str] = []
        n = len(self._items)
        for _ in range(3 * k + 3 if n > 4 * k else 0):
            item = self._items[rng.randrange(n)]
            if item not in out and pred(item):
                out.append(item)
                if len(out) == k:
                    return out
        if n <= 4 * k or len(out) < k:  # small set, or unlucky: scan it all
            cands = [i for i in self._items if i not in out and pred(i)]
            rng.shuffle(cands)
            out += cands[: k - len(out)]
        return out


def _row_hash(net: str, eid: str, owner: str, clock: int, dead: bool) -> int:
    h = blake2b(f"{net}\0{eid}\0{owner}\0{clock}\0{int(dead)}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


class Tables:
    """NetworkDB-like tables of one node; implements `gossip.delegate.Delegate`."""

    def __init__(self, node: str, config: GossipConfig, rng: random.Random, now: float) -> None:
        self.node = node
        self.cfg = config
        self.rng = rng
        self.clock = 0
        self.rows: dict[Key, Row] = {}
        self.networks: set[str] = set()
        self._by_net: dict[str, set[str]] = {}
        self._by_owner: dict[str, set[Key]] = {}
        self._digest: dict[str, list[int]] = {}
        self._part: dict[tuple[str, str], tuple[int, bool]] = {}
        self._left_at: dict[tuple[str, str], float] = {}  # when we learned of a leave
        self._part_digest = [0, 0]
        self._members: dict[str, _Bag] = {}
        self.alive: set[str] = {node}
        self._down_since: dict[str, float] = {}
        self._cluster_q = TransmitLimitedQueue()
        self._net_q: dict[str, TransmitLimitedQueue] = {}
        self._eager: list[tuple[str, bytes]] = []
        self._want_sync: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._sync_now: dict[str, set[str]] = {}
        self._asap: float | None = None
        self._reap_heap: list[tuple[float, Key]] = []
        self._events: list[Event] = []
        self._next_gossip = now + rng.uniform(0, config.table_gossip_interval)
        self._next_sync = now + rng.uniform(0, config.table_sync_interval)
        self._next_reap = now + 1.0
        self._now = now

    # --- engine-facing API -------------------------------------------------------------

    def join_network(self, net: str, now: float) -> None:
        """Take part in `net`: announce it and fetch its rows from a peer (one round trip)."""
        if net in self.networks:
            return
        self.networks.add(net)
        self._by_net.setdefault(net, set())
        self._digest.setdefault(net, [0, 0])
        self._announce(net, True, now)
        self._request_sync_any(net, now)

    def leave_network(self, net: str, now: float) -> None:
        """Stop taking part: tombstone our rows, announce, forget the network's rows."""
        if net not in self.networks:
            return
        for eid in [eid for eid in self._by_net[net] if self.rows[(net, eid)].owner == self.node]:
            self.withdraw(net, eid, now)
        self._announce(net, False, now)
        for eid in list(self._by_net[net]):
            self._drop((net, eid))
        self.networks.discard(net)
        self._by_net.pop(net, None)
        self._digest.pop(net, None)
        self._net_q.pop(net, None)

    def publish(self, net: str, record: EndpointRecord, now: float) -> None:
        """Create or update our endpoint row in `net`."""
        if net not in self.networks:
            raise ValueError(f"not taking part in network {net!r}")
        self.clock += 1
        self._store((net, record.endpoint_id), self.node, self.clock, record, now, eager=True)

    def withdraw(self, net: str, endpoint_id: str, now: float) -> None:
        """Delete our endpoint row (a tombstone others will reap)."""
        row = self.rows.get((net, endpoint_id))
        if row is None or row.owner != self.node or row.record is None:
            return
        self.clock += 1
        self._store((net, endpoint_id), self.node, self.clock, None, now, eager=True)

    def records(self, net: str) -> dict[str, EndpointRecord]:
        """Visible rows of `net` (live owner, not deleted)."""
        out: dict[str, EndpointRecord] = {}
        for eid in self._by_net.get(net, ()):
            row = self.rows[(net, eid)]
            if row.record is not None and row.owner in self.alive:
                out[eid] = row.record
        return out

    def participants(self, net: str) -> set[str]:
        bag = self._members.get(net)
        return bag.items() if bag else set()

    def digest(self, net: str) -> tuple[int, int]:
        """(count, XOR of row hashes) of `net`; `PARTICIPATION` names the who-is-where records."""
        count, xor = self._part_digest if net == PARTICIPATION else self._digest.get(net, (0, 0))
        return count, xor

    # --- Delegate protocol ------------------------------------------------------------------

    def broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        n = len(self.alive)
        limit_tx = self.cfg.retransmit_limit(n, self.cfg.table_retransmit_mult)
        return self._cluster_q.get_broadcasts(overhead, limit, limit_tx)

    def has_broadcasts(self) -> bool:
        return bool(self._cluster_q)

    def local_state(self, join: bool, peer: str | None) -> bytes:
        nets = sorted(self.networks)
        if peer is not None and any(k[0] == peer for k in self._part):
            nets = [n for n in nets if self._joined(peer, n)]
        events = self._events_all()
        if join:
            st = TableState(self.node, False, tuple(nets), events, self._entries(nets, self._now))
        else:
            st = TableState(self.node, False, tuple(nets), events, (), self._digests(nets))
        return codec.encode(st)

    def merge_remote(self, state: bytes, join: bool, now: float) -> None:
        self._now = now
        try:
            msg = codec.decode(state, self.cfg.max_stream_size)
        except DecodeError:
            return
        if isinstance(msg, TableState):
            self._merge_state(msg, now)
            if join:  # networks the peer could not give us: ask one of their members
                covered = set(msg.networks)
                for net in self.networks - covered:
                    self._request_sync_any(net, now)

    def notify(self, msg: TableMessage, now: float) -> bytes | None:
        self._now = now
        if isinstance(msg, TableEntry):
            if msg.network in self.networks:
                self._merge_entry(msg, now)
        elif isinstance(msg, NetworkEvent):
            self._merge_participation(msg, now)
        elif isinstance(msg, TableDigest):
            self._check_digests(msg.sender, msg.digests, now)
        elif isinstance(msg, TableState):
            self._merge_state(msg, now)
            if msg.request:
                nets = [n for n in msg.networks if n in self.networks]
                reply = TableState(
                    self.node, False, tuple(nets), self._events_all(), self._entries(nets, now)
                )
                return codec.encode(reply)
        return None

    def member_changed(self, name: str, alive: bool, now: float) -> None:
        if name == self.node or (name in self.alive) == alive:
            return
        keys = list(self._by_owner.get(name, ()))
        before = {k: self._visible(k) for k in keys}
        if alive:
            self.alive.add(name)
            self._down_since.pop(name, None)
        else:
            self.alive.discard(name)
            self._down_since[name] = now
        for k in keys:
            self._emit(k, before[k], self._visible(k))

    def tick(self, now: float, budget: int) -> DelegateOutput:
        self._now = now
        out = DelegateOutput()
        sends: dict[str, list[bytes]] = {}
        for net, enc in self._eager:
            for peer in self._peers(net, self.cfg.table_fanout):
                sends.setdefault(peer, []).append(enc)
        self._eager.clear()
        if now >= self._next_gossip:
            self._next_gossip = now + self.cfg.table_gossip_interval
            self._gossip(budget, sends)
        if now >= self._next_sync:
            self._next_sync = now + self.cfg.table_sync_interval
            self._send_digests(sends)
            self._due_syncs(now)
        for peer, nets in self._sync_now.items():
            nets.discard(PARTICIPATION)
            st = TableState(
                self.node, True, tuple(sorted(nets)), self._events_all(), self._entries(nets, now)
            )
            out.streams.append((peer, codec.encode(st)))
        self._sync_now.clear()
        if now >= self._next_reap:
            self._next_reap = now + 1.0
            self._reap(now)
        out.sends = list(sends.items())
        self._asap = None
        return out

    def next_deadline(self) -> float | None:
        t = min(self._next_sync, self._next_reap)
        if any(self._net_q.values()):
            t = min(t, self._next_gossip)
        if self._asap is not None:
            t = min(t, self._asap)
        return t

    def take_events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    # --- merging ----------------------------------------------------------------------------

    def _merge_state(self, st: TableState, now: float) -> None:
        for ev in st.events:
            self._merge_participation(ev, now)
        for e in st.entries:
            if e.network in self.networks:
                self._merge_entry(e, now)
        if st.digests:
            self._check_digests(st.sender, st.digests, now)

    def _merge_entry(self, e: TableEntry, now: float) -> None:
        self.clock = max(self.clock, e.clock)
        key = (e.network, e.endpoint_id)
        cur = self.rows.get(key)
        if e.owner == self.node:
            if cur is not None and cur.owner == self.node and e.clock <= cur.clock:
                return
            # Someone holds a version of our row we did not write last: outbid it.
            self.clock += 1
            record = cur.record if cur is not None and cur.owner == self.node else None
            self._store(key, self.node, self.clock, record, now, eager=True)
            return
        if cur is not None and (e.clock, e.record is None, e.owner) <= (
            cur.clock,
            cur.record is None,
            cur.owner,
        ):
            return
        if e.record is None and e.ttl <= 0 and cur is None:
            return  # an expired tombstone for a row we never had
        since = self._down_since.get(e.owner)
        if since is not None and now - since >= self.cfg.owner_reap:
            return  # its owner is gone for good; don't resurrect reaped rows
        if since is None and e.owner != self.node and e.owner not in self.alive:
            # an owner we never saw alive (it died before we joined): its rows are hidden
            # like any dead owner's, and reaped on the same clock, or they never would be
            self._down_since[e.owner] = now
        self._store(key, e.owner, e.clock, e.record, now, ttl=e.ttl)

    def _merge_participation(self, ev: NetworkEvent, now: float) -> None:
        self.clock = max(self.clock, ev.clock)
        pk = (ev.node, ev.network)
        cur = self._part.get(pk)
        if cur is not None and cur[0] >= ev.clock:
            return
        if ev.node == self.node:
            # Our own stale membership record: re-assert the truth with a newer clock.
            self._announce(ev.network, ev.network in self.networks, now)
            return
        self._set_part(ev.node, ev.network, ev.clock, ev.joined, now)
        bag = self._members.setdefault(ev.network, _Bag())
        if ev.joined:
            bag.add(ev.node)
        else:
            bag.discard(ev.node)
            if ev.network in self.networks:  # its rows there are void, at their own clocks
                for eid in list(self._by_net[ev.network]):
                    row = self.rows[(ev.network, eid)]
                    if row.owner == ev.node and row.record is not None:
                        self._store((ev.network, eid), row.owner, row.clock, None, now)
        self._cluster_q.queue(codec.encode(ev), pk)

    def _check_digests(self, sender: str, digests: Iterable[NetDigest], now: float) -> None:
        for d in digests:
            if (
                d.network not in self.networks and d.network != PARTICIPATION
            ) or sender == self.node:
                continue
            if self.digest(d.network) != (d.count, d.digest):
                # Give in-flight gossip a moment before paying for a sync.
                grace = now + self.cfg.table_sync_interval / 2
                self._want_sync.setdefault((sender, d.network), (grace, d.count, d.digest))

    def _due_syncs(self, now: float) -> None:
        for (peer, net), (when, count, dig) in list(self._want_sync.items()):
            if when > now:
                continue
            del self._want_sync[(peer, net)]
            known = net in self.networks or net == PARTICIPATION
            if known and self.digest(net) != (count, dig) and peer in self.alive:
                self._sync_now.setdefault(peer, set()).add(net)
                self._asap = now

    def _request_sync_any(self, net: str, now: float) -> None:
        peers = self._peers(net, 1)
        if peers:
            self._sync_now.setdefault(peers[0], set()).add(net)
            self._asap = now

    # --- storage ------------------------------------------------------------------------------

    def _store(
        self,
        key: Key,
        owner: str,
        clock: int,
        record: EndpointRecord | None,
        now: float,
        *,
        ttl: float | None = None,
        eager: bool = False,
    ) -> None:
        net, eid = key
        was = self._visible(key)
        old = self.rows.get(key)
        if old is not None:
            self._unindex(key, old)
        reap_at = math.inf
        if record is None:
            reap_at = now + (self.cfg.tombstone_ttl if ttl is None else max(ttl, 0.0))
            heapq.heappush(self._reap_heap, (reap_at, key))
        row = Row(owner, clock, record, reap_at, _row_hash(net, eid, owner, clock, record is None))
        self.rows[key] = row
        self._by_net[net].add(eid)
        self._by_owner.setdefault(owner, set()).add(key)
        d = self._digest[net]
        d[0] += 1
        d[1] ^= row.digest
        self._emit(key, was, self._visible(key))
        enc = codec.encode(self._entry(key, row, now))
        self._net_q.setdefault(net, TransmitLimitedQueue()).queue(enc, key)
        if eager:
            self._eager.append((net, enc))
            self._asap = now

    def _drop(self, key: Key) -> None:
        row = self.rows.get(key)
        if row is None:
            return
        was = self._visible(key)
        self._unindex(key, row)
        del self.rows[key]
        self._emit(key, was, None)

    def _unindex(self, key: Key, row: Row) -> None:
        net, eid = key
        d = self._digest[net]
        d[0] -= 1
        d[1] ^= row.digest
        self._by_net[net].discard(eid)
        owned = self._by_owner.get(row.owner)
        if owned is not None:
            owned.discard(key)

    def _reap(self, now: float) -> None:
        while self._reap_heap and self._reap_heap[0][0] <= now:
            when, key = heapq.heappop(self._reap_heap)
            row = self.rows.get(key)
            if row is not None and row.record is None and row.reap_at == when:
                self._drop(key)
        for owner, since in list(self._down_since.items()):
            if now - since >= self.cfg.owner_reap:
                for key in list(self._by_owner.pop(owner, ())):
                    self._drop(key)
                for pk in [pk for pk in self._part if pk[0] == owner]:
                    self._drop_part(pk)  # its memberships go with it
            if now - since >= 2 * self.cfg.owner_reap:
                del self._down_since[owner]
        for pk, left in list(self._left_at.items()):
            if now - left >= self.cfg.participation_reap:
                self._drop_part(pk)

    # --- helpers ---------------------------------------------------------------------------------

    def _visible(self, key: Key) -> EndpointRecord | None:
        row = self.rows.get(key)
        if row is None or row.record is None or row.owner not in self.alive:
            return None
        return row.record

    def _emit(self, key: Key, was: EndpointRecord | None, now_: EndpointRecord | None) -> None:
        if was == now_:
            return
        row = self.rows.get(key)
        owner = row.owner if row is not None else ""
        if now_ is None:
            assert was is not None
            self._events.append(EndpointEvent(Change.REMOVED, key[0], key[1], owner, was))
        else:
            change = Change.ADDED if was is None else Change.UPDATED
            self._events.append(EndpointEvent(change, key[0], key[1], owner, now_))

    def _announce(self, net: str, joined: bool, now: float) -> None:
        self.clock += 1
        ev = NetworkEvent(self.node, net, self.clock, joined)
        self._set_part(self.node, net, self.clock, joined, now)
        self._cluster_q.queue(codec.encode(ev), (self.node, net))
        self._asap = now

    def _joined(self, node: str, net: str) -> bool:
        p = self._part.get((node, net))
        return p is not None and p[1]

    def _peers(self, net: str, k: int) -> list[str]:
        bag = self._members.get(net)
        if bag is None:
            return []
        return bag.sample(self.rng, k, lambda n: n != self.node and n in self.alive)

    def _peers_any(self, k: int) -> list[str]:
        """Random live peers of one of our networks (they hold the participation records too)."""
        if not self.networks:
            return []
        return self._peers(self.rng.choice(sorted(self.networks)), k)

    def _entry(self, key: Key, row: Row, now: float) -> TableEntry:
        ttl = max(row.reap_at - now, 0.0) if row.record is None else 0.0
        return TableEntry(key[0], key[1], row.owner, row.clock, row.record, ttl)

    def _entries(self, nets: Iterable[str], now: float) -> tuple[TableEntry, ...]:
        return tuple(
            self._entry((net, eid), self.rows[(net, eid)], now)
            for net in nets
            for eid in sorted(self._by_net.get(net, ()))
        )

    def _events_all(self) -> tuple[NetworkEvent, ...]:
        return tuple(NetworkEvent(n, net, c, j) for (n, net), (c, j) in self._part.items())

    def _set_part(self, node: str, net: str, clock: int, joined: bool, now: float) -> None:
        self._drop_part((node, net))
        self._part[(node, net)] = (clock, joined)
        if not joined:
            self._left_at[(node, net)] = now
        d = self._part_digest
        d[0] += 1
        d[1] ^= _row_hash(PARTICIPATION, net, node, clock, not joined)

    def _drop_part(self, pk: tuple[str, str]) -> None:
        old = self._part.pop(pk, None)
        self._left_at.pop(pk, None)
        if old is not None:
            d = self._part_digest
            d[0] -= 1
            d[1] ^= _row_hash(PARTICIPATION, pk[1], pk[0], old[0], not old[1])

    def _digests(self, nets: Iterable[str]) -> tuple[NetDigest, ...]:
        return tuple(NetDigest(n, *self.digest(n)) for n in nets)

    def _gossip(self, budget: int, sends: dict[str, list[bytes]]) -> None:
        for net, q in self._net_q.items():
            if not q:
                continue
            n = len(self._members.get(net, ()))
            limit = self.cfg.retransmit_limit(n, self.cfg.table_retransmit_mult)
            for peer in self._peers(net, self.cfg.table_fanout):
                room = budget - sum(len(p) + _PART for p in sends.get(peer, ()))
                parts = q.get_broadcasts(_PART, room, limit)
                if not parts:
                    break
                sends.setdefault(peer, []).extend(parts)

    def _send_digests(self, sends: dict[str, list[bytes]]) -> None:
        by_peer: dict[str, list[NetDigest]] = {}
        for net in sorted(self.networks):
            for peer in self._peers(net, 1):
                by_peer.setdefault(peer, []).append(NetDigest(net, *self.digest(net)))
        for peer in self._peers_any(1):  # who-is-where records have a digest too
            by_peer.setdefault(peer, []).append(NetDigest(PARTICIPATION, *self._part_digest))
        for peer, digests in by_peer.items():
            for i in range(0, len(digests), 40):  # ~30 bytes each: stays under a packet
                msg = TableDigest(self.node, tuple(digests[i : i + 40]))
                sends.setdefault(peer, []).append(codec.encode(msg))
