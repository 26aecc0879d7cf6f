"""Arbitrary (decodable) messages never break a core: they are applied, ignored
or refused with a RaftError, and the core keeps working afterwards."""

from __future__ import annotations

import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.raft import MemoryLog, RaftConfig, RaftCore, RaftError
from manager.raft.messages import (
    App,
    AppResp,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResp,
    InstallSnapshot,
    InstallSnapshotResp,
    PreVote,
    PreVoteResp,
    ReadIndex,
    ReadIndexResp,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    Vote,
    VoteResp,
)

small = st.integers(-2, 12)
node = st.integers(0, 4)
entries = st.lists(
    st.builds(
        Entry,
        term=small,
        index=small,
        kind=st.sampled_from(list(EntryKind)),
        data=st.binary(max_size=8),
    ),
    max_size=4,
).map(tuple)
common = {"frm": node, "to": st.just(1), "term": small}
messages = st.one_of(
    st.builds(App, index=small, log_term=small, entries=entries, commit=small, **common),
    st.builds(
        AppResp, index=small, reject=st.booleans(), reject_hint=small, log_term=small, **common
    ),
    st.builds(Heartbeat, commit=small, context=st.binary(max_size=4), **common),
    st.builds(HeartbeatResp, context=st.binary(max_size=4), **common),
    st.builds(Vote, last_index=small, last_term=small, transfer=st.booleans(), **common),
    st.builds(VoteResp, reject=st.booleans(), **common),
    st.builds(PreVote, last_index=small, last_term=small, **common),
    st.builds(PreVoteResp, reject=st.booleans(), **common),
    st.builds(
        InstallSnapshot,
        snapshot=st.builds(Snapshot, meta=st.builds(SnapshotMeta, index=small, term=small)),
        **common,
    ),
    st.builds(InstallSnapshotResp, index=small, **common),
    st.builds(TimeoutNow, **common),
    st.builds(ReadIndex, context=st.binary(max_size=4), **common),
    st.builds(ReadIndexResp, index=small, context=st.binary(max_size=4), **common),
)


def drive(core: RaftCore, log: MemoryLog) -> None:
    while core.has_ready():
        rd = core.ready()
        if rd.snapshot is not None:
            log.apply_snapshot(rd.snapshot)
        log.append(rd.entries)
        if rd.hard_state is not None:
            log.set_hard_state(rd.hard_state)
        core.advance(rd)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(msgs=st.lists(messages, max_size=25), leader=st.booleans())
def test_random_messages_never_crash_the_core(msgs: list, leader: bool) -> None:
    log = MemoryLog()
    core = RaftCore(1, log, random.Random(0), RaftConfig(), peers=[1, 2, 3])
    drive(core, log)
    if leader:
        for _ in range(30):
            core.tick()
            drive(core, log)
        for p in (2, 3):
            core.step(PreVoteResp(frm=p, to=1, term=core.term + 1))
        drive(core, log)
        for p in (2, 3):
            core.step(VoteResp(frm=p, to=1, term=core.term))
        drive(core, log)
    for m in msgs:
        with contextlib.suppress(RaftError):
            core.step(m)
        drive(core, log)
        core.tick()
        drive(core, log)
    assert core.commit_index <= core.last_index
