"""SimNet: simulated time and a faulty network, all randomness from one seed.

A heap of (time, seq, event); `run_until` pops events in order, so a whole
cluster with its clients runs in one process, replayably. Links have a base
latency plus an exponential tail (which reorders), and can drop, duplicate or
be cut by a partition. Every delivery feeds a trace hash: one seed, one hash.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

Addr = Hashable


@dataclass
class LinkProfile:
    """Latency in ms: base (per link, drawn once) + exponential(mean jitter)."""

    base_ms: tuple[float, float] = (0.2, 2.0)
    jitter_ms: float = 1.0
    drop: float = 0.0
    dup: float = 0.0


class SimNet:
    def __init__(self, seed: int, profile: LinkProfile | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.profile = profile or LinkProfile()
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._hash = hashlib.sha256()
        self._handlers: dict[Addr, Callable[[Addr, Any], None]] = {}
        self._base: dict[tuple[Addr, Addr], float] = {}
        self._groups: list[frozenset[Addr]] | None = None
        self._cut: set[frozenset[Addr]] = set()
        self.delivered = 0
        self.dropped = 0
        self.events = 0
        self.trace_enabled = True

    # -- time ---------------------------------------------------------------

    def at(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, fn, args))

    def run_until(self, t: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, fn, args = heapq.heappop(heap)
            self.now = when
            self.events += 1
            fn(*args)
        self.now = max(self.now, t)

    def trace(self, *parts: object) -> None:
        if self.trace_enabled:
            line = f"{self.now:.6f}|" + "|".join(map(str, parts)) + "\n"
            self._hash.update(line.encode())

    def trace_hash(self) -> str:
        return self._hash.hexdigest()

    # -- endpoints and links -------------------------------------------------

    def register(self, addr: Addr, handler: Callable[[Addr, Any], None]) -> None:
        self._handlers[addr] = handler

    def unregister(self, addr: Addr) -> None:
        self._handlers.pop(addr, None)

    def latency(self, a: Addr, b: Addr) -> float:
        key = (a, b)
        base = self._base.get(key)
        if base is None:
            lo, hi = self.profile.base_ms
            base = self._base[key] = self.rng.uniform(lo, hi)
        j = self.profile.jitter_ms
        return base + (self.rng.expovariate(1.0 / j) if j > 0 else 0.0)

    def connected(self, a: Addr, b: Addr) -> bool:
        if frozenset((a, b)) in self._cut:
            return False
        if self._groups is None:
            return True
        return any(a in g and b in g for g in self._groups)

    def send(self, frm: Addr, to: Addr, msg: Any) -> None:
        p = self.profile
        if p.drop and self.rng.random() < p.drop:
            self.dropped += 1
            return
        copies = 2 if p.dup and self.rng.random() < p.dup else 1
        for _ in range(copies):
            self.at(self.latency(frm, to), self._deliver, frm, to, msg)

    def _deliver(self, frm: Addr, to: Addr, msg: Any) -> None:
        handler = self._handlers.get(to)
        if handler is None or not self.connected(frm, to):
            self.dropped += 1
            return
        self.delivered += 1
        self.trace("d", frm, to, msg)
        handler(frm, msg)

    # -- faults --------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[Addr]]) -> None:
        """Only endpoints in the same group can talk (unlisted ones: nobody)."""
        self._groups = [frozenset(g) for g in groups]
        self.trace("partition", sorted(sorted(map(str, g)) for g in self._groups))

    def cut(self, a: Addr, b: Addr) -> None:
        self._cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self._groups = None
        self._cut.clear()
        self.trace("heal")
