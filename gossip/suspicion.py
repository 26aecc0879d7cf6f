"""Lifeguard suspicion timer as a value (memberlist `suspicion.go`, without timers).

The timer starts at `max` and shrinks toward `min` as independent peers
confirm the suspicion; the accuser itself never counts. The caller asks for
`deadline` and checks it against `now`; nothing here reads a clock.
"""

from __future__ import annotations

import math


def remaining_suspicion_time(n: int, k: int, elapsed: float, lo: float, hi: float) -> float:
    """Seconds left after `n` of `k` wanted confirmations, `elapsed` s since the start.

    Port of memberlist's remainingSuspicionTime (floors to whole milliseconds;
    may be negative: the timer is overdue).
    """
    frac = math.log(n + 1.0) / math.log(k + 1.0) if k > 0 else 1.0
    raw = hi - frac * (hi - lo)
    timeout = math.floor(1000.0 * raw) / 1000.0
    timeout = max(timeout, lo)
    return timeout - elapsed


class Suspicion:
    """One pending suspicion of a member: who accused, who confirmed, when it expires."""

    __slots__ = ("accuser", "confirmations", "deadline", "hi", "k", "lo", "n", "started")

    def __init__(self, accuser: str, k: int, lo: float, hi: float, started: float) -> None:
        self.accuser = accuser
        self.k = k
        self.lo = lo
        self.hi = hi
        self.n = 0
        self.started = started
        self.confirmations: set[str] = {accuser}
        self.deadline = started + (hi if k >= 1 else lo)

    def confirm(self, frm: str, now: float) -> bool:
        """Count `frm` once; True if this was new information (worth re-gossiping)."""
        if self.n >= self.k or frm in self.confirmations:
            return False
        self.confirmations.add(frm)
        self.n += 1
        elapsed = now - self.started
        self.deadline = now + remaining_suspicion_time(self.n, self.k, elapsed, self.lo, self.hi)
        return True
