"""The raft log on disk: SQLite under the state dir, with a MemoryLog in front for reads.

Raft may only answer a vote or an append once what it promised is durable, so every
write here is one transaction with synchronous=FULL (fsync) before it returns — unlike
the local store, nothing is deferred. Reads never touch the disk: the whole log is
loaded at open into a MemoryLog and every write goes to both (etcd's MemoryStorage
plays the same role), which also makes MemoryLog the reference these writes are tested
against.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from manager.raft.log import MemoryLog
from manager.raft.messages import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
                                    kind INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hard_state (id INTEGER PRIMARY KEY CHECK (id = 0),
                                       term INTEGER, vote INTEGER, commit_index INTEGER);
CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER,
                                     term INTEGER, conf TEXT, data BLOB);
"""


def _conf_json(cs: ConfState) -> str:
    return json.dumps({"voters": sorted(cs.voters), "learners": sorted(cs.learners)})


def _conf_from(text: str) -> ConfState:
    doc = json.loads(text)
    return ConfState(frozenset(doc["voters"]), frozenset(doc["learners"]))


class SqliteLog:
    """Log (read side) and LogWriter (write side) of manager.raft.log, durable."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._mem = MemoryLog()
        self._load()

    def _load(self) -> None:
        """Reopening compacts to the snapshot: entries it covers are not loaded again."""
        row = self._db.execute("SELECT idx, term, conf, data FROM snapshot").fetchone()
        start = 0
        if row is not None:
            meta = SnapshotMeta(row[0], row[1], _conf_from(row[2]))
            self._mem.apply_snapshot(Snapshot(meta, bytes(row[3])))
            start = meta.index
            self._db.execute("DELETE FROM entries WHERE idx <= ?", (start,))
        rows = self._db.execute(
            "SELECT idx, term, kind, data FROM entries WHERE idx > ? ORDER BY idx", (start,)
        )
        self._mem.append([Entry(t, i, EntryKind(k), bytes(d)) for i, t, k, d in rows])
        row = self._db.execute("SELECT term, vote, commit_index FROM hard_state").fetchone()
        if row is not None:
            self._mem.set_hard_state(HardState(*row))

    def close(self) -> None:
        self._db.close()

    # -- reads: from memory ----------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._mem.initial_state()

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        return self._mem.entries(lo, hi, max_bytes)

    def term(self, index: int) -> int:
        return self._mem.term(index)

    def first_index(self) -> int:
        return self._mem.first_index()

    def last_index(self) -> int:
        return self._mem.last_index()

    def snapshot(self) -> Snapshot:
        return self._mem.snapshot()

    @property
    def hard_state(self) -> HardState:
        return self._mem.hard_state

    # -- writes: disk first, then memory ---------------------------------------------

    def save(
        self,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """One Ready's worth of state, in one fsynced transaction (etcd's Storage.Save)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if snapshot is not None and snapshot.meta.index > self._mem.snapshot().meta.index:
                self._write_snapshot(snapshot)
                db.execute("DELETE FROM entries")
            if entries:
                first = max(entries[0].index, self._mem.first_index())
                # A new entry at index i replaces everything from i on.
                db.execute("DELETE FROM entries WHERE idx >= ?", (first,))
                db.executemany(
                    "INSERT INTO entries(idx, term, kind, data) VALUES (?, ?, ?, ?)",
                    [(e.index, e.term, int(e.kind), e.data) for e in entries if e.index >= first],
                )
            if hard_state is not None:
                db.execute(
                    "INSERT OR REPLACE INTO hard_state(id, term, vote, commit_index) "
                    "VALUES (0, ?, ?, ?)",
                    (hard_state.term, hard_state.vote, hard_state.commit),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if snapshot is not None and snapshot.meta.index > self._mem.snapshot().meta.index:
            self._mem.apply_snapshot(snapshot)
        self._mem.append(entries)
        if hard_state is not None:
            self._mem.set_hard_state(hard_state)

    def _write_snapshot(self, snap: Snapshot) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO snapshot(id, idx, term, conf, data) VALUES (0, ?, ?, ?, ?)",
            (snap.meta.index, snap.meta.term, _conf_json(snap.meta.conf_state), snap.data),
        )

    def append(self, entries: Sequence[Entry]) -> None:
        self.save(entries=entries)

    def set_hard_state(self, hs: HardState) -> None:
        self.save(hard_state=hs)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """A follower installing a leader's snapshot: the log restarts after it."""
        self._mem.apply_snapshot(snap)  # raises SnapshotOutOfDate first, like MemoryLog
        self._db.execute("BEGIN IMMEDIATE")
        self._write_snapshot(snap)
        self._db.execute("DELETE FROM entries")
        self._db.execute("COMMIT")

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the state machine as of applied `index` (entries stay until compact)."""
        snap = self._mem.create_snapshot(index, conf_state, data)
        self._db.execute("BEGIN IMMEDIATE")
        self._write_snapshot(snap)
        self._db.execute("COMMIT")
        return snap

    def compact(self, index: int) -> None:
        self._mem.compact(index)
        self._db.execute("DELETE FROM entries WHERE idx <= ?", (index,))
