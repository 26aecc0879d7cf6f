"""Demotions on real daemons: the demoted manager leaves the raft group before its raft
node stops (with two managers the removal needs its own acknowledgement), and a demotion
that would leave the voters without a quorum is refused, as swarmkit does."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.integration.cluster import cluster_of, form_swarm
from tests.integration.harness import REPO, Host, wait_for


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


OLD_MANAGER_SPEAKS_RAFT = """
import socket, ssl, struct, sys
sys.path.insert(0, sys.argv[1])
from manager import wire
from manager.ids import raft_id_of
from manager.raft import messages as m
creds, addr, me, leader = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
ctx.load_verify_locations(f"{creds}/ca.pem")
ctx.load_cert_chain(f"{creds}/cert.pem", f"{creds}/key.pem")
t = ctx.wrap_socket(socket.create_connection((addr, 2377), 3))
def frame(b): t.sendall(struct.pack(">I", len(b)) + b)
frame(b'{"type":"raft"}')
vote = m.Vote(frm=raft_id_of(me), to=raft_id_of(leader), term=10**6, last_index=10**6,
              last_term=10**6, transfer=True)
frame(wire.encode(vote))
t.settimeout(3)
try:
    print("closed" if t.recv(10) == b"" else "answered")
except TimeoutError:
    print("kept open")
except (ssl.SSLError, OSError) as e:
    print("closed", type(e).__name__)
"""


def test_a_demoted_managers_old_certificate_cannot_speak_raft() -> None:
    """Its certificate still says manager for months; the raft group must not take a vote
    request (with a term that would depose the leader) from it."""
    with cluster_of(3, tag="dr") as c:
        form_swarm(c, "manager")
        h = c.hosts
        wait_for(lambda: h[0].docker("node", "ls").stdout.count("Reachable") == 2, timeout=15,
                 what="three managers")  # fmt: skip
        leader = _leader(h)
        victim = next(x for x in h if x is not leader)
        old = Path(victim.workdir) / "old-manager-creds"
        shutil.copytree(Path(victim.state_dir) / "swarm", old,
                        ignore=shutil.ignore_patterns("raft.db*", "*.json"))  # fmt: skip
        leader.docker("node", "demote", _node_id(victim))
        wait_for(lambda: victim.docker("node", "ls", check=False).returncode != 0, timeout=20,
                 what="the demotion to take effect")  # fmt: skip
        leader_addr = c.addr(c.hosts.index(leader))
        victim_id, leader_id = _node_id(victim), _node_id(leader)
        res = victim.ns.sh(sys.executable, "-c", OLD_MANAGER_SPEAKS_RAFT, str(REPO), str(old),
                           leader_addr, victim_id, leader_id)  # fmt: skip
        assert res.stdout.startswith("closed"), res.stdout + res.stderr
        assert _leader(h) is leader  # not deposed
        leader.docker("network", "create", "-d", "overlay", "after-old-vote")
        # removed from the swarm altogether: the state no longer names it at all
        leader.docker("node", "rm", "--force", victim_id)
        res = victim.ns.sh(sys.executable, "-c", OLD_MANAGER_SPEAKS_RAFT, str(REPO), str(old),
                           leader_addr, victim_id, leader_id)  # fmt: skip
        assert res.stdout.startswith("closed"), res.stdout + res.stderr
        assert _leader(h) is leader
