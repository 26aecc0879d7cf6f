"""SqliteLog behaves as MemoryLog does, across random writes and reopenings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from manager.raft.errors import RaftError
from manager.raft.log import MemoryLog
from manager.raft.messages import ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from manager.storage import SqliteLog


def _reads(log) -> tuple:  # type: ignore[no-untyped-def]
    first, last = log.first_index(), log.last_index()
    return (
        log.initial_state(),
        first,
        last,
        log.snapshot(),
        [log.term(i) for i in range(first - 1, last + 1)],
        log.entries(first, last + 1) if last >= first else [],
    )


@pytest.mark.parametrize("seed", range(40))
def test_matches_memory_log(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "raft.db"
    disk, mem = SqliteLog(path), MemoryLog()
    term = 1
    for _ in range(60):
        action = rng.random()
        try:
            if action < 0.45:
                # Append a batch, sometimes overwriting a suffix (a new leader's entries);
                # never below the snapshot: raft never rewrites applied entries.
                low = max(mem.first_index(), mem.snapshot().meta.index + 1, mem.last_index() - 3)
                start = rng.randint(min(low, mem.last_index() + 1), mem.last_index() + 1)
                term += rng.random() < 0.3
                ents = [Entry(term, i, EntryKind.NORMAL, rng.randbytes(rng.randint(0, 20)))
                        for i in range(start, start + rng.randint(1, 5))]  # fmt: skip
                mem.append(ents)
                disk.append(ents)
            elif action < 0.6:
                hs = HardState(term, rng.randint(0, 3), rng.randint(0, mem.last_index()))
                mem.set_hard_state(hs)
                disk.set_hard_state(hs)
            elif action < 0.7 and mem.last_index() > mem.snapshot().meta.index:
                idx = rng.randint(mem.snapshot().meta.index + 1, mem.last_index())
                cs = ConfState(frozenset({1, 2, 3}))
                mem.create_snapshot(idx, cs, b"state@%d" % idx)
                disk.create_snapshot(idx, cs, b"state@%d" % idx)
            elif action < 0.8:
                idx = rng.randint(mem.first_index() - 1, mem.snapshot().meta.index)
                mem.compact(idx)
                disk.compact(idx)
            elif action < 0.85:
                # A leader's snapshot ahead of our log.
                idx = mem.last_index() + rng.randint(1, 5)
                snap = Snapshot(SnapshotMeta(idx, term, ConfState(frozenset({1}))), b"remote")
                mem.apply_snapshot(snap)
                disk.apply_snapshot(snap)
            else:
                disk.close()
                disk = SqliteLog(path)
                # Reopening compacts to the snapshot; bring the reference along.
                if mem.first_index() <= mem.snapshot().meta.index:
                    mem.compact(mem.snapshot().meta.index)
        except RaftError:
            continue
        assert _reads(disk) == _reads(mem)
    disk.close()


def test_save_is_one_transaction(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "r.db")
    ents = [Entry(1, 1, EntryKind.NOOP), Entry(1, 2, EntryKind.NORMAL, b"x")]
    log.save(hard_state=HardState(1, 2, 1), entries=ents)
    log.close()
    again = SqliteLog(tmp_path / "r.db")
    assert again.hard_state == HardState(1, 2, 1)
    assert again.entries(1, 3) == ents
