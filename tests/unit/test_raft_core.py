"""RaftCore driven by a synchronous in-memory network, in the spirit of
etcd-io/raft's raft_test.go `network`: deliver until quiet, cut links, drop."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from manager.raft import (
    ConfChange,
    ConfChangeKind,
    ConfChangePending,
    Entry,
    EntryKind,
    HardState,
    InvalidMessage,
    MemoryLog,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    RaftCore,
    ReadState,
    Role,
    force_new_cluster,
)
from manager.raft.messages import (
    App,
    AppResp,
    Heartbeat,
    Hup,
    InstallSnapshot,
    Message,
    PreVote,
    PreVoteResp,
    Vote,
    VoteResp,
)

CFG = RaftConfig(heartbeat_tick=1, election_tick=10)


class Net:
    """Nodes with a MemoryLog each; `stabilize` runs persist/send/apply/advance
    until no node has work, dropping messages on cut links."""

    def __init__(self, ids: Iterable[int], cfg: RaftConfig = CFG, seed: int = 1) -> None:
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.ids = sorted(ids)
        self.logs: dict[int, MemoryLog] = {}
        self.nodes: dict[int, RaftCore] = {}
        self.applied: dict[int, list[bytes]] = {}
        self.reads: dict[int, list[ReadState]] = {}
        self.cut: set[frozenset[int]] = set()
        self.down: set[int] = set()
        self.drop_if: Callable[[Message], bool] = lambda m: False
        self.sent: list[Message] = []
        for i in self.ids:
            self.add(i, peers=self.ids)

    def add(self, i: int, peers: Iterable[int] = ()) -> RaftCore:
        self.logs[i] = MemoryLog()
        self.applied[i] = []
        self.reads[i] = []
        self.nodes[i] = RaftCore(i, self.logs[i], random.Random(self.rng.random()), self.cfg, peers)
        return self.nodes[i]

    def restart(self, i: int) -> RaftCore:
        self.nodes[i] = RaftCore(i, self.logs[i], random.Random(self.rng.random()), self.cfg)
        snap = self.logs[i].snapshot()
        self.applied[i] = [b"<snap>"] * snap.meta.index
        return self.nodes[i]

    def isolate(self, i: int) -> None:
        for j in self.nodes:
            if j != i:
                self.cut.add(frozenset((i, j)))

    def heal(self) -> None:
        self.cut.clear()

    def stabilize(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            busy = False
            for i in sorted(self.nodes):
                if i in self.down or not self.nodes[i].has_ready():
                    continue
                busy = True
                self._process(i)
            if not busy:
                return
        raise AssertionError("network did not settle")

    def _process(self, i: int) -> None:
        core, log = self.nodes[i], self.logs[i]
        rd = core.ready()
        if rd.snapshot is not None:
            log.apply_snapshot(rd.snapshot)
            self.applied[i] = [b"<snap>"] * rd.snapshot.meta.index
        log.append(rd.entries)
        if rd.hard_state is not None:
            log.set_hard_state(rd.hard_state)
        for e in rd.committed_entries:
            assert e.index == len(self.applied[i]) + 1, (i, e.index, len(self.applied[i]))
            self.applied[i].append(e.data if e.kind == EntryKind.NORMAL else b"")
        self.reads[i].extend(rd.read_states)
        core.advance(rd)
        for m in (*rd.messages, *rd.messages_after_persist):
            self.deliver(m)

    def deliver(self, m: Message) -> None:
        self.sent.append(m)
        if m.to in self.down or frozenset((m.frm, m.to)) in self.cut or self.drop_if(m):
            return
        if m.to in self.nodes:
            self.nodes[m.to].step(m)

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[i].tick()
            self.stabilize()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for i in sorted(self.nodes):
                if i not in self.down:
                    self.nodes[i].tick()
            self.stabilize()

    def elect(self, i: int) -> RaftCore:
        self.stabilize()
        self.expire_leases()
        self.nodes[i].campaign()
        self.stabilize()
        assert self.nodes[i].role == Role.LEADER
        return self.nodes[i]

    def expire_leases(self) -> None:
        """As if an election timeout passed without news from a leader (without
        ticking, which could start elections of its own)."""
        for n in self.nodes.values():
            n._election_elapsed = max(n._election_elapsed, self.cfg.election_tick)

    def leaders(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.role == Role.LEADER and i not in self.down]


def data_applied(net: Net, i: int) -> list[bytes]:
    return [d for d in net.applied[i] if d and d != b"<snap>"]


# --------------------------------------------------------------------- basics


def test_single_node_elects_itself_and_commits() -> None:
    net = Net([1])
    net.tick(1, 2 * CFG.election_tick)
    leader = net.nodes[1]
    assert leader.role == Role.LEADER and leader.term == 2
    idx = leader.propose(b"x")
    net.stabilize()
    assert leader.commit_index == idx
    assert data_applied(net, 1) == [b"x"]


def test_three_nodes_replicate_and_commit() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    for k in range(5):
        leader.propose(b"v%d" % k)
    net.stabilize()
    for i in (1, 2, 3):
        assert data_applied(net, i) == [b"v%d" % k for k in range(5)]
        assert net.nodes[i].lead == 1


def test_randomized_election_timeout_uses_rng_within_e_2e() -> None:
    seen = set()
    for seed in range(200):
        core = RaftCore(1, MemoryLog(), random.Random(seed), CFG, peers=[1, 2, 3])
        seen.add(core.randomized_election_timeout)
    assert min(seen) == CFG.election_tick and max(seen) == 2 * CFG.election_tick - 1


def test_same_rng_seed_same_election_timeline() -> None:
    def timeline(seed: int) -> list[int]:
        core = RaftCore(1, MemoryLog(), random.Random(seed), CFG, peers=[1, 2, 3])
        out = []
        for term in range(2, 7):
            core.step(Heartbeat(frm=2, to=1, term=term))  # new term: timer re-drawn
            out.append(core.randomized_election_timeout)
        return out

    assert timeline(7) == timeline(7)
    assert timeline(7) != timeline(8)


def test_follower_rejects_proposals_with_leader_hint() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    with pytest.raises(NotLeader) as err:
        net.nodes[2].propose(b"x")
    assert err.value.leader == 1


def test_step_refuses_local_messages() -> None:
    core = Net([1]).nodes[1]
    with pytest.raises(ValueError):
        core.step(Hup())


def test_ready_twice_without_advance_is_an_error() -> None:
    core = Net([1]).nodes[1]
    assert core.has_ready()
    core.ready()
    assert not core.has_ready()
    with pytest.raises(RuntimeError):
        core.ready()


# ------------------------------------------------------------- ready contract


def test_vote_and_append_acks_wait_for_persist() -> None:
    net = Net([1, 2, 3])
    net.stabilize()
    net.nodes[1].campaign()
    rd = net.nodes[1].ready()
    # PreVotes leave only after the pre-candidate's state is durable.
    assert all(isinstance(m, PreVote) for m in rd.messages_after_persist)
    net.nodes[1].advance(rd)
    net.nodes[2].step(rd.messages_after_persist[0])
    rd2 = net.nodes[2].ready()
    assert not rd2.messages and rd2.messages_after_persist
    net.nodes[2].advance(rd2)


def test_candidate_counts_own_vote_only_after_advance() -> None:
    net = Net([1])
    net.stabilize()
    core = net.nodes[1]
    core.campaign()
    assert core.role == Role.PRE_CANDIDATE
    rd = core.ready()
    assert core.role == Role.PRE_CANDIDATE
    core.advance(rd)  # own pre-vote counted -> candidate
    assert core.role == Role.CANDIDATE
    rd = core.ready()
    assert rd.must_sync and rd.hard_state is not None and rd.hard_state.vote == 1
    core.advance(rd)
    assert core.role == Role.LEADER


def test_leader_commits_only_after_own_persist_in_single_node() -> None:
    net = Net([1])
    leader = net.elect(1)
    idx = leader.propose(b"a")
    rd = leader.ready()
    assert [e.index for e in rd.entries] == [idx]
    assert leader.commit_index < idx
    net.logs[1].append(rd.entries)
    leader.advance(rd)
    assert leader.commit_index == idx


# ------------------------------------------------------------ log replication


def test_fast_backtracking_over_divergent_tail() -> None:
    """Node 1 holds 50 uncommitted entries of an old term; the new leader finds
    the common prefix in one rejection, not fifty (etcd's findConflictByTerm)."""
    net = Net([1, 2, 3])
    net.stabilize()  # bootstrap entries 1-3 persisted everywhere
    base = [
        Entry(1, i, EntryKind.CONF_CHANGE, e.data)
        for i, e in zip(range(1, 4), net.logs[1].entries(1, 4), strict=True)
    ]
    for i, (term, n) in {1: (2, 50), 2: (3, 60), 3: (3, 60)}.items():
        log = MemoryLog()
        log.append(base + [Entry(term, 4 + k, data=b"t%d" % term) for k in range(n)])
        log.set_hard_state(HardState(term=term, vote=0, commit=3))
        net.logs[i] = log
        net.restart(i)
    net.stabilize()
    net.sent.clear()
    leader = net.elect(2)
    rejects = [m for m in net.sent if isinstance(m, AppResp) and m.reject and m.frm == 1]
    assert 1 <= len(rejects) <= 2
    assert net.nodes[1].last_index == leader.last_index
    assert net.nodes[1].log_term(50) == 3
    assert data_applied(net, 1) == data_applied(net, 2)


def test_append_batches_respect_max_entries() -> None:
    cfg = RaftConfig(max_append_entries=4, max_inflight=2)
    net = Net([1, 2], cfg)
    net.elect(1)
    net.down.add(2)
    for k in range(20):
        net.nodes[1].propose(b"%d" % k)
    net.stabilize()
    net.down.discard(2)
    net.sent.clear()
    net.tick_all(3)
    apps = [m for m in net.sent if isinstance(m, App) and m.entries]
    assert apps and max(len(m.entries) for m in apps) <= 4
    assert len(data_applied(net, 2)) == 20


def test_only_current_term_entries_commit_by_counting() -> None:
    """Raft §5.4.2 (figure 8): a new leader does not commit an older-term entry
    just because a majority holds it; it commits its own noop, and that one
    carries the older entry."""
    net = Net([1, 2, 3, 4, 5])
    net.elect(1)
    net.drop_if = lambda m: isinstance(m, App) and m.to != 2 and bool(m.entries)
    net.nodes[1].propose(b"old")
    net.stabilize()
    old_index = net.nodes[2].last_index
    old_term = net.nodes[2].log_term(old_index)
    net.down.add(1)
    net.drop_if = lambda m: isinstance(m, App)  # nobody hears the new leader
    net.expire_leases()
    net.nodes[2].campaign()
    net.stabilize()
    leader = net.nodes[2]
    assert leader.role == Role.LEADER and leader.term > old_term
    before = leader.commit_index
    assert before < old_index
    for f in (3, 4):  # a majority now acks the old entry only
        leader.step(AppResp(frm=f, to=2, term=leader.term, index=old_index))
    assert leader.commit_index == before
    noop = leader.last_index
    for f in (3, 4):
        leader.step(AppResp(frm=f, to=2, term=leader.term, index=noop))
    assert leader.commit_index == noop


# ----------------------------------------------------------- elections safety


def test_prevote_partitioned_node_does_not_bump_term_or_disrupt() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    term = net.nodes[1].term
    net.isolate(3)
    net.tick(3, 10 * CFG.election_tick)
    assert net.nodes[3].term == term  # pre-votes never bump the term
    net.heal()
    net.tick_all(3)
    assert net.nodes[1].role == Role.LEADER and net.nodes[1].term == term
    assert net.nodes[3].lead == 1


def test_check_quorum_leader_steps_down_when_isolated() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    net.tick(1, CFG.election_tick)
    assert net.nodes[1].role == Role.LEADER  # followers were active last period
    net.tick(1, CFG.election_tick)
    assert net.nodes[1].role == Role.FOLLOWER


def test_followers_ignore_votes_while_leader_is_live() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    term = net.nodes[1].term
    # Node 3 forces a real election (as if it had no pre-vote).
    net.nodes[3].step(
        Vote(frm=9, to=3, term=term + 5, last_index=99, last_term=term + 4)
    )  # stranger with a "better" log
    assert net.nodes[3].term == term  # ignored: in lease
    net.stabilize()
    assert net.nodes[1].role == Role.LEADER


def test_vote_granted_once_per_term() -> None:
    net = Net([1, 2, 3])
    net.stabilize()
    n = net.nodes[3]
    n.step(Vote(frm=1, to=3, term=5, last_index=3, last_term=1))
    n.step(Vote(frm=2, to=3, term=5, last_index=3, last_term=1))
    rd = n.ready()
    resps = [m for m in rd.messages_after_persist if isinstance(m, VoteResp)]
    assert [(m.to, m.reject) for m in resps] == [(1, False), (2, True)]
    assert rd.hard_state is not None and rd.hard_state.vote == 1


def test_stale_leader_is_told_the_new_term() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    net.expire_leases()
    net.nodes[2].campaign()
    net.stabilize()
    assert net.nodes[2].role == Role.LEADER
    net.nodes[3].step(Heartbeat(frm=1, to=3, term=net.nodes[1].term))
    rd = net.nodes[3].ready()
    kick = [m for m in rd.messages_after_persist if isinstance(m, AppResp) and m.to == 1]
    assert kick and kick[0].term == net.nodes[2].term
    net.nodes[3].advance(rd)


# ------------------------------------------------------ transfer, reads, conf


def test_leadership_transfer_to_caught_up_follower() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    net.nodes[1].propose(b"a")
    net.stabilize()
    net.nodes[1].transfer_leadership(3)
    net.stabilize()
    assert net.nodes[3].role == Role.LEADER
    assert net.nodes[1].role == Role.FOLLOWER and net.nodes[1].lead == 3


def test_leadership_transfer_waits_for_lagging_follower_and_drops_proposals() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    net.down.add(3)
    for k in range(5):
        net.nodes[1].propose(b"%d" % k)
    net.stabilize()
    net.nodes[1].transfer_leadership(3)
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose(b"no")
    net.down.discard(3)
    net.tick_all(1)
    assert net.nodes[3].role == Role.LEADER
    assert data_applied(net, 3)[:5] == [b"%d" % k for k in range(5)]


def test_leadership_transfer_times_out() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    net.down.add(3)
    net.nodes[1].transfer_leadership(3)
    net.tick(1, CFG.election_tick)
    assert net.nodes[1].lead_transferee == 0
    net.nodes[1].propose(b"ok again")


def test_read_index_on_leader_and_follower() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    idx = net.nodes[1].propose(b"w")
    net.stabilize()
    net.nodes[1].read_index(b"r1")
    net.nodes[2].read_index(b"r2")  # forwarded to the leader
    net.stabilize()
    assert net.reads[1] == [ReadState(idx, b"r1")]
    assert net.reads[2] == [ReadState(idx, b"r2")]


def test_read_index_needs_a_quorum() -> None:
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    net.nodes[1].read_index(b"r")
    rd = net.nodes[1].ready()
    assert not rd.read_states
    net.nodes[1].advance(rd)
    net.stabilize()
    assert not net.nodes[1].has_ready()


def test_read_index_without_leader_raises() -> None:
    net = Net([1, 2, 3])
    net.stabilize()
    with pytest.raises(NotLeader):
        net.nodes[2].read_index(b"r")


def test_add_and_remove_voter() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    leader.propose(b"before")
    net.stabilize()
    net.add(4)
    leader.propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, 4))
    with pytest.raises(ConfChangePending):
        leader.propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, 5))
    net.stabilize()
    net.tick_all(2)
    assert leader.conf_state.voters == {1, 2, 3, 4}
    assert net.nodes[4].conf_state.voters == {1, 2, 3, 4}
    assert data_applied(net, 4) == [b"before"]
    leader.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_NODE, 2))
    net.stabilize()
    assert leader.conf_state.voters == {1, 3, 4}
    net.down.add(2)
    net.down.add(3)
    leader.propose(b"after")  # 1 and 4 are a majority of {1, 3, 4}
    net.stabilize()
    assert data_applied(net, 4)[-1] == b"after"


