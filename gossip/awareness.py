"""Lifeguard local health awareness (memberlist `awareness.go`).

A node that keeps missing acks *and* nacks is more likely the sick one; the
score stretches its own probe deadlines so it accuses others less.
"""

from __future__ import annotations


class Awareness:
    """Health score in `0 .. max - 1`; 0 is healthy."""

    __slots__ = ("max", "score")

    def __init__(self, max_score: int) -> None:
        self.max = max_score
        self.score = 0

    def apply(self, delta: int) -> None:
        """Add `delta`, clamped to the valid range."""
        self.score = min(max(self.score + delta, 0), self.max - 1)

    def scale(self, timeout: float) -> float:
        """Timeout stretched by (score + 1)."""
        return timeout * (self.score + 1)
