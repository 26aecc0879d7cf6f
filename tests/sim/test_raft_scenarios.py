"""Targeted raft scenarios on the simulated cluster, each ending with the full
safety and linearizability checks."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from raft_cluster import Cluster
from raft_kv import ClientConfig
from raft_node import NodeOptions

from manager.raft import ConfChangeKind, RaftConfig, Role, force_new_cluster
from manager.raft.messages import InstallSnapshot

TICK_MS = 100.0
ELECTION_MS = RaftConfig().election_tick * TICK_MS


def count_sends(cl: Cluster) -> Counter[tuple[str, Any]]:
    """Count messages by (type, destination) from now on."""
    seen: Counter[tuple[str, Any]] = Counter()
    send = cl.net.send

    def counting(frm: Any, to: Any, msg: Any) -> None:
        seen[(type(msg).__name__, to)] += 1
        send(frm, to, msg)

    cl.net.send = counting  # type: ignore[method-assign]
    return seen


def finish(cl: Cluster) -> None:
    cl.settle()
    cl.final_reads()
    cl.check()


def follower_of(cl: Cluster, leader: int) -> int:
    return next(i for i in sorted(cl.nodes) if i != leader)


# ---------------------------------------------------------------- elections


@pytest.mark.parametrize("seed", range(3))
def test_prevote_rejoining_node_does_not_disrupt_leader(seed: int) -> None:
    cl = Cluster(seed, n=3, clients=2)
    ld = cl.run_until_leader()
    term = ld.core.term  # type: ignore[union-attr]
    f = follower_of(cl, ld.id)
    cl.partition([[f], [i for i in cl.nodes if i != f]])
    cl.run(10 * ELECTION_MS)
    assert cl.nodes[f].core.term == term  # type: ignore[union-attr]  # pre-votes bump nothing
    cl.heal()
    cl.run(3 * ELECTION_MS)
    assert cl.leader() is ld and ld.core.term == term  # type: ignore[union-attr]
    assert list(cl.checker.leaders) == [term]
    finish(cl)


def test_without_prevote_a_rejoining_node_forces_an_election() -> None:
    """The contrast that shows the test above measures something."""
    cl = Cluster(0, n=3, cfg=RaftConfig(pre_vote=False), clients=0)
    ld = cl.run_until_leader()
    term = ld.core.term  # type: ignore[union-attr]
    f = follower_of(cl, ld.id)
    cl.partition([[f], [i for i in cl.nodes if i != f]])
    cl.run(10 * ELECTION_MS)
    assert cl.nodes[f].core.term > term  # type: ignore[union-attr]
    cl.heal()
    cl.run(5 * ELECTION_MS)
    assert cl.run_until_leader().core.term > term  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(3))
def test_check_quorum_isolated_leader_steps_down(seed: int) -> None:
    cl = Cluster(seed, n=5, clients=2)
    ld = cl.run_until_leader()
    cl.partition([[ld.id], [i for i in cl.nodes if i != ld.id]])
    cut_at = cl.net.now
    while ld.core.role == Role.LEADER:  # type: ignore[union-attr]
        cl.run(10)
        assert cl.net.now - cut_at <= 2 * ELECTION_MS + 2 * TICK_MS
    new = cl.run_until_leader()
    assert new.id != ld.id
    finish(cl)


def test_without_check_quorum_isolated_leader_lingers() -> None:
    cl = Cluster(0, n=3, cfg=RaftConfig(check_quorum=False), clients=0)
    ld = cl.run_until_leader()
    cl.partition([[ld.id], [i for i in cl.nodes if i != ld.id]])
    cl.run(5 * ELECTION_MS)
    assert ld.core.role == Role.LEADER  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(5))
def test_leader_failover_is_under_two_seconds(seed: int) -> None:
    cl = Cluster(seed, n=3, clients=0)
    ld = cl.run_until_leader()
    cl.run(cl.rng.uniform(0, 500))
    cl.crash(ld.id)
    t0 = cl.net.now
    new = cl.run_until_leader(step_ms=1)
    assert new.id != ld.id
    assert cl.net.now - t0 <= 2000 + 50


# ---------------------------------------------------------------- transfer


@pytest.mark.parametrize("seed", range(3))
def test_leadership_transfer(seed: int) -> None:
    cl = Cluster(seed, n=3, clients=3)
    ld = cl.run_until_leader()
    cl.run(300)
    target = follower_of(cl, ld.id)
    ld.core.transfer_leadership(target)  # type: ignore[union-attr]
    ld.pump()
    t0 = cl.net.now
    while cl.leader() is None or cl.leader().id != target:  # type: ignore[union-attr]
        cl.run(5)
        assert cl.net.now - t0 < ELECTION_MS, "transfer took longer than an election"
    cl.run(500)
    finish(cl)


# ---------------------------------------------------------------- snapshots


@pytest.mark.parametrize("seed", range(3))
def test_snapshot_install_for_lagging_follower(seed: int) -> None:
    opts = NodeOptions(snapshot_every=20, keep_entries=5)
    cl = Cluster(seed, n=3, opts=opts, clients=3)
    ld = cl.run_until_leader()
    f = follower_of(cl, ld.id)
    cl.crash(f)
    cl.run(3000)
    assert ld.core.first_index > 10  # type: ignore[union-attr]  # the leader compacted
    sent = count_sends(cl)
    cl.restart(f)
    cl.run(2000)
    assert sent[("InstallSnapshot", f)] >= 1
    assert cl.nodes[f].log.snapshot().meta.index > 0
    finish(cl)


def test_snapshot_install_survives_loss() -> None:
    opts = NodeOptions(snapshot_every=20, keep_entries=0)
    cl = Cluster(7, n=3, opts=opts, clients=2)
    ld = cl.run_until_leader()
    f = follower_of(cl, ld.id)
    cl.crash(f)
    cl.run(2000)
    send = cl.net.send
    lost = []

    def lose_first_snapshot(frm: Any, to: Any, msg: Any) -> None:
        if isinstance(msg, InstallSnapshot) and not lost:
            lost.append(msg)
            return
        send(frm, to, msg)

    cl.net.send = lose_first_snapshot  # type: ignore[method-assign]
    cl.restart(f)
    cl.run(4 * ELECTION_MS)
    assert lost and cl.nodes[f].log.snapshot().meta.index > 0
    finish(cl)


# ---------------------------------------------------------------- membership


@pytest.mark.parametrize("seed", range(3))
def test_membership_add_then_remove_leader(seed: int) -> None:
    cl = Cluster(seed, n=3, opts=NodeOptions(snapshot_every=30), clients=3)
    cl.run_until_leader()
    cl.run(1000)
    cl.add_node(4)
    assert cl.change(ConfChangeKind.ADD_VOTER, 4)
    cl.run(1000)
    ld = cl.run_until_leader()
    assert ld.core.conf_state.voters == {1, 2, 3, 4}  # type: ignore[union-attr]
    assert cl.nodes[4].core.conf_state.voters == {1, 2, 3, 4}  # type: ignore[union-attr]
    assert cl.change(ConfChangeKind.REMOVE_NODE, ld.id)
    cl.run(3 * ELECTION_MS)
    new = cl.run_until_leader()
    assert new.id != ld.id and ld.id not in new.core.conf_state.voters  # type: ignore[union-attr]
    cl.crash(ld.id)  # gone for good
    cl.add_node(5)
    assert cl.change(ConfChangeKind.ADD_VOTER, 5)
    cl.run(1000)
    finish(cl)
    assert {n.id for n in cl.members()} == {1, 2, 3, 4, 5} - {ld.id}


def test_only_one_membership_change_at_a_time() -> None:
    cl = Cluster(3, n=3, clients=0)
    cl.run_until_leader()
    cl.add_node(4)
    cl.add_node(5)
    assert cl.change(ConfChangeKind.ADD_VOTER, 4)
    assert not cl.change(ConfChangeKind.ADD_VOTER, 5)  # refused: one pending
    cl.run(500)
    assert cl.change(ConfChangeKind.ADD_VOTER, 5)


# ---------------------------------------------------------------- reads


@pytest.mark.parametrize("seed", range(3))
def test_read_index_stale_leader_serves_no_reads(seed: int) -> None:
    """A deposed leader that does not know it (no CheckQuorum here) must not
    answer reads while the majority side moves on."""
    ccfg = ClientConfig(keys=("a",), think_ms=(1.0, 5.0), give_up_ms=1000.0)
    cl = Cluster(seed, n=3, cfg=RaftConfig(check_quorum=False), clients=2, client_cfg=ccfg)
    ld = cl.run_until_leader()
    cl.run(500)
    stale_reader = cl._make_client("stale")
    stale_reader.cfg = dataclasses.replace(ccfg, pinned=ld.id)
    stale_reader.start()
    cl.clients.append(stale_reader)
    sides = {c.name: 1 for c in cl.clients}  # writers on the majority side
    sides[stale_reader.name] = 0
    cl.partition([[ld.id], [i for i in cl.nodes if i != ld.id]], clients=sides)
    cut_at = cl.net.now
    cl.run(3000)
    assert ld.core.role == Role.LEADER  # type: ignore[union-attr]
    late = [h for h in stale_reader.history if h.call > cut_at + 100]
    assert late and all(h.ret is None for h in late)  # no answer, ever
    finish(cl)


def test_follower_reads_are_forwarded_and_linearizable() -> None:
    ccfg = ClientConfig(keys=("a", "b"), think_ms=(1.0, 5.0))
    cl = Cluster(11, n=3, clients=2, client_cfg=ccfg, readers=3)
    ld = cl.run_until_leader()
    cl.run(2000)
    follower_reads = [
        h for c in cl.clients if c.cfg.pinned and c.cfg.pinned != ld.id for h in c.history
    ]
    assert sum(1 for h in follower_reads if h.ret is not None) > 20
    finish(cl)


# ---------------------------------------------------------------- recovery


def test_force_new_cluster_recovers_from_lost_quorum() -> None:
    cl = Cluster(5, n=3, clients=2)
    ld = cl.run_until_leader()
    cl.run(1500)
    survivor = follower_of(cl, ld.id)
    for i in sorted(cl.nodes):
        if i != survivor:
            cl.crash(i)
            del cl.nodes[i]  # these machines are gone
    for c in cl.clients:
        c.nodes = [survivor]
    cl.run(3 * ELECTION_MS)
    assert cl.leader() is None  # no quorum, no leader
    node = cl.nodes[survivor]
    node.crash()
    removed = force_new_cluster(node.log, survivor)
    assert removed == sorted({1, 2, 3} - {survivor})
    node.start()
    new = cl.run_until_leader()
    assert new.id == survivor and new.core.conf_state.voters == {survivor}  # type: ignore[union-attr]
    cl.run(500)
    for i in (4, 5):
        cl.add_node(i)
        while not cl.change(ConfChangeKind.ADD_VOTER, i):
            cl.run(50)
        cl.run(500)
    finish(cl)
    assert {n.id for n in cl.members()} == {survivor, 4, 5}


@pytest.mark.parametrize("seed", range(3))
def test_whole_cluster_crash_and_restart_loses_no_acknowledged_write(seed: int) -> None:
    cl = Cluster(seed, n=3, opts=NodeOptions(fsync_ms=(5.0, 30.0), snapshot_every=25), clients=3)
    cl.run_until_leader()
    for _ in range(3):
        cl.run(cl.rng.uniform(500, 1500))
        for i in sorted(cl.nodes):  # power cut: unpersisted Readies are gone
            cl.crash(i)
        cl.run(200)
        for i in sorted(cl.nodes):
            cl.restart(i)
    acked = len(cl.checker.acked)
    assert acked > 5
    finish(cl)
