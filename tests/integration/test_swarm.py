"""A swarm of overlayd hosts in namespaces, driven with the real docker CLI as the
seeds' tutorials do: init, join (managers and workers), node ls/update/promote/demote,
token rotation, leave, leader loss under writes, overlay networks known everywhere."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.cluster import Cluster, cluster_of
from tests.integration.harness import REPO, Host, wait_for


def node_ls(host: Host) -> list[dict[str, str]]:
    out = host.docker("node", "ls", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def tokens(manager: Host) -> tuple[str, str]:
    worker = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
    mgr = manager.docker("swarm", "join-token", "-q", "manager").stdout.strip()
    return worker, mgr


@pytest.fixture(scope="module")
def swarm() -> Iterator[Cluster]:
    """host0 inits; host1, host2 join as managers; host3, host4 as workers."""
    with cluster_of(5, tag="sw") as c:
        h = c.hosts
        out = h[0].docker("swarm", "init", "--advertise-addr", c.addr(0)).stdout
        assert "Swarm initialized: current node (" in out
        assert "docker swarm join --token SWMTKN-1-" in out and f"{c.addr(0)}:2377" in out
        worker, manager = tokens(h[0])
        for i in (1, 2):
            res = h[i].docker("swarm", "join", "--token", manager, f"{c.addr(0)}:2377")
            assert "This node joined a swarm as a manager." in res.stdout
        for i in (3, 4):
            res = h[i].docker("swarm", "join", "--token", worker, f"{c.addr(0)}:2377")
            assert "This node joined a swarm as a worker." in res.stdout
        yield c


def test_node_ls_shows_every_node_ready_with_one_leader(swarm: Cluster) -> None:
    h = swarm.hosts

    def all_ready() -> bool:
        rows = node_ls(h[1])
        return len(rows) == 5 and all(r["Status"] == "Ready" for r in rows)

    wait_for(all_ready, timeout=10, what="5 ready nodes")
    rows = node_ls(h[1])
    assert sorted(r["ManagerStatus"] for r in rows) == ["", "", "Leader", "Reachable", "Reachable"]
    assert sum(1 for r in rows if r["Self"] in (True, "true")) == 1
    worker = h[3].docker("node", "ls", check=False)
    assert worker.returncode != 0 and "Worker nodes can't be used" in worker.stderr
    info = json.loads(h[3].docker("info", "--format", "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is False


def test_overlay_network_is_the_same_everywhere(swarm: Cluster) -> None:
    h = swarm.hosts
    net_id = h[1].docker("network", "create", "-d", "overlay", "--attachable", "sw-net").stdout.strip()
    assert len(net_id) == 25

    def same_everywhere() -> bool:
        seen = set()
        for host in h:
            res = host.docker("network", "inspect", "sw-net", "--format",
                              "{{.Id}} {{.Scope}} {{(index .IPAM.Config 0).Subnet}} "
                              '{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}',
                              check=False)  # fmt: skip
            if res.returncode != 0:
                return False
            seen.add(res.stdout.strip())
        return len(seen) == 1

    wait_for(same_everywhere, timeout=10, what="the network on all 5 hosts")
    desc = h[4].docker("network", "inspect", "sw-net", "--format", "{{.Id}} {{.Scope}}").stdout
    assert desc.split() == [net_id, "swarm"]
    refused = h[3].docker("network", "create", "-d", "overlay", "nope", check=False)
    assert refused.returncode != 0 and "worker node" in refused.stderr
    dup = h[0].docker("network", "create", "-d", "overlay", "sw-net", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    h[2].docker("network", "rm", "sw-net")
    wait_for(lambda: h[4].docker("network", "inspect", "sw-net", check=False).returncode != 0,
             timeout=10, what="removal to reach a worker")  # fmt: skip


def test_join_token_rotation_refuses_the_old_token(swarm: Cluster) -> None:
    h = swarm.hosts
    old, _ = tokens(h[0])
    h[0].docker("swarm", "join-token", "--rotate", "worker")
    new, _ = tokens(h[1])
    assert new != old
    from tests.integration.cluster import add_host

    extra = add_host(swarm, tag="sx")
    extra.start()
    res = extra.docker("swarm", "join", "--token", old, f"{swarm.addr(0)}:2377", check=False)
    assert res.returncode != 0 and "valid join token is necessary" in res.stderr
    assert json.loads(extra.docker("info", "--format", "{{json .Swarm.LocalNodeState}}").stdout) == "inactive"
    bad = h[0].docker("swarm", "update", "--cert-expiry", "30m", check=False)
    assert bad.returncode != 0 and "minimum certificate expiry time is 1h0m0s" in bad.stderr
    h[0].docker("swarm", "update", "--cert-expiry", "2h")
    extra.docker("swarm", "join", "--token", new, f"{swarm.addr(0)}:2377")
    cert = x509.load_pem_x509_certificate((Path(extra.state_dir) / "swarm/cert.pem").read_bytes())
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(hours=3) <= life <= timedelta(hours=3, minutes=5)  # 2 h + 1 h backdate
    h[0].docker("swarm", "update", "--cert-expiry", "2160h")
    extra.docker("swarm", "leave")
    assert json.loads(extra.docker("info", "--format", "{{json .Swarm.LocalNodeState}}").stdout) == "inactive"


def test_node_update_promote_demote(swarm: Cluster) -> None:
    h = swarm.hosts
    me = json.loads(h[4].docker("info", "--format", "{{json .Swarm.NodeID}}").stdout)
    h[0].docker("node", "update", "--label-add", "zone=a", "--availability", "drain", me)
    spec = json.loads(h[0].docker("node", "inspect", me, "--format", "{{json .Spec}}").stdout)
    assert spec["Labels"] == {"zone": "a"} and spec["Availability"] == "drain"
    h[0].docker("node", "promote", me)
    wait_for(lambda: h[4].docker("node", "ls", check=False).returncode == 0,
             timeout=20, what="the promoted node to serve manager reads")  # fmt: skip
    wait_for(lambda: any(r["ID"].startswith(me[:12]) and r["ManagerStatus"] == "Reachable"
                         for r in node_ls(h[0])), timeout=20, what="the new manager reachable")  # fmt: skip
    h[0].docker("node", "demote", me)
    wait_for(lambda: h[4].docker("node", "ls", check=False).returncode != 0,
             timeout=20, what="the demoted node to stop serving manager reads")  # fmt: skip
    h[0].docker("node", "update", "--availability", "active", me)


def test_certificate_work_never_loads_cryptography_into_a_daemon(swarm: Cluster) -> None:
    """Init, joins, TLSInfo and the promote/demote renewals above ran in CA children: the
    daemons themselves read certificates through ssl alone (≈ 8 MB less resident)."""
    ca = json.loads(swarm.hosts[0].docker("info", "--format", "{{json .Swarm.Cluster.TLSInfo}}").stdout)
    assert ca["TrustRoot"].startswith("-----BEGIN CERTIFICATE-----") and ca["CertIssuerPublicKey"]
    for host in swarm.hosts:
        assert host.proc is not None and host.proc.poll() is None
        maps = Path(f"/proc/{host.proc.pid}/maps").read_text()
        assert "overlayd" in Path(f"/proc/{host.proc.pid}/cmdline").read_text()
        assert "cryptography" not in maps, f"{host.name} loaded cryptography"


RENEW_LOOP = """
import asyncio, json, sys

