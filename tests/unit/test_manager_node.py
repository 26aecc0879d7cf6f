"""RaftNode (the asyncio shell) in a 3-manager cluster over an in-memory router: real
SQLite logs, real clock (20 ms ticks), real SwarmState."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from manager.errors import Unavailable
from manager.node import RaftNode
from manager.raft import messages as m
from manager.raft.errors import NotLeader
from manager.storage import SqliteLog
from tests.unit.test_manager_state import init_cmd, net, worker

TICK = 0.02


class Router:
    def __init__(self) -> None:
        self.nodes: dict[int, RaftNode] = {}
        self.cut: set[int] = set()

    def sender(self, frm: int):  # type: ignore[no-untyped-def]
        def send(msg: m.Message) -> None:
            if frm in self.cut or msg.to in self.cut or frm not in self.nodes or msg.to not in self.nodes:
                return
            loop = asyncio.get_running_loop()
            loop.call_later(0.001, self.nodes[msg.to].deliver, msg)

        return send


class Cluster:
    def __init__(self, tmp: Path, ids: list[int], **kw: Any) -> None:
        self.tmp, self.ids, self.kw = tmp, ids, kw
        self.router = Router()

    def start(self, raft_id: int, bootstrap: list[int] | None = None) -> RaftNode:
        storage = SqliteLog(self.tmp / f"n{raft_id}.db")
        node = RaftNode(raft_id, storage, self.router.sender(raft_id), rng=random.Random(raft_id),
                        bootstrap=self.ids if bootstrap is None else bootstrap,
                        tick_seconds=TICK, **self.kw)  # fmt: skip
        self.router.nodes[raft_id] = node
        node.start()
        return node

    async def stop(self, raft_id: int) -> None:
        node = self.router.nodes.pop(raft_id)
        await node.stop()
        node.storage.close()

    async def leader(self, timeout: float = 5.0, exclude: int = 0) -> RaftNode:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            leaders = [n for n in self.router.nodes.values() if n.is_leader and n.id != exclude]
            if len(leaders) == 1:
                return leaders[0]
            await asyncio.sleep(TICK)
        raise AssertionError("no leader elected in time")

    async def converged(self, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            snaps = {n.state.snapshot() for n in self.router.nodes.values()}
            if len(snaps) == 1:
                return
            await asyncio.sleep(TICK)
        raise AssertionError("states did not converge")

    async def close(self) -> None:
        for raft_id in list(self.router.nodes):
            await self.stop(raft_id)


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path, [1, 2, 3])
    for i in c.ids:
        c.start(i)
    try:
        yield c
    finally:
        await c.close()


async def test_writes_replicate_and_followers_refuse_writes(cluster: Cluster) -> None:
    leader = await cluster.leader()
    assert await leader.propose(init_cmd()) == "c" * 25
    assert await leader.propose(net("a1", "net-a")) == "a1"
    follower = next(n for n in cluster.router.nodes.values() if not n.is_leader)
    with pytest.raises(NotLeader) as exc:
        await follower.propose(net("b1", "net-b"))
    assert exc.value.leader == leader.id
    await follower.read_barrier()
    assert "a1" in follower.state.networks  # a linearizable read on a follower
    await cluster.converged()


async def test_leader_loss_keeps_every_acknowledged_write(cluster: Cluster) -> None:
    leader = await cluster.leader()
    await leader.propose(init_cmd())
    acked = [await leader.propose(net(f"n{i}", f"net{i}")) for i in range(5)]
    old = leader.id
    await cluster.stop(old)
    start = asyncio.get_running_loop().time()
    new = await cluster.leader(exclude=old)
    failover = asyncio.get_running_loop().time() - start
    assert failover < 40 * TICK * 2  # election timeout is 10-20 ticks
    await new.read_barrier()
    assert set(acked) <= set(new.state.networks)
    acked.append(await new.propose(net("after", "after")))
    # The old leader comes back from its disk and catches up.
    cluster.start(old)
    await cluster.converged()
    assert set(acked) <= set(cluster.router.nodes[old].state.networks)


async def test_minority_cannot_write_majority_can(cluster: Cluster) -> None:
    leader = await cluster.leader()
    await leader.propose(init_cmd())
    cluster.router.cut.add(leader.id)
    with pytest.raises(Exception):  # noqa: B017 - NotLeader once it steps down, or Unavailable
        await leader.propose(net("lost", "lost"), timeout=1.0)
    new = await cluster.leader(exclude=leader.id)
    await new.propose(net("won", "won"))
    cluster.router.cut.clear()
    await cluster.converged()
    assert "won" in leader.state.networks and "lost" not in leader.state.networks


async def test_snapshot_brings_a_new_member_up_to_date(tmp_path: Path) -> None:
    c = Cluster(tmp_path, [1, 2, 3], snapshot_every=5)
    for i in c.ids:
        c.start(i)
    try:
        leader = await c.leader()
        await leader.propose(init_cmd())
        await leader.propose(worker("w1"))
        for i in range(20):
            await leader.propose(net(f"n{i}", f"net{i}"))
        assert leader.storage.snapshot().meta.index > 0
        c.ids.append(4)
        c.start(4, bootstrap=[])
        leader.add_voter(4)
        await c.converged(timeout=10)
        assert len(c.router.nodes[4].state.networks) == 20
    finally:
        await c.close()


async def test_a_snapshot_records_the_membership_changes_it_covers(tmp_path: Path) -> None:
    """A snapshot taken in the same batch as a membership change must record it, or a
    restart (or a follower fed that snapshot) forgets the member for good."""
    storage = SqliteLog(tmp_path / "raft.db")
    node = RaftNode(1, storage, lambda _: None, rng=random.Random(1), bootstrap=[1],
                    snapshot_every=5)  # fmt: skip
    node._handle_ready()
    node.core.campaign()
    node._handle_ready()
    for i in range(3):  # with the change below, one batch crosses the snapshot threshold
        node.core.propose(b'{"rid":"r%d","cmd":{"op":"noop"}}' % i)
    node.core.propose_conf_change(m.ConfChange(m.ConfChangeKind.ADD_LEARNER, 2))
    node._handle_ready()
    snap = storage.snapshot()
    assert snap.meta.index == node.applied
    assert snap.meta.conf_state.learners == frozenset({2})
    storage.close()
    again = RaftNode(1, SqliteLog(tmp_path / "raft.db"), lambda _: None, rng=random.Random(1))
    assert again.core.conf_state.learners == frozenset({2})
    again.storage.close()


async def test_a_retry_overlapping_its_original_does_not_steal_its_answer(cluster: Cluster) -> None:
    """Two proposals with one request ID in flight at once (a forwarded call timed out and
    the node retried): both get the committed answer, neither an Unavailable."""
    leader = await cluster.leader()
    await leader.propose(init_cmd())
    first = asyncio.create_task(leader.propose(net("r1", "net-r"), rid="same-rid"))
    retry = asyncio.create_task(leader.propose(net("r1", "net-r"), rid="same-rid"))
    assert await asyncio.gather(first, retry) == ["r1", "r1"]
    assert not leader._waiters


async def test_a_dead_raft_loop_leads_nothing(tmp_path: Path) -> None:
    """A save that fails (disk full) ends the loop; the node must stop claiming to lead, or
    sessions keep streaming a frozen state from it instead of moving to a live leader."""
    c = Cluster(tmp_path, [1])
    node = c.start(1)
    try:
        await c.leader()

        def disk_full(*_: Any) -> None:
            raise OSError(28, "No space left on device")

        node.storage.save = disk_full  # type: ignore[method-assign]
        with pytest.raises(Unavailable):
            await node.propose(init_cmd(), timeout=0.5)
        assert not node.is_leader and node.leader == 0
    finally:
        await c.close()
