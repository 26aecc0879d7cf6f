"""What the leader knows about each follower, and quorum arithmetic.

A follower is probed (one append in flight until it answers), replicated to
(optimistic pipelining bounded by `max_inflight`), or waiting for a snapshot.
Follows etcd-io/raft's tracker/progress.go.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable

from .messages import ConfState


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "inflight",
        "match",
        "max_inflight",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "snapshot_elapsed",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.paused = False  # probe: an append is in flight; replicate: window full
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0
        self.recent_active = False
        self.max_inflight = max_inflight
        self.inflight: deque[int] = deque()  # last index of each append in flight

    def _reset(self, state: ProgressState) -> None:
        self.paused = False
        self.pending_snapshot = 0
        self.snapshot_elapsed = 0
        self.state = state
        self.inflight.clear()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def is_paused(self) -> bool:
        """A heartbeat answer unpauses once, so lost appends get re-probed."""
        return self.state == ProgressState.SNAPSHOT or self.paused

    def window_full(self) -> bool:
        return len(self.inflight) >= self.max_inflight

    def sent_entries(self, last: int | None) -> None:
        """An append ending at `last` (None: empty) went out."""
        if self.state == ProgressState.REPLICATE:
            if last is not None:
                self.next = last + 1
                self.inflight.append(last)
            self.paused = self.window_full()
        else:
            self.paused = True

    def maybe_update(self, n: int) -> bool:
        """Follower acked up to n; False if stale."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.paused = False
        self.next = max(self.next, n + 1)
        return updated

    def free_le(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        self.paused = self.window_full()

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Follower rejected an append at `rejected`; back off to the hint."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.paused = False
        return True


def majority(n: int) -> int:
    return n // 2 + 1


class Tracker:
    """Membership, per-node progress and election votes."""

    def __init__(self, max_inflight: int) -> None:
        self.voters: frozenset[int] = frozenset()
        self.learners: frozenset[int] = frozenset()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight

    def conf_state(self) -> ConfState:
        return ConfState(self.voters, self.learners)

    def members(self) -> list[int]:
        return sorted(self.voters | self.learners)

    def set_conf(self, cs: ConfState, next_index: int) -> None:
        """Adopt a membership; keeps progress of nodes that stay."""
        self.voters, self.learners = cs.voters, cs.learners
        members = cs.voters | cs.learners
        for nid in list(self.progress):
            if nid not in members:
                del self.progress[nid]
        for nid in sorted(members):
            if nid not in self.progress:
                pr = Progress(next_index, self.max_inflight)
                pr.recent_active = True  # a new member gets a grace period
                self.progress[nid] = pr

    def committed(self) -> int:
        """Highest index durable on a majority of voters."""
        if not self.voters:
            return 0
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        return matches[majority(len(matches)) - 1]

    def quorum_active(self, self_id: int) -> bool:
        active = sum(1 for v in self.voters if v == self_id or self.progress[v].recent_active)
        return active >= majority(len(self.voters))

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, nid: int, granted: bool) -> None:
        self.votes.setdefault(nid, granted)

    def tally(self) -> str:
        """'won', 'lost' or 'pending' given the votes so far."""
        need = majority(len(self.voters))
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        if granted >= need:
            return "won"
        if rejected > len(self.voters) - need:
            return "lost"
        return "pending"

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def has_quorum(self, ids: Iterable[int]) -> bool:
        return len(self.voters & set(ids)) >= majority(len(self.voters))