async def main(creds, addr):
    from manager import ca_process, rpc, transport
    from manager.errors import Unavailable

    ca, cert, key = (open(f"{creds}/{n}.pem", "rb").read() for n in ("ca", "cert", "key"))
    ctx = transport.client_context(ca, cert, key)
    _, csr = await ca_process.new_request()

    async def renew():
        try:
            return "signed" if "BEGIN CERTIFICATE" in await rpc.call(
                addr, ctx, {"op": "renew", "csr": csr}) else "?"
        except Unavailable as exc:
            return exc.message

    out = list(await asyncio.gather(renew(), renew()))  # two at once
    out += [await renew() for _ in range(5)]
    print(json.dumps(out))

sys.path.insert(0, sys.argv[3])
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_a_member_asking_for_certificates_in_a_loop_is_throttled(swarm: Cluster) -> None:
    """Each renewal costs a manager a CA child; a member with a valid certificate that
    asks in a loop (a bug, a stolen key) gets a few, one at a time, then waits."""
    h = swarm.hosts
    worker = h[3]  # never renewed: a full bucket on every manager
    run = worker.ns.sh(sys.executable, "-c", RENEW_LOOP, f"{worker.state_dir}/swarm",
                       f"{swarm.addr(0)}:2377", str(REPO), timeout=60)  # fmt: skip
    out = json.loads(run.stdout)
    assert out.count("signed") == 3, out  # the burst, whether or not the first two overlapped
    refused = [x for x in out if x != "signed"]
    assert all("already in progress" in x or "too many certificate renewals" in x
               for x in refused), out  # fmt: skip
    assert all("too many" in x and "retry in" in x for x in out[-3:]), out
    # the manager is fine and the worker's own certificate still works
    assert worker.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "active"
    assert h[0].docker("node", "ls").returncode == 0


