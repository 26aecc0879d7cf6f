"""The durable log: a read-only protocol for the core, a writer side for the shell.

As in etcd-io/raft's storage.go, the core only ever reads stable state; the
shell writes what a `Ready` tells it to (entries, hard state, snapshot) and
decides when to snapshot and compact. `MemoryLog` is the simulator's disk and
the reference for the SQLite log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .errors import Compacted, SnapshotOutOfDate, Unavailable
from .messages import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta


class Log(Protocol):
    """What the core reads. Index `first_index() - 1` is the snapshot's."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]: ...

    def term(self, index: int) -> int: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


class LogWriter(Log, Protocol):
    """What the shell (and recovery tools) write."""

    def append(self, entries: Sequence[Entry]) -> None: ...

    def set_hard_state(self, hs: HardState) -> None: ...

    def apply_snapshot(self, snap: Snapshot) -> None: ...


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """Longest prefix within max_bytes, but never empty (progress beats limits)."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for i, e in enumerate(entries):
        total += e.size()
        if total > max_bytes and i > 0:
            return entries[:i]
    return entries


class MemoryLog:
    """In-memory log; `_ents[0]` is a dummy entry at the snapshot's (index, term)."""

    def __init__(self) -> None:
        self._hs = HardState()
        self._snap = Snapshot()
        self._ents: list[Entry] = [Entry(0, 0, EntryKind.NOOP)]

    # -- reader side -------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hs, self._snap.meta.conf_state

    @property
    def hard_state(self) -> HardState:
        return self._hs

    def _offset(self) -> int:
        return self._ents[0].index

    def first_index(self) -> int:
        return self._offset() + 1

    def last_index(self) -> int:
        return self._offset() + len(self._ents) - 1

    def term(self, index: int) -> int:
        off = self._offset()
        if index < off:
            raise Compacted(f"index {index} < {off}")
        if index - off >= len(self._ents):
            raise Unavailable(f"index {index} > {self.last_index()}")
        return self._ents[index - off].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi)."""
        off = self._offset()
        if lo <= off:
            raise Compacted(f"lo {lo} <= {off}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"hi {hi} > {self.last_index() + 1}")
        return limit_size(self._ents[lo - off : hi - off], max_bytes)

    def snapshot(self) -> Snapshot:
        return self._snap

    # -- writer side -------------------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self._hs = hs

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, replacing any suffix that conflicts with the new entries."""
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return  # all compacted already
        ents = list(entries)
        if ents[0].index < first:
            ents = ents[first - ents[0].index :]
        pos = ents[0].index - self._offset()
        if pos > len(self._ents):
            raise Unavailable(f"gap: appending {ents[0].index} after {self.last_index()}")
        self._ents[pos:] = ents

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with `snap` (a follower installing one)."""
        if snap.meta.index <= self._snap.meta.index:
            raise SnapshotOutOfDate(f"{snap.meta.index} <= {self._snap.meta.index}")
        self._snap = snap
        self._ents = [Entry(snap.meta.term, snap.meta.index, EntryKind.NOOP)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's state as of applied `index`."""
        if index <= self._snap.meta.index:
            raise SnapshotOutOfDate(f"{index} <= {self._snap.meta.index}")
        if index > self.last_index():
            raise Unavailable(f"snapshot {index} > last {self.last_index()}")
        self._snap = Snapshot(SnapshotMeta(index, self.term(index), conf_state), data)
        return self._snap

    def compact(self, index: int) -> None:
        """Drop entries up to `index`, which a snapshot must already cover."""
        off = self._offset()
        if index <= off:
            return
        if index > self._snap.meta.index:
            raise Unavailable(f"compact {index} beyond snapshot {self._snap.meta.index}")
        self._ents = [
            Entry(self.term(index), index, EntryKind.NOOP),
            *self._ents[index - off + 1 :],
        ]
