"""Demotions on real daemons: the demoted manager leaves the raft group before its raft
node stops (with two managers the removal needs its own acknowledgement), and a demotion
that would leave the voters without a quorum is refused, as swarmkit does."""

from __future__ import annotations

import json

from tests.integration.cluster import cluster_of, form_swarm
from tests.integration.harness import Host, wait_for


def _node_id(host: Host) -> str:
    return json.loads(host.docker("info", "--format", "{{json .Swarm.NodeID}}").stdout)


def _leader(hosts: list[Host]) -> Host:
    ids = {_node_id(h): h for h in hosts}
    rows = hosts[0].docker("node", "ls", "--format", "{{.ID}} {{.ManagerStatus}}").stdout
    leader = next(line.split()[0] for line in rows.splitlines() if "Leader" in line)
    return ids[leader]


def test_demoting_the_leader_of_two_managers_keeps_the_swarm_writable() -> None:
    with cluster_of(2, tag="dm") as c:
        form_swarm(c, "manager")
        h = c.hosts
        wait_for(lambda: "Reachable" in h[0].docker("node", "ls").stdout, timeout=15,
                 what="two managers")  # fmt: skip
        leader = _leader(h)
        other = next(x for x in h if x is not leader)
        other.docker("node", "demote", _node_id(leader))
        wait_for(lambda: leader.docker("node", "ls", check=False).returncode != 0, timeout=20,
                 what="the demoted node to stop serving manager reads")  # fmt: skip
        # the one manager left has a quorum of its own: it writes
        wait_for(lambda: other.docker("network", "create", "-d", "overlay", "after-demote",
                                      check=False).returncode == 0,
                 timeout=15, what="a write on the remaining manager")  # fmt: skip
        rows = other.docker("node", "ls", "--format", "{{.ID}} {{.ManagerStatus}}").stdout
        assert sorted(line.split(" ", 1)[1].strip() for line in rows.splitlines()) == [
            "", "Leader",
        ]  # fmt: skip
        wait_for(lambda: "after-demote" in leader.docker("network", "ls").stdout, timeout=15,
                 what="the new worker to learn the network")  # fmt: skip


def test_a_demotion_that_would_lose_the_quorum_is_refused() -> None:
    with cluster_of(3, tag="dq") as c:
        form_swarm(c, "manager")
        h = c.hosts
        wait_for(lambda: h[0].docker("node", "ls").stdout.count("Reachable") == 2, timeout=15,
                 what="three managers")  # fmt: skip
        leader = _leader(h)
        rest = [x for x in h if x is not leader]
        down, victim = rest
        down.kill9()
        # voters left without the victim: the leader and the dead one, one of two alive
        wait_for(lambda: "Unreachable" in leader.docker("node", "ls").stdout, timeout=30,
                 what="the killed manager seen unreachable")  # fmt: skip
        res = leader.docker("node", "demote", _node_id(victim), check=False)
        assert res.returncode != 0 and "loss of quorum" in res.stderr, res.stderr
        rows = leader.docker("node", "ls", "--format", "{{.ManagerStatus}}").stdout.split()
        assert sorted(rows) == ["Leader", "Reachable", "Unreachable"]
        down.start()
