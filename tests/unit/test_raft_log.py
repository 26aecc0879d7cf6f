"""MemoryLog: the storage contract the core reads and the simulator writes."""

from __future__ import annotations

import pytest

from manager.raft import Compacted, ConfState, Entry, HardState, MemoryLog, Unavailable
from manager.raft.errors import SnapshotOutOfDate
from manager.raft.messages import Snapshot, SnapshotMeta
from manager.raft.raftlog import RaftLog


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(t, start + i, data=b"%d" % (start + i)) for i, t in enumerate(terms)]


def test_empty_log_bounds() -> None:
    log = MemoryLog()
    assert (log.first_index(), log.last_index()) == (1, 0)
    assert log.term(0) == 0
    assert log.initial_state() == (HardState(), ConfState())


def test_append_replaces_conflicting_suffix() -> None:
    log = MemoryLog()
    log.append(ents(1, 1, 1, 2))
    log.append(ents(3, 3, start=3))
    assert [(e.index, e.term) for e in log.entries(1, 5)] == [(1, 1), (2, 1), (3, 3), (4, 3)]
    with pytest.raises(Unavailable):
        log.append(ents(4, start=9))  # gap


def test_entries_size_limit_returns_at_least_one() -> None:
    log = MemoryLog()
    log.append(ents(1, 1, 1))
    assert len(log.entries(1, 4, max_bytes=1)) == 1
    assert len(log.entries(1, 4, max_bytes=2 * 25)) == 2


def test_snapshot_and_compaction() -> None:
    log = MemoryLog()
    log.append(ents(1, 1, 2, 2, 2))
    cs = ConfState.of([1, 2, 3])
    snap = log.create_snapshot(3, cs, b"state")
    assert snap.meta == SnapshotMeta(3, 2, cs)
    with pytest.raises(Unavailable):
        log.compact(4)  # beyond the snapshot
    log.compact(3)
    assert (log.first_index(), log.last_index()) == (4, 5)
    assert log.term(3) == 2
    with pytest.raises(Compacted):
        log.term(2)
    with pytest.raises(Compacted):
        log.entries(3, 5)
    with pytest.raises(SnapshotOutOfDate):
        log.create_snapshot(2, cs, b"")
    assert log.initial_state()[1] == cs


def test_apply_snapshot_replaces_everything() -> None:
    log = MemoryLog()
    log.append(ents(1, 1))
    snap = Snapshot(SnapshotMeta(10, 4, ConfState.of([1])), b"s")
    log.apply_snapshot(snap)
    assert (log.first_index(), log.last_index(), log.term(10)) == (11, 10, 4)
    with pytest.raises(SnapshotOutOfDate):
        log.apply_snapshot(snap)


def test_raftlog_reads_across_stable_and_unstable() -> None:
    log = MemoryLog()
    log.append(ents(1, 1, 1))
    rl = RaftLog(log)
    rl.append(ents(2, 2, start=3))  # replaces stored entry 3
    assert rl.stable_last_index() == 2
    assert [(e.index, e.term) for e in rl.slice(1, 5)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert rl.find_conflict_by_term(4, 1) == (2, 1)
    assert rl.is_up_to_date(4, 2) and not rl.is_up_to_date(9, 1)
    log.append(rl.unstable.entries)
    rl.unstable.stable_to(4, 2)
    assert not rl.unstable.entries and rl.stable_last_index() == 4
    rl.unstable.stable_to(4, 1)  # wrong term: ignored, nothing breaks
