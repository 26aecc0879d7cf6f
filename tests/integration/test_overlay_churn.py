"""Churn and host loss on a 3-host swarm, judged by the overlay checker.

1. 200 seeded attach/detach operations over a pool of container namespaces on 3 hosts
   (the hosts work concurrently, each on its own containers; HTTP to the socket, every
   fourth operation through the docker CLI), then every host's kernel (sandboxes, FDB,
   neigh, links, addresses) matches the cluster's view: 0 differences, and pings cross
   hosts inside a network, not across networks.
2. A host dies (kill -9 overlayd, its underlay link down): its endpoints' FDB and neigh
   entries leave the other hosts' sandboxes within a bound; it comes back (link up,
   overlayd started): they return, and the checker reports 0 differences again.
3. The checker itself: views that differ from the kernel in each way it checks are
   reported, and drift planted in a sandbox is repaired by the reconciler's safety net.

OVERLAYD_CHURN_SEED=<n> replays the churn with another seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface

import pytest

from dataplane.layout import run_dir_for, sandbox_path
from tests.integration.cluster import Cluster, cluster_of, form_swarm
from tests.integration.harness import Host, Netns, wait_for
from tests.integration.overlay_checker import (
    ClusterView,
    Endpoint,
    check_host,
    cluster_view,
    wait_converged,
)

SEED = int(os.environ.get("OVERLAYD_CHURN_SEED", "20260604"))
OPERATIONS = 200
POOL_PER_HOST = 4
NETWORKS = ("churn-a", "churn-b")
HOST_DEATH_BOUND = 10.0  # s; gossip declares a host dead in ~1 s, heartbeats in ~3 s


@dataclass
class Swarm:
    cluster: Cluster
    net_ids: dict[str, str]

    @property
    def hosts(self) -> list[Host]:
        return self.cluster.hosts


@pytest.fixture(scope="module")
def swarm() -> Iterator[Swarm]:
    with cluster_of(3, tag="ch") as c:
        h = c.hosts
        form_swarm(c)
        net_ids = {}
        for name in NETWORKS:
            out = h[0].docker("network", "create", "--driver=overlay", "--attachable", name)
            net_ids[name] = out.stdout.strip()
        wait_for(lambda: all(x.request("GET", f"/networks/{n}").status == 200
                             for x in h for n in net_ids.values()),
                 timeout=10, what="the overlay networks on every host")  # fmt: skip
        yield Swarm(c, net_ids)


def ping(ns: Netns, ip: str) -> bool:
    return ns.sh("ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def _toggle(host: Host, net: str, container: Netns, attach: bool, cli: bool) -> str | None:
    """One operation; a description of the failure, or None."""
    action = "connect" if attach else "disconnect"
    if cli:
        res = host.docker("network", action, net, container.name, check=False)
        ok, detail = res.returncode == 0, res.stderr.strip()
    else:
        reply = host.request("POST", f"/networks/{net}/{action}", {"Container": container.name})
        ok, detail = reply.status == 200, f"{reply.status} {reply.body[:200]!r}"
    return None if ok else f"{action} {container.name} {net} on {host.ns.name}: {detail}"


def test_churn_200_operations_then_zero_differences(swarm: Swarm) -> None:
    h = swarm.hosts
    pool = [(i, host.container(f"p{i}{j}")) for i, host in enumerate(h)
            for j in range(POOL_PER_HOST)]  # fmt: skip
    rng = random.Random(SEED)
    attached: dict[tuple[str, str], bool] = {}  # (netns, network) -> attached
    plans: list[list[tuple[str, Netns, bool, bool]]] = [[] for _ in h]
    for k in range(OPERATIONS):
        i, ctr = rng.choice(pool)
        net = rng.choice(NETWORKS)
        attach = not attached.get((ctr.name, net), False)
        attached[(ctr.name, net)] = attach
        plans[i].append((swarm.net_ids[net], ctr, attach, k % 4 == 3))
    assert all(plans), "every host gets operations"

    def run_plan(i: int) -> list[str]:
        return [err for net, ctr, attach, cli in plans[i]
                if (err := _toggle(h[i], net, ctr, attach, cli))]  # fmt: skip

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(h)) as pool_exec:
        errors = [e for errs in pool_exec.map(run_plan, range(len(h))) for e in errs]
    churn_s = time.monotonic() - t0
    assert not errors, f"{len(errors)} failed operations, first: {errors[:5]}"

    # The API says what the test did...
    view, api_diffs = cluster_view(h)
    assert not api_diffs, api_diffs
    got = {(e.name, view.networks[e.network_id].name) for e in view.endpoints}
    assert got == {key for key, on in attached.items() if on}

    # ...and every kernel says what the API says.
    t1 = time.monotonic()
    diffs = wait_converged(h, timeout=15, containers=[c for _, c in pool])
    converge_s = time.monotonic() - t1
    assert diffs == [], (f"{len(diffs)} differences {converge_s:.1f}s after the churn "
                         f"({churn_s:.1f}s for {OPERATIONS} ops):\n" + "\n".join(diffs[:40]))  # fmt: skip
    print(f"churn: {OPERATIONS} ops in {churn_s:.2f}s, converged {converge_s:.2f}s later, "
          f"{len(view.endpoints)} endpoints")  # fmt: skip

    # Spot check the data path: across hosts inside each network, not across networks.
    netns = {c.name: c for _, c in pool}
    checked = 0
    for net_id in swarm.net_ids.values():
        eps = [e for e in view.endpoints if e.network_id == net_id]
        for a, b in ((0, 1), (1, 2), (2, 0)):
            src = next((e for e in eps if e.host == a), None)
            dst = next((e for e in eps if e.host == b), None)
            if src is None or dst is None:
                continue
            ok = wait_for(lambda s=src, d=dst: ping(netns[s.name], str(d.ip.ip)), timeout=3,
                          what=f"{src.name} -> {dst.name} ({dst.ip.ip})")  # fmt: skip
            assert ok
            checked += 1
    assert checked >= 4, f"the seed left too few cross-host pairs ({checked})"
    a_id, b_id = swarm.net_ids[NETWORKS[0]], swarm.net_ids[NETWORKS[1]]
    names_on = {n: {e.name for e in view.endpoints if e.network_id == n} for n in (a_id, b_id)}
    only_a = next(
        e for e in view.endpoints if e.network_id == a_id and e.name not in names_on[b_id]
    )
    other = next(e for e in view.endpoints if e.network_id == b_id and e.host != only_a.host)
    assert not ping(netns[only_a.name], str(other.ip.ip)), "reached across overlay networks"


def _victim_entries_on(hosts: list[Host], net_ids: list[str], macs: set[str],
                       ips: set[str]) -> list[str]:  # fmt: skip
    """Which of the victim's MACs/IPs still sit in the sandboxes of `hosts`."""
    left = []
    for i, host in enumerate(hosts):
        for net_id in net_ids:
            path = sandbox_path(run_dir_for(host.state_dir), net_id)
            if not os.path.exists(path):
                continue
            ns = ["nsenter", f"--net={path}"]
            fdb = subprocess.run([*ns, "bridge", "fdb", "show", "dev", "vxlan0"],
                                 capture_output=True, text=True, check=False).stdout  # fmt: skip
            neigh = subprocess.run([*ns, "ip", "neigh", "show", "dev", "vxlan0"],
                                   capture_output=True, text=True, check=False).stdout  # fmt: skip
            # Tunnel entries only (`dst`): br0's own learned entries for vxlan0 age out.
            left += [f"host{i} FDB {line}" for line in fdb.splitlines()
                     if line.split()[0] in macs and " dst " in line]  # fmt: skip
            left += [f"host{i} neigh {line}" for line in neigh.splitlines()
                     if line.split()[0] in ips]  # fmt: skip
    return left


