"""The core's view of the log: stable storage plus the unstable tail.

Tracks `committed` (known durable on a quorum) and `applied` (handed to the
application and acknowledged by `advance`). Mirrors etcd-io/raft's log.go.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import Compacted, InvalidMessage, Unavailable
from .log import Log, limit_size
from .messages import Entry, EntryKind, Snapshot
from .unstable import Unstable


class RaftLog:
    def __init__(self, storage: Log) -> None:
        self.storage = storage
        first = storage.first_index()
        self.unstable = Unstable(storage.last_index() + 1)
        self.committed = first - 1
        self.applied = first - 1
        self.applying = first - 1  # last index handed out in a Ready, not yet advanced

    # -- bounds and terms ----------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, index: int) -> int | None:
        """Term at `index`, or None when compacted away or beyond the end."""
        if index < self.first_index() - 1 or index > self.last_index():
            return None
        t = self.unstable.maybe_term(index)
        if t is not None:
            return t
        try:
            return self.storage.term(index)
        except (Compacted, Unavailable):
            return None

    def last_term(self) -> int:
        return self.term(self.last_index()) or 0

    def match_term(self, index: int, term: int) -> bool:
        t = self.term(index)
        return t is not None and t == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up to date as ours?"""
        lt = self.last_term()
        return last_term > lt or (last_term == lt and last_index >= self.last_index())

    def stable_last_index(self) -> int:
        """Last index known to be durable and part of this log."""
        if self.unstable.snapshot is not None:
            return 0
        return min(self.storage.last_index(), self.unstable.offset - 1)

    # -- appending -------------------------------------------------------------

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """First index whose term differs from ours (or is new), 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, t) with i <= index and our term t <= `term`: a probe hint."""
        while True:
            ours = self.term(index)
            if ours is None:
                return index, 0
            if ours <= term:
                return index, ours
            index -= 1

    def maybe_append(
        self, index: int, log_term: int, commit: int, ents: Sequence[Entry]
    ) -> int | None:
        """Follower side of AppendEntries: new last matching index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                # Never overwrite a committed entry, whoever asks; nothing changed yet.
                raise InvalidMessage(f"entry {ci} conflicts with committed {self.committed}")
            self.append(ents[ci - index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def append(self, ents: Sequence[Entry]) -> int:
        if ents:
            if ents[0].index - 1 < self.committed:
                raise AssertionError(f"append at {ents[0].index} below commit {self.committed}")
            self.unstable.truncate_and_append(ents)
        return self.last_index()

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last {self.last_index()}")
            self.committed = index

    # -- reading ---------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi); raises Compacted when lo is gone."""
        if lo < self.first_index():
            raise Compacted(f"lo {lo} < first {self.first_index()}")
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return []
        off = self.unstable.offset
        out: list[Entry] = []
        if lo < off:
            out = self.storage.entries(lo, min(hi, off), max_bytes)
            if len(out) < min(hi, off) - lo:
                return out  # size limit reached in storage
        if hi > off:
            out = out + self.unstable.slice(max(lo, off), hi)
        return limit_size(out, max_bytes)

    def entries_from(self, lo: int, max_bytes: int | None = None) -> list[Entry]:
        return self.slice(lo, self.last_index() + 1, max_bytes)

    def has_unapplied_conf_change(self) -> bool:
        lo = max(self.applied + 1, self.first_index())
        if lo > self.committed:
            return False
        try:
            ents = self.slice(lo, self.committed + 1)
        except Compacted:
            return False
        return any(e.kind == EntryKind.CONF_CHANGE for e in ents)

    # -- ready plumbing ----------------------------------------------------------

    def next_committed(self, max_bytes: int | None) -> list[Entry]:
        """Committed entries to hand out for applying (none while a snapshot is pending)."""
        if self.unstable.snapshot is not None:
            return []
        lo = max(self.applying + 1, self.first_index())
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, max_bytes)

    def has_next_committed(self) -> bool:
        if self.unstable.snapshot is not None:
            return False
        return self.committed > max(self.applying, self.first_index() - 1)

    def snapshot(self) -> Snapshot:
        return self.unstable.snapshot or self.storage.snapshot()

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.meta.index
        self.unstable.restore(snap)