def test_leader_killed_while_writing_loses_no_acknowledged_network(swarm: Cluster) -> None:
    h = swarm.hosts
    ids = [json.loads(h[i].docker("info", "--format", "{{json .Swarm.NodeID}}").stdout)
           for i in range(3)]  # fmt: skip
    leader = h[0].docker("node", "ls", "--filter", "role=manager", "--format",
                         "{{.ID}} {{.ManagerStatus}}").stdout  # fmt: skip
    leader_id = next(line.split()[0] for line in leader.splitlines() if "Leader" in line)
    leader_idx = ids.index(leader_id)
    others = [i for i in range(3) if i != leader_idx]
    acked: list[str] = []
    stop = threading.Event()

    def writer(i: int) -> None:
        """A client writing as fast as it can through a manager that stays up."""
        k = 0
        while not stop.is_set():
            name = f"kill-{i}-{k}"
            reply = h[i].request("POST", "/networks/create", {"Name": name, "Driver": "overlay"})
            if reply.status == 201:
                acked.append(name)
            k += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in others]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 5, timeout=10, what="writes before the kill")
        before = len(acked)
        h[leader_idx].kill9()
        wait_for(lambda: len(acked) >= before + 5, timeout=15, what="writes after the failover")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    names = set(h[others[1]].docker("network", "ls", "--format", "{{.Name}}").stdout.split())
    assert set(acked) <= names
    h[leader_idx].start()
    wait_for(lambda: set(acked) <= set(h[leader_idx].docker(
        "network", "ls", "--format", "{{.Name}}", check=False).stdout.split()),
        timeout=20, what="the old leader to catch up")  # fmt: skip
    for name in acked:
        h[others[0]].docker("network", "rm", name)


def test_manager_leave_needs_force_and_worker_leaves(swarm: Cluster) -> None:
    h = swarm.hosts
    res = h[1].docker("swarm", "leave", check=False)
    assert res.returncode != 0 and "participating as a manager" in res.stderr
    assert "reinitialize it with `--force-new-cluster`" in res.stderr  # dockerd's words
    gone = json.loads(h[3].docker("info", "--format", "{{json .Swarm.NodeID}}").stdout)
    h[3].docker("swarm", "leave")
    me3 = json.loads(h[3].docker("info", "--format", "{{json .Swarm.LocalNodeState}}").stdout)
    assert me3 == "inactive"
    wait_for(lambda: h[0].docker("node", "inspect", gone, "--format", "{{.Status.State}}")
             .stdout.strip() == "down", timeout=10, what="the departed worker down")  # fmt: skip
    h[0].docker("node", "rm", gone)
    assert gone not in h[1].docker("node", "ls", "--format", "{{.ID}}").stdout
    res = h[3].docker("node", "ls", check=False)
    assert res.returncode != 0 and 'docker swarm init' in res.stderr


def test_dead_worker_is_marked_down_then_ready_again(swarm: Cluster) -> None:
    h = swarm.hosts
    me = json.loads(h[4].docker("info", "--format", "{{json .Swarm.NodeID}}").stdout)

    def status() -> str:
        return h[0].docker("node", "inspect", me, "--format", "{{.Status.State}}").stdout.strip()

    h[4].kill9()
    wait_for(lambda: status() == "down", timeout=10, what="the killed worker marked down")
    h[4].start()
    wait_for(lambda: status() == "ready", timeout=10, what="the restarted worker ready again")
    state = json.loads(h[4].docker("info", "--format", "{{json .Swarm.LocalNodeState}}").stdout)
    assert state == "active"  # the membership survived the restart