def test_host_killed_then_back(swarm: Swarm) -> None:
    h = swarm.hosts
    net_ids = list(swarm.net_ids.values())
    # One endpoint per host on both networks, whatever an earlier test left.
    ks = [host.container(f"k{i}") for i, host in enumerate(h)]
    for i, host in enumerate(h):
        for net_id in net_ids:
            host.docker("network", "connect", net_id, ks[i].name)
    diffs = wait_converged(h, timeout=10)
    assert diffs == [], "not converged before the kill:\n" + "\n".join(diffs[:40])
    view, _ = cluster_view(h)
    victim = 2
    gone = [e for e in view.endpoints if e.host == victim]
    macs, ips = {e.mac for e in gone}, {str(e.ip.ip) for e in gone}
    survivors = h[:victim]
    assert _victim_entries_on(survivors, net_ids, macs, ips), "the victim's entries to begin with"
    ip_on_1 = str(next(e.ip.ip for e in view.endpoints if e.host == 1 and e.name == ks[1].name))
    ip_on_2 = str(next(e.ip.ip for e in gone if e.name == ks[2].name))

    # The host dies: its daemon at once, its underlay link with it.
    t0 = time.monotonic()
    h[victim].kill9()
    h[victim].ns.sh("ip", "link", "set", "eth0", "down")
    deadline = t0 + HOST_DEATH_BOUND + 5  # poll a little past the bound to report the time
    while (
        left := _victim_entries_on(survivors, net_ids, macs, ips)
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    gone_s = time.monotonic() - t0
    assert not left, f"victim's entries still on peers after {gone_s:.1f}s:\n" + "\n".join(left)
    assert gone_s <= HOST_DEATH_BOUND, f"the victim's entries took {gone_s:.2f}s to go"
    diffs = wait_converged(survivors, timeout=5)
    assert diffs == [], "survivors differ from their view:\n" + "\n".join(diffs[:40])
    assert ping(ks[0], ip_on_1), "host0 -> host1 while host2 is dead"

    # It comes back: link up, daemon started; its entries return everywhere.
    t1 = time.monotonic()
    h[victim].ns.sh("ip", "link", "set", "eth0", "up")
    h[victim].start()
    diffs = wait_converged(h, timeout=20)
    back_s = time.monotonic() - t1
    assert diffs == [], (f"{len(diffs)} differences {back_s:.1f}s after the restart:\n"
                         + "\n".join(diffs[:40]))  # fmt: skip
    assert wait_for(lambda: ping(ks[0], ip_on_2), timeout=3, what="host0 -> host2 again")
    print(f"host death: entries gone on peers in {gone_s:.2f}s; back and converged in "
          f"{back_s:.2f}s (incl. daemon start)")  # fmt: skip


def _diffs_with(view: ClusterView, host: Host, **change: object) -> list[str]:
    return check_host(0, host, replace(view, **change))


def _mac(ip: IPv4Address) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def test_checker_sees_drift_and_reconciler_repairs_it(swarm: Swarm) -> None:
    """The checker is only worth its 0 if it sees differences: views that differ from the
    kernel in each way give the matching report; then drift planted in a sandbox goes
    away within the reconciler's safety-net period."""
    h = swarm.hosts
    net_id = swarm.net_ids[NETWORKS[0]]
    ds = [h[i].container(f"d{i}") for i in range(2)]
    for i, d in enumerate(ds):
        h[i].docker("network", "connect", net_id, d.name)
    diffs = wait_converged(h, timeout=10)
    assert diffs == [], "not converged to begin with:\n" + "\n".join(diffs[:40])
    view, _ = cluster_view(h)
    assert check_host(0, h[0], view) == []
    net = view.networks[net_id]
    assert net.subnet is not None and net.vni is not None
    eps = view.endpoints
    local = next(e for e in eps if e.host == 0 and e.name == ds[0].name)
    remote = next(e for e in eps if e.host == 1 and e.name == ds[1].name)
    spare = net.subnet.broadcast_address - 1
    plen = net.subnet.prefixlen
    fake = Endpoint(1, net_id, "f" * 64, "fake", IPv4Interface(f"{spare}/{plen}"), _mac(spare))
    moved = replace(local, ip=IPv4Interface(f"{spare - 1}/{plen}"), mac=_mac(spare - 1))
    not_local = [e for e in eps if not (e.host == 0 and e.network_id == net_id)]
    cases = {
        "stale": _diffs_with(view, h[0], endpoints=[e for e in eps if e != remote]),
        "missing": _diffs_with(view, h[0], endpoints=[*eps, fake]),
        "expected 192.0.2.3": _diffs_with(
            view, h[0], endpoints=[*(e for e in eps if e != remote), replace(remote, host=2)]
        ),
        "VNI": _diffs_with(
            view, h[0], networks={**view.networks, net_id: replace(net, vni=net.vni + 1)}
        ),
        "interfaces with": _diffs_with(
            view, h[0], endpoints=[*(e for e in eps if e != local), moved]
        ),
        "no local endpoint but a sandbox": _diffs_with(view, h[0], endpoints=not_local),
        "orphaned sandbox": _diffs_with(
            view,
            h[0],
            networks={k: v for k, v in view.networks.items() if k != net_id},
            endpoints=[e for e in eps if e.network_id != net_id],
        ),
    }
    for needle, found in cases.items():
        assert any(needle in d for d in found), f"checker missed {needle!r}: {found}"

    # Real drift in host0's sandbox: a stray FDB entry, a stray neigh, a missing neigh.
    enter = ["nsenter", f"--net={sandbox_path(run_dir_for(h[0].state_dir), net_id)}"]
    plants = [
        ["bridge", "fdb", "add", fake.mac, "dev", "vxlan0", "dst", "192.0.2.99", "self"],
        ["ip", "neigh", "add", str(spare), "lladdr", fake.mac, "dev", "vxlan0", "nud", "permanent"],
        ["ip", "neigh", "del", str(remote.ip.ip), "dev", "vxlan0"],
    ]
    for cmd in plants:
        subprocess.run([*enter, *cmd], check=True, capture_output=True)
    t0 = time.monotonic()
    diffs = wait_converged(h, timeout=15)
    repair_s = time.monotonic() - t0
    assert diffs == [], f"drift not repaired after {repair_s:.1f}s:\n" + "\n".join(diffs)
    print(f"planted drift repaired in {repair_s:.2f}s")


def test_address_released_while_managers_unreachable_is_given_back(swarm: Swarm) -> None:
    """A disconnect whose release cannot reach the managers still completes; once they
    are back the address goes back too, and peers drop the stale FDB/neigh entries."""
    h = swarm.hosts
    net = swarm.net_ids[NETWORKS[0]]
    c0, c1, stays = h[0].container("lk0"), h[1].container("lk1"), h[1].container("lk2")
    for host, c in ((h[0], c0), (h[1], c1), (h[1], stays)):
        host.docker("network", "connect", net, c.name)
    assert wait_converged(h, 10) == []
    h[1].ns.sh("ip", "link", "set", "eth0", "down")
    try:
        res = h[1].docker("network", "disconnect", net, c1.name, check=False, timeout=60)
        assert res.returncode == 0, res.stderr
    finally:
        h[1].ns.sh("ip", "link", "set", "eth0", "up")
    # host1 is back once host0 programs its remaining endpoint again; then the stale
    # address must go too (not merely be hidden while host1 was unreachable).
    mac = ip_mac(h[1], net, stays.name)
    wait_for(lambda: mac in fdb_of(h[0], net), timeout=20, what="host1's endpoint back on host0")
    left = wait_converged(h, 20)
    assert left == [], f"differences 20 s after the managers came back: {left}"
    for host, c in ((h[0], c0), (h[1], stays)):
        host.docker("network", "disconnect", net, c.name)


def ip_mac(host: Host, net: str, container: str) -> str:
    doc = host.request("GET", f"/networks/{net}").json()
    return next(e["MacAddress"] for e in doc["Containers"].values() if e["Name"] == container)


def fdb_of(host: Host, net: str) -> str:
    path = sandbox_path(run_dir_for(host.state_dir), net)
    return subprocess.run(["nsenter", f"--net={path}", "bridge", "fdb", "show", "dev", "vxlan0"],
                          capture_output=True, text=True, check=False).stdout  # fmt: skip