def test_removed_leader_steps_down() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    net.tick_all(1)
    leader.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_NODE, 1))
    net.stabilize()
    assert leader.role == Role.FOLLOWER
    net.down.add(1)
    net.tick_all(3 * CFG.election_tick)
    assert len(net.leaders()) == 1 and net.leaders()[0] in (2, 3)


def test_conf_change_validation() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    with pytest.raises(ValueError):
        leader.propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, 2))
    with pytest.raises(ValueError):
        leader.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_NODE, 9))
    with pytest.raises(NotLeader):
        net.nodes[2].propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, 4))


def test_snapshot_install_for_lagging_follower() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    net.down.add(3)
    for k in range(30):
        leader.propose(b"%d" % k)
    net.stabilize()
    applied = leader.applied_index
    net.logs[1].create_snapshot(applied, leader.conf_state, b"state@%d" % applied)
    net.logs[1].compact(applied)
    net.down.discard(3)
    net.sent.clear()
    net.tick_all(2)
    assert any(isinstance(m, InstallSnapshot) for m in net.sent)
    assert net.logs[3].snapshot().meta.index == applied
    assert net.nodes[3].applied_index == applied
    leader.propose(b"next")
    net.stabilize()
    assert net.applied[3][-1] == b"next"


def test_snapshot_retried_when_lost() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    net.down.add(3)
    for k in range(10):
        leader.propose(b"%d" % k)
    net.stabilize()
    net.logs[1].create_snapshot(leader.applied_index, leader.conf_state, b"s")
    net.logs[1].compact(leader.applied_index)
    net.down.discard(3)
    net.drop_if = lambda m: isinstance(m, InstallSnapshot)
    net.tick_all(2)
    assert leader.progress(3)[2] == "snapshot"
    net.drop_if = lambda m: False
    net.tick_all(CFG.election_tick + 2)
    assert net.nodes[3].applied_index >= 10


