"""How often a member may have its certificate re-signed.

Every renewal starts a CA child process (≈ 80 ms of a CPU). A node renews once per role
change and once per certificate lifetime, so a few in a row is the most a healthy node
asks for; a member that asks in a loop (a bug or a stolen certificate) must not keep the
managers' CPUs busy. Per node: one renewal at a time, and a token bucket (a small burst,
then one per `refill_s`). Sans-I/O: the caller passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BURST = 3
REFILL_S = 10.0


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RenewalLimiter:
    burst: int = BURST
    refill_s: float = REFILL_S
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _busy: set[str] = field(default_factory=set)

    def begin(self, node_id: str, now: float) -> str | None:
        """None if this node may renew now (then `end` must follow), else why not."""
        if node_id in self._busy:
            return f"a certificate renewal for node {node_id} is already in progress"
        b = self._buckets.get(node_id)
        if b is None:
            b = self._buckets[node_id] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.at) / self.refill_s)
        b.at = now
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) * self.refill_s
            return f"too many certificate renewals for node {node_id}; retry in {wait:.1f} s"
        b.tokens -= 1.0
        self._busy.add(node_id)
        return None

    def end(self, node_id: str) -> None:
        self._busy.discard(node_id)

    def forget(self, keep: set[str]) -> None:
        """Drop the buckets of nodes no longer in the swarm (full ones carry no state)."""
        for node_id in [n for n in self._buckets if n not in keep]:
            del self._buckets[node_id]
