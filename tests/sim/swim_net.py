"""SimNet: many `SwimCore`s (+ `Tables`) in one process, in simulated time, seeded.

A heap of (time, seq, event); all randomness from one `random.Random(seed)`.
Links have latency + jitter and loss (global or per link); partitions cut
groups apart; crash/restart replace a node (a restart keeps only what the
caller re-creates); a slow node processes every message and timer late but
in order, like a CPU-starved process. Streams (push-pull, table sync) are
reliable request/replies that fail across partitions or to crashed nodes.
The trace hash covers every processed datagram and event, so a seed replays
exactly.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from hashlib import blake2b

from gossip import codec
from gossip.config import GossipConfig
from gossip.crypto import Channel, Keyring
from gossip.events import Event
from gossip.messages import Addr, NetworkEvent, NodeState, PushPull, State, TableState
from gossip.swim import Output, SwimCore
from gossip.tables import Tables

Listener = Callable[[float, str, Event], None]

UDP, STREAM_REQ, STREAM_REPLY, STREAM_FAIL, TIMER = 0, 1, 2, 3, 4
STREAM_TIMEOUT = 0.5


@dataclass(slots=True)
class SimNode:
    name: str
    addr: Addr
    core: SwimCore
    tables: Tables
    up: bool = True
    generation: int = 0
    timer_at: float = math.inf
    busy_until: float = 0.0
    events: list[Event] = field(default_factory=list)


class SimNet:
    """The simulated network; see the module docstring."""

    def __init__(
        self,
        seed: int,
        *,
        config: GossipConfig | None = None,
        latency: float = 0.0005,
        jitter: float = 0.0005,
        loss: float = 0.0,
        encrypt: bool = True,
        keep_events: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.cfg = config or GossipConfig.lan()
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.encrypt = encrypt
        self.keep_events = keep_events
        self.keyring = Keyring([bytes(self.rng.getrandbits(8) for _ in range(32))])
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self.by_addr: dict[Addr, str] = {}
        self.link_loss: dict[tuple[str, str], float] = {}
        self.groups: dict[str, int] = {}
        self.slow: dict[str, float] = {}
        self.listeners: list[Listener] = []
        self.bytes_sent: Counter[str] = Counter()
        self.delivered = 0
        self._heap: list[tuple[float, int, int, str, object]] = []
        self._seq = 0
        self._trace = blake2b(digest_size=16)
        self._epochs: Counter[str] = Counter()

    # --- building ------------------------------------------------------------------

    def add_node(
        self,
        name: str,
        *,
        networks: Iterable[str] = (),
        seeds: Iterable[str] = (),
        setup: Callable[[Tables, float], None] | None = None,
    ) -> SimNode:
        """Start a node; `setup` runs on its tables before it joins through `seeds`."""
        idx = len(self.by_addr) if name not in self.nodes else None
        addr = (
            self.nodes[name].addr
            if idx is None
            else (f"10.{idx >> 16 & 255}.{idx >> 8 & 255}.{idx & 255}", 7946)
        )
        rng = random.Random(self.rng.getrandbits(64))
        self._epochs[name] += 1
        channel = None
        if self.encrypt:
            channel = Channel(self.keyring, name, self._epochs[name], nonce_source=rng.randbytes)
        tables = Tables(name, self.cfg, rng, self.now)
        core = SwimCore(name, addr, self.cfg, rng, self.now, channel=channel, delegate=tables)
        old = self.nodes.get(name)
        node = SimNode(name, addr, core, tables, generation=(old.generation + 1 if old else 0))
        self.nodes[name] = node
        self.by_addr[addr] = name
        for net in networks:
            tables.join_network(net, self.now)
        if setup is not None:
            setup(tables, self.now)
        seed_addrs = [self.nodes[s].addr for s in seeds if s != name]
        self._apply(node, core.join(seed_addrs, self.now) if seed_addrs else Output())
        return node

    def bootstrap(self, n: int, *, networks: Iterable[str] = (), prefix: str = "n") -> list[str]:
        """`n` nodes that already know each other (as after a finished join), quiet queues.

        Joining 1000 nodes one push-pull at a time costs O(n^2) messages; a
        converged start lets the large runs measure steady-state behaviour.
        """
        names = [f"{prefix}{i}" for i in range(n)]
        nets = tuple(networks)
        for name in names:
            self.add_node(name, networks=nets)
        states = tuple(
            NodeState(nd.name, nd.addr, 0, State.ALIVE) for nd in (self.nodes[x] for x in names)
        )
        pp = PushPull("bootstrap", False, True, states)
        events = tuple(NetworkEvent(x, net, 1, True) for x in names for net in nets)
        blob = codec.encode(TableState("bootstrap", False, nets, events, ()))
        for name in names:
            node = self.nodes[name]
            node.core.stream_reply(pp, ("0.0.0.0", 0), self.now)
            node.tables.merge_remote(blob, False, self.now)
            node.core.queue.clear()
            node.tables._cluster_q.clear()  # a converged cluster has nothing left to say
            node.tables._sync_now.clear()
            node.events.clear()
            self._reschedule(node)
        return names

    # --- faults ----------------------------------------------------------------------

    def crash(self, name: str) -> None:
        node = self.nodes[name]
        node.up = False
        node.generation += 1

    def restart(self, name: str, **kw: object) -> SimNode:
        """A fresh process for `name` at the same address (kwargs as for `add_node`)."""
        self.crash(name)
        return self.add_node(name, **kw)  # type: ignore[arg-type]

    def partition(self, *groups: Iterable[str]) -> None:
        self.groups = {n: i for i, g in enumerate(groups) for n in g}

    def heal(self) -> None:
        self.groups = {}

    def drop(self, a: str, b: str, p: float) -> None:
        """Loss probability on the a -> b link."""
        self.link_loss[(a, b)] = p

    def make_slow(self, name: str, max_lag: float) -> None:
        """Every message/timer of `name` is processed up to `max_lag` late, in order."""
        self.slow[name] = max_lag

    # --- running -----------------------------------------------------------------------

    def run_until(self, t: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, kind, dst, payload = heapq.heappop(heap)
            self.now = when
            self._dispatch(kind, dst, payload)
        self.now = max(self.now, t)

    def run_for(self, d: float) -> None:
        self.run_until(self.now + d)

    def trace_hash(self) -> str:
        return self._trace.hexdigest()

    def up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]

    # --- internals -------------------------------------------------------------------------

    def _push(self, when: float, kind: int, dst: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, dst, payload))

    def _cut(self, a: str, b: str) -> bool:
        g = self.groups
        return bool(g) and g.get(a, -1) != g.get(b, -1)

    def _dispatch(self, kind: int, dst: str, payload: object) -> None:
        node = self.nodes.get(dst)
        if kind == TIMER:
            gen, at, deferred = payload  # type: ignore[misc]
            if node is None or not node.up or gen != node.generation or at != node.timer_at:
                return
            if not deferred and dst in self.slow:
                self._push(self._lag(node), TIMER, dst, (gen, at, True))
                return
            node.timer_at = math.inf
            self._trace.update(b"T%s%.9f" % (dst.encode(), self.now))
            self._apply(node, node.core.tick(self.now))
            return
        gen, deferred, body = payload  # type: ignore[misc]
        if node is None or not node.up or (gen is not None and gen != node.generation):
            if kind == STREAM_REQ:
                addr = node.addr if node is not None else None
                self._push(self.now + STREAM_TIMEOUT, STREAM_FAIL, body[0], (None, True, addr))
            return
        if not deferred and dst in self.slow:
            self._push(self._lag(node), kind, dst, (gen, True, body))
            return
        if kind == UDP:
            src_addr, data = body
            self.delivered += 1
            self._trace.update(b"U%s%.9f" % (dst.encode(), self.now) + data)
            self._apply(node, node.core.receive(data, src_addr, self.now))
        elif kind == STREAM_REQ:
            src, src_addr, data = body
            self._trace.update(b"S%s%.9f" % (dst.encode(), self.now) + data)
            reply, out = node.core.handle_stream(data, src_addr, self.now)
            self._apply(node, out)
            if reply is not None:
                self.bytes_sent[dst] += len(reply)
                self._send_stream(STREAM_REPLY, dst, src, (node.addr, reply))
        elif kind == STREAM_REPLY:
            src_addr, data = body
            self._trace.update(b"R%s%.9f" % (dst.encode(), self.now) + data)
            self._apply(node, node.core.stream_reply(data, src_addr, self.now))
        elif kind == STREAM_FAIL:
            self._apply(node, node.core.stream_failed(body, self.now))

    def _lag(self, node: SimNode) -> float:
        t = max(self.now + self.rng.uniform(0, self.slow[node.name]), node.busy_until)
        node.busy_until = t
        return t

    def _delay(self) -> float:
        return self.latency + self.rng.random() * self.jitter

    def _send_stream(self, kind: int, src: str, dst: str, body: object) -> None:
        if self._cut(src, dst):
            if kind == STREAM_REQ:
                addr = self.nodes[dst].addr
                self._push(self.now + STREAM_TIMEOUT, STREAM_FAIL, src, (None, True, addr))
            return
        gen = self.nodes[dst].generation if kind == STREAM_REPLY else None
        self._push(self.now + 2 * self._delay(), kind, dst, (gen, False, body))

    def _apply(self, node: SimNode, out: Output) -> None:
        name = node.name
        for addr, data in out.sends:
            self.bytes_sent[name] += len(data)
            dst = self.by_addr.get(addr)
            if dst is None or self._cut(name, dst):
                continue
            p = self.link_loss.get((name, dst), self.loss)
            if p and self.rng.random() < p:
                continue
            self._push(self.now + self._delay(), UDP, dst, (None, False, (node.addr, data)))
        for addr, data in out.streams:
            self.bytes_sent[name] += len(data)
            dst = self.by_addr.get(addr)
            if dst is None:
                self._push(self.now + STREAM_TIMEOUT, STREAM_FAIL, name, (None, True, addr))
                continue
            self._send_stream(STREAM_REQ, name, dst, (name, node.addr, data))
        for ev in out.events:
            self._trace.update(repr(ev).encode())
            if self.keep_events:
                node.events.append(ev)
            for fn in self.listeners:
                fn(self.now, name, ev)
        self._reschedule(node)

    def _reschedule(self, node: SimNode) -> None:
        t = node.core.next_deadline()
        if t != node.timer_at and t < math.inf:
            node.timer_at = t
            self._push(max(t, self.now), TIMER, node.name, (node.generation, t, False))
