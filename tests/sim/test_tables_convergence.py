"""Network tables over SWIM in simulation: convergence, restart in one round trip, death and return, no lost events."""

from __future__ import annotations

import dataclasses

from swim_net import SimNet

from gossip.config import GossipConfig
from gossip.events import Change, EndpointEvent
from gossip.messages import EndpointRecord
from gossip.tables import Tables

WEB = "web"


def rec(i: int, host: int) -> EndpointRecord:
    return EndpointRecord(
        f"ep-{host}-{i}",
        f"10.1.{host}.{i + 2}",
        f"02:42:0a:01:{host:02x}:{i + 2:02x}",
        f"192.0.2.{host}",
    )


def publisher(host: int, count: int = 2):
    def setup(t: Tables, now: float) -> None:
        t.join_network(WEB, now)
        for i in range(count):
            t.publish(WEB, rec(i, host), now)

    return setup


def web_cluster(seed: int, n: int = 6, outsiders: int = 2, **kw: object) -> SimNet:
    net = SimNet(seed, **kw)  # type: ignore[arg-type]
    net.add_node("h0", setup=publisher(0))
    for i in range(1, n):
        net.add_node(f"h{i}", seeds=["h0"], setup=publisher(i))
    for j in range(outsiders):
        net.add_node(f"out{j}", seeds=["h0"])
    return net


def expected(n: int, count: int = 2) -> dict[str, EndpointRecord]:
    return {r.endpoint_id: r for h in range(n) for r in (rec(i, h) for i in range(count))}


def test_tables_converge_only_among_participants() -> None:
    net = web_cluster(1)
    net.run_for(3.0)
    for i in range(6):
        assert net.nodes[f"h{i}"].tables.records(WEB) == expected(6)
    for j in range(2):
        assert net.nodes[f"out{j}"].tables.rows == {}
        assert not any(isinstance(e, EndpointEvent) for e in net.nodes[f"out{j}"].events)


def test_one_event_per_record_change() -> None:
    net = web_cluster(2)
    net.run_for(3.0)
    h1 = net.nodes["h1"]
    h1.tables.withdraw(WEB, "ep-1-0", net.now)
    net._apply(h1, h1.core.tick(net.now))
    net.run_for(2.0)
    for i in (0, 2, 3, 4, 5):
        evs = [
            (e.change, e.endpoint_id)
            for e in net.nodes[f"h{i}"].events
            if isinstance(e, EndpointEvent)
        ]
        assert evs.count((Change.ADDED, "ep-1-0")) == 1
        assert evs.count((Change.REMOVED, "ep-1-0")) == 1
        assert len(evs) == len(set(evs))


def test_restart_converges_in_one_round_trip() -> None:
    net = web_cluster(3)
    net.run_for(3.0)
    net.crash("h5")
    h2 = net.nodes["h2"]  # while h5 is down, others change their tables
    h2.tables.publish(WEB, rec(7, 2), net.now)
    h2.tables.withdraw(WEB, "ep-2-0", net.now)
    net._apply(h2, h2.core.tick(net.now))
    net.run_for(1.0)
    # h5 comes back with only one of its two endpoints (the other went away while it was down)
    node = net.restart("h5", seeds=["h0"], setup=publisher(5, count=1))
    assert node.tables.records(WEB).keys() == {"ep-5-0"}
    net.run_for(0.004)  # one stream round trip (latency 0.5-1 ms each way), before any gossip round
    want = {k: v for k, v in expected(6).items() if k not in ("ep-2-0", "ep-5-1")} | {
        "ep-2-7": rec(7, 2)
    }
    assert (
        node.tables.records(WEB) == want
    )  # h5 already knows everything, its own deletion included
    # h5 saw its stale row in the reply and pushed a newer tombstone at once (eager, no gossip round)
    net.run_for(0.004)
    assert sum(net.nodes[f"h{i}"].tables.records(WEB) == want for i in range(5)) >= 3
    net.run_for(2.0)
    for i in range(6):
        assert net.nodes[f"h{i}"].tables.records(WEB) == want, f"h{i}"


def test_dead_owner_withdrawn_then_restored() -> None:
    net = web_cluster(4, outsiders=0)
    net.run_for(3.0)
    others = [f"h{i}" for i in range(6) if i != 3]
    net.partition(["h3"], others)
    net.run_for(6.0)
    for name in others:
        assert not any(k.startswith("ep-3-") for k in net.nodes[name].tables.records(WEB))
        evs = [
            e for e in net.nodes[name].events if isinstance(e, EndpointEvent) and e.owner == "h3"
        ]
        assert [e.change for e in evs[-2:]] == [Change.REMOVED, Change.REMOVED]
    net.heal()
    net.run_for(6.0)
    for name in others:
        assert net.nodes[name].tables.records(WEB) == expected(6), name
        evs = [
            e for e in net.nodes[name].events if isinstance(e, EndpointEvent) and e.owner == "h3"
        ]
        assert [e.change for e in evs[-2:]] == [Change.ADDED, Change.ADDED]


def test_no_event_lost_when_broadcasts_run_out() -> None:
    """Table events sent once, to one peer, under 30 % loss: only anti-entropy can finish the job."""
    cfg = dataclasses.replace(GossipConfig.lan(), table_retransmit_mult=1, table_fanout=1)
    net = SimNet(5, config=cfg, loss=0.3)
    net.add_node("h0", setup=publisher(0, 0))
    for i in range(1, 12):
        net.add_node(f"h{i}", seeds=["h0"], setup=publisher(i, 0))
    net.run_for(4.0)
    for i in range(12):  # everyone publishes at once
        node = net.nodes[f"h{i}"]
        for k in range(3):
            node.tables.publish(WEB, rec(k, i), net.now)
        net._apply(node, node.core.tick(net.now))
    net.run_for(0.5)
    behind = [i for i in range(12) if net.nodes[f"h{i}"].tables.records(WEB) != expected(12, 3)]
    assert behind, "gossip alone delivered everything: the test would prove nothing"
    net.run_for(6.0)
    for i in range(12):
        assert net.nodes[f"h{i}"].tables.records(WEB) == expected(12, 3), f"h{i}"