def test_restart_keeps_only_persisted_state() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    for k in range(3):
        leader.propose(b"%d" % k)
    net.stabilize()
    term = net.nodes[2].term
    net.restart(2)
    net.stabilize()
    assert net.nodes[2].term == term
    assert data_applied(net, 2) == [b"0", b"1", b"2"]


def test_force_new_cluster_from_survivor() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    for k in range(4):
        leader.propose(b"%d" % k)
    net.stabilize()
    net.down.update({1, 2})
    removed = force_new_cluster(net.logs[3], 3)
    assert removed == [1, 2]
    del net.nodes[1], net.nodes[2]
    net.down.clear()
    core = net.restart(3)
    net.tick(3, 2 * CFG.election_tick)
    assert core.role == Role.LEADER and core.conf_state.voters == {3}
    assert data_applied(net, 3) == [b"0", b"1", b"2", b"3"]
    core.propose(b"new")
    net.stabilize()
    assert data_applied(net, 3)[-1] == b"new"
    net.add(4)
    core.propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, 4))
    net.stabilize()
    net.tick_all(2)
    assert data_applied(net, 4) == data_applied(net, 3)


def test_restart_resumes_applying_after_the_snapshot_not_the_compaction_point() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    for k in range(20):
        leader.propose(b"%d" % k)
    net.stabilize()
    log = net.logs[2]
    applied = net.nodes[2].applied_index
    log.create_snapshot(applied, net.nodes[2].conf_state, b"s")
    log.compact(applied - 5)  # keep a few entries behind the snapshot
    core = RaftCore(2, log, random.Random(0), CFG)
    assert core.applied_index == applied
    rd = core.ready()
    assert not rd.committed_entries  # nothing re-applied
    core.advance(rd)
    with pytest.raises(ValueError):
        RaftCore(2, log, random.Random(0), CFG, applied=applied + 100)


