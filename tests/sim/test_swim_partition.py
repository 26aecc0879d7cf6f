"""A partitioned half is declared dead, then rejoins and converges once the network heals."""

from __future__ import annotations

from swim_net import SimNet

from gossip.messages import State


def test_partition_heal_converges() -> None:
    net = SimNet(11, keep_events=False)
    net.bootstrap(20)
    net.run_for(2.0)
    left = [f"n{i}" for i in range(10)]
    right = [f"n{i}" for i in range(10, 20)]
    net.partition(left, right)
    net.run_for(10.0)
    for name in left:
        core = net.nodes[name].core
        assert all(core.members[r].state == State.DEAD for r in right), name
    net.heal()
    net.run_for(10.0)
    for node in net.up_nodes():
        states = {m.name: m.state for m in node.core.members.values()}
        assert len(states) == 20
        assert all(s == State.ALIVE for s in states.values()), (node.name, states)


def test_graceful_leave_is_not_a_failure() -> None:
    net = SimNet(5)
    net.bootstrap(6)
    net.run_for(1.0)
    leaver = net.nodes["n3"]
    net._apply(leaver, leaver.core.leave(net.now))
    net.run_for(1.0)
    net.crash("n3")
    net.run_for(3.0)
    for node in net.up_nodes():
        assert node.core.members["n3"].state == State.LEFT
        assert not any(type(e).__name__ == "MemberDead" for e in node.events)


def test_restarted_node_rejoins_with_higher_incarnation() -> None:
    net = SimNet(8)
    net.bootstrap(5)
    net.run_for(1.0)
    net.crash("n2")
    net.run_for(4.0)
    assert net.nodes["n0"].core.members["n2"].state == State.DEAD
    net.add_node("n2", seeds=["n0"])
    net.run_for(2.0)
    for node in net.up_nodes():
        m = node.core.members["n2"]
        assert m.state == State.ALIVE and m.incarnation >= 1