def test_read_index_waits_for_new_leaders_first_commit() -> None:
    """A new leader's commit index may lag what the old one committed; reads
    are held until its own noop commits (Raft thesis §6.4)."""
    net = Net([1, 2, 3])
    net.elect(1)
    net.drop_if = lambda m: isinstance(m, App)  # nobody hears the new leader
    net.expire_leases()
    net.nodes[2].campaign()
    net.stabilize()
    leader = net.nodes[2]
    assert leader.role == Role.LEADER
    noop = leader.last_index
    leader.read_index(b"r")
    net.stabilize()
    assert net.reads[2] == []  # heartbeats get answered, yet no read state
    net.drop_if = lambda m: False
    net.tick(2, 1)
    assert net.reads[2] and net.reads[2][0].index >= noop
    assert leader.commit_index >= noop


def test_restart_with_applied_past_snapshot_replays_membership() -> None:
    net = Net([1, 2, 3])
    leader = net.elect(1)
    net.add(4)
    leader.propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, 4))
    net.stabilize()
    applied = net.nodes[2].applied_index
    core = RaftCore(2, net.logs[2], random.Random(0), CFG, applied=applied)
    assert core.conf_state.voters == {1, 2, 3, 4}
    assert not core.ready().committed_entries


def test_misrouted_messages_are_ignored() -> None:
    net = Net([1, 2, 3])
    net.stabilize()
    n = net.nodes[3]
    n.step(VoteResp(frm=1, to=2, term=9))
    assert n.term == 1 and not n.has_ready()


@pytest.mark.parametrize(
    "msg",
    [
        App(frm=1, to=3, term=2, index=1, log_term=1, entries=(Entry(2, 5),)),
        App(frm=1, to=3, term=2, index=1, log_term=1, entries=(Entry(3, 2),)),
        App(frm=1, to=3, term=2, index=-1, log_term=1),
        App(frm=0, to=3, term=2),
        InstallSnapshot(frm=1, to=3, term=2),
    ],
)
def test_structurally_invalid_messages_are_refused(msg: Message) -> None:
    net = Net([1, 2, 3])
    net.stabilize()
    before = (net.nodes[3].term, net.nodes[3].last_index)
    with pytest.raises(InvalidMessage):
        net.nodes[3].step(msg)
    assert (net.nodes[3].term, net.nodes[3].last_index) == before


def test_follower_commits_only_what_it_verified_matches_the_leader() -> None:
    """An empty append anchored at 5 says nothing about our stale entries 6-8,
    even if the leader's commit index is 8."""
    log = MemoryLog()
    log.append([Entry(1, i) for i in range(1, 6)] + [Entry(2, i) for i in range(6, 9)])
    log.set_hard_state(HardState(term=2, vote=0, commit=5))
    core = RaftCore(1, log, random.Random(0), CFG)
    core.step(App(frm=2, to=1, term=3, index=5, log_term=1, entries=(), commit=8))
    assert core.commit_index == 5


def test_candidate_needs_its_own_vote_on_disk_before_winning() -> None:
    net = Net([1, 2, 3])
    net.stabilize()
    core = net.nodes[1]
    core.campaign()
    for p in (2, 3):
        core.step(PreVoteResp(frm=p, to=1, term=core.term + 1))
    assert core.role == Role.CANDIDATE
    core.step(VoteResp(frm=2, to=1, term=core.term))
    assert core.role == Role.CANDIDATE  # 1 of 3 until our own vote is durable
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1
    net.logs[1].set_hard_state(rd.hard_state)
    core.advance(rd)
    assert core.role == Role.LEADER
