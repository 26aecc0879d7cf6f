"""The seed tutorial across real overlayd hosts, then isolation and restarts:
containers (namespaces) on different hosts reach each other over VXLAN on their own
overlay network, not across networks, and kill -9 of overlayd does not cut them off."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.layout import run_dir_for, sandbox_path
from tests.integration.cluster import Cluster, cluster_of, form_swarm
from tests.integration.harness import Host, Netns, wait_for

STREAM_SERVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7788)); s.listen(1); print("up", flush=True)
c, _ = s.accept(); c.settimeout(0.1); total = 0; start = time.monotonic(); nxt = start + 0.1
while True:
    try:
        data = c.recv(65536)
        if not data:
            break
        total += len(data)
    except TimeoutError:
        pass
    if time.monotonic() >= nxt:
        print(f"{time.monotonic() - start:.2f} {total}", flush=True); nxt += 0.1
"""
STREAM_CLIENT = """
import socket, time
c = socket.create_connection(("{ip}", 7788), 3); print("connected", flush=True)
end = time.monotonic() + 6
while time.monotonic() < end:
    c.sendall(b"x" * 4096); time.sleep(0.002)
c.close()
"""


def ping(ns: Netns, ip: str, count: int = 1) -> bool:
    res = ns.sh("ping", "-c", str(count), "-W", "1", "-i", "0.2", ip, check=False)
    return res.returncode == 0


def ip_of(host: Host, net: str, container: str) -> str:
    fmt = "{{range $k, $v := .Containers}}{{$v.Name}}={{$v.IPv4Address}} {{end}}"
    out = host.docker("network", "inspect", net, "--format", fmt).stdout.split()
    return dict(item.split("=", 1) for item in out)[container].split("/")[0]


def tcp_ok(client: Netns, server: Netns, ip: str) -> bool:
    """A real TCP exchange: a one-shot echo server in one netns, a client in the other."""
    code = (
        "import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        "s.bind(('0.0.0.0',7777));s.listen(1);print('up',flush=True);c,_=s.accept();"
        "c.sendall(c.recv(16))"
    )
    srv = server.popen(sys.executable, "-c", code, stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == b"up"
        cli = client.sh(sys.executable, "-c",
                        f"import socket;c=socket.create_connection(('{ip}',7777),3);"
                        "c.sendall(b'hello');print(c.recv(16).decode())", check=False)  # fmt: skip
        return cli.stdout.strip() == "hello"
    finally:
        srv.kill()
        srv.wait()


@pytest.fixture(scope="module")
def lab() -> Iterator[Cluster]:
    with cluster_of(3, tag="ov") as c:
        form_swarm(c)
        yield c


def test_tutorial_then_mesh_and_isolation(lab: Cluster) -> None:
    """3 hosts x 3 endpoints on two overlay networks: two on test-net and one on
    other-net per host; full mesh inside each network (ICMP, and TCP across hosts),
    nothing across networks."""
    h = lab.hosts
    h[0].docker("network", "create", "--driver=overlay", "--attachable", "test-net")
    h[0].docker("network", "create", "--driver=overlay", "--attachable", "other-net")
    wait_for(lambda: all(x.docker("network", "inspect", "other-net", check=False).returncode == 0
                         for x in h), timeout=10, what="networks on every host")  # fmt: skip
    members: dict[str, list[tuple[Host, Netns]]] = {"test-net": [], "other-net": []}
    for i, host in enumerate(h):
        for net, tag in (("test-net", "a"), ("test-net", "c"), ("other-net", "b")):
            ns = host.container(f"{tag}{i}")
            host.docker("network", "connect", net, ns.name)
            members[net].append((host, ns))
    ips = {net: [ip_of(host, net, ns.name) for host, ns in eps] for net, eps in members.items()}
    a = [ns for _, ns in members["test-net"]]
    link = a[0].sh("ip", "-o", "link", "show", "eth0").stdout
    assert " mtu 1450 " in link  # underlay 1500 - 50 (VXLAN over IPv4)
    for net, eps in members.items():
        for i, (_, src) in enumerate(eps):
            for j, ip in enumerate(ips[net]):
                if i != j:
                    assert wait_for(lambda s=src, d=ip: ping(s, d), timeout=5,
                                    what=f"{net}: {i} -> {j}")  # fmt: skip
    assert tcp_ok(a[0], a[2], ips["test-net"][2])  # host0 -> host1
    assert tcp_ok(a[4], a[1], ips["test-net"][1])  # host2 -> host0
    b = [ns for _, ns in members["other-net"]]
    assert tcp_ok(b[1], b[2], ips["other-net"][2])
    for src in a:
        for ip in ips["other-net"]:
            assert not ping(src, ip), f"{src.name} reached {ip} across networks"
    for src in b:
        for ip in ips["test-net"]:
            assert not ping(src, ip), f"{src.name} reached {ip} across networks"
    # the way out: docker_gwbridge (NAT) carries the default route, here to another
    # host's underlay address; an --internal overlay has no route out at all
    assert "docker_gwbridge" in h[0].docker("network", "ls", "--format", "{{.Name}}").stdout
    assert ping(a[0], lab.addr(1))
    h[0].docker("network", "create", "--driver=overlay", "--attachable", "--internal", "int-net")
    lone = h[0].container("int")
    h[0].docker("network", "connect", "int-net", lone.name)
    assert "default" not in lone.sh("ip", "route").stdout
    assert not ping(lone, lab.addr(1))
    # inspect on a node lists that node's endpoints, and the hosts taking part as Peers
    peers = json.loads(h[1].docker("network", "inspect", "test-net", "--format",
                                   "{{json .Peers}}").stdout)  # fmt: skip
    assert sorted(p["IP"] for p in peers) == [lab.addr(0), lab.addr(1), lab.addr(2)]
    names = h[1].docker("network", "inspect", "test-net", "--format",
                        "{{range .Containers}}{{.Name}} {{end}}").stdout.split()  # fmt: skip
    assert sorted(names) == sorted([a[2].name, a[3].name])


def test_static_addresses_only_on_user_subnets(lab: Cluster) -> None:
    h = lab.hosts
    h[0].docker("network", "create", "-d", "overlay", "--attachable", "--subnet", "10.77.5.0/24",
                "static-net")  # fmt: skip
    wait_for(lambda: h[2].docker("network", "inspect", "static-net", check=False).returncode == 0,
             timeout=10, what="static-net on host2")  # fmt: skip
    c = h[2].container("st")
    h[2].docker("network", "connect", "--ip", "10.77.5.50", "static-net", c.name)
    assert "10.77.5.50/24" in c.sh("ip", "-o", "addr", "show", "eth0").stdout
    taken = h[1].container("st2")
    res = h[1].docker("network", "connect", "--ip", "10.77.5.50", "static-net", taken.name,
                      check=False)  # fmt: skip
    assert res.returncode != 0 and "Address already in use" in res.stderr  # cluster-wide
    auto = h[1].docker("network", "inspect", "test-net", "--format",
                       "{{(index .IPAM.Config 0).Subnet}}").stdout.strip()  # fmt: skip
    wanted = auto.rsplit(".", 1)[0] + ".200"
    res = h[1].docker("network", "connect", "--ip", wanted, "test-net", taken.name, check=False)
    assert res.returncode != 0 and "user configured subnets" in res.stderr


def test_kill9_keeps_traffic_and_restart_keeps_state(lab: Cluster) -> None:
    h = lab.hosts
    h[0].docker("network", "create", "--driver=overlay", "--attachable", "kill-net")
    c0, c1 = h[0].container("k0"), h[1].container("k1")
    wait_for(lambda: h[1].docker("network", "inspect", "kill-net", check=False).returncode == 0,
             timeout=10, what="kill-net on host1")  # fmt: skip
    h[0].docker("network", "connect", "kill-net", c0.name)
    h[1].docker("network", "connect", "kill-net", c1.name)
    ip1 = ip_of(h[1], "kill-net", c1.name)
    assert wait_for(lambda: ping(c0, ip1), timeout=5, what="k0 -> k1")
    # A TCP stream from k0 to k1 runs through kill -9 and restart of k1's overlayd.
    server = c1.popen(sys.executable, "-c", STREAM_SERVER, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        client = c0.popen(sys.executable, "-c", STREAM_CLIENT.format(ip=ip1), stdout=subprocess.PIPE,
                          text=True)  # fmt: skip
        assert client.stdout is not None and client.stdout.readline().strip() == "connected"
        h[1].kill9()
        assert ping(c0, ip1, count=3)  # the kernel carries on without the daemon
        h[1].start()
        assert ping(c0, ip1, count=3)
        assert client.wait(30) == 0, "the stream broke"
        samples = [line.split() for line in server.stdout.read().splitlines()]
    finally:
        server.kill()
        server.wait()
    counts = [int(n) for _, n in samples]
    assert counts and counts[-1] > 0
    stalls = [float(t) for (t, n), (_, m) in itertools.pairwise(samples) if n == m]
    assert len(stalls) <= 2, f"the stream stalled at {stalls}"  # 100 ms samples
    assert h[1].docker("network", "inspect", "kill-net", "--format",
                       "{{len .Containers}}").stdout.strip() == "1"  # fmt: skip
    links = c1.sh("ip", "-o", "link").stdout.splitlines()
    names = sorted(line.split(":")[1].strip().split("@")[0] for line in links)
    assert names == ["eth0", "eth1", "lo"]  # the overlay, docker_gwbridge: nothing doubled


def test_encrypted_network_on_a_kernel_without_esp_is_refused_cleanly(lab: Cluster) -> None:
    """Never cleartext on a network the user asked to encrypt: where the kernel cannot do
    ESP, the connect fails with the reason and leaves nothing behind (the encrypted path
    itself is tested in user-mode Linux, test_overlay_encrypted.py)."""
    from dataplane.xfrm import esp_support

    if esp_support() is None:
        pytest.skip("this kernel has ESP: the encrypted path is tested end to end instead")
    h = lab.hosts
    h[0].docker("network", "create", "-d", "overlay", "--attachable", "--opt", "encrypted",
                "--subnet", "10.77.6.0/24", "secret-net")  # fmt: skip
    wait_for(lambda: h[1].docker("network", "inspect", "secret-net", check=False).returncode == 0,
             timeout=10, what="secret-net on host1")  # fmt: skip
    opts = h[1].docker("network", "inspect", "secret-net", "--format", "{{json .Options}}")
    assert "encrypted" in json.loads(opts.stdout)
    c = h[1].container("enc")
    res = h[1].docker("network", "connect", "secret-net", c.name, check=False)
    assert res.returncode != 0
    assert "secret-net is encrypted" in res.stderr and "ESP" in res.stderr, res.stderr
    assert h[1].request("GET", "/networks/secret-net").json()["Containers"] == {}
    assert "eth" not in c.sh("ip", "-o", "link").stdout  # no interface was made
    h[0].docker("network", "rm", "secret-net")  # nothing attached anywhere: removable


def test_graceful_restart_keeps_traffic_and_the_sandbox(lab: Cluster) -> None:
    """systemctl restart (SIGTERM, start again) under a ping flood: 0 lost. The stop's last
    converge runs while the swarm view is still there, or the overlays would look gone."""
    h = lab.hosts
    h[0].docker("network", "create", "-d", "overlay", "--attachable", "--subnet",
                "10.77.7.0/24", "graceful-net")  # fmt: skip
    wait_for(lambda: h[2].docker("network", "inspect", "graceful-net", check=False).returncode
             == 0, timeout=10, what="graceful-net on host2")  # fmt: skip
    a, b = h[1].container("ga"), h[2].container("gb")
    h[1].docker("network", "connect", "graceful-net", a.name)
    h[2].docker("network", "connect", "graceful-net", b.name)
    ip = ip_of(h[2], "graceful-net", b.name)
    wait_for(lambda: ping(a, ip), timeout=10, what="ping before the restart")
    flood = a.popen("ping", "-i", "0.005", "-c", "800", "-q", ip, stdout=subprocess.PIPE,
                    text=True)  # fmt: skip
    try:
        for host in (h[1], h[2]):
            assert host.stop() == 0
            host.start()
        out, _ = flood.communicate(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
    assert "800 packets transmitted, 800 received, 0% packet loss" in out, out
    assert ping(a, ip)
    h[1].docker("network", "disconnect", "graceful-net", a.name)
    h[2].docker("network", "disconnect", "graceful-net", b.name)
    h[0].docker("network", "rm", "graceful-net")


def test_a_restart_without_the_swarms_state_leaves_the_overlay_alone(lab: Cluster) -> None:
    """A worker that restarts knowing it is in a swarm but holding none of its state (no
    saved view, the managers out of reach) must not take the swarm's networks for deleted:
    its sandbox, the container's interface and the traffic stay until the state is back."""
    h = lab.hosts
    net_id = h[0].docker("network", "create", "-d", "overlay", "--attachable", "--subnet",
                         "10.77.8.0/24", "held-net").stdout.strip()  # fmt: skip
    wait_for(lambda: h[2].docker("network", "inspect", "held-net", check=False).returncode == 0,
             timeout=10, what="held-net on host2")  # fmt: skip
    a, b = h[1].container("ha"), h[2].container("hb")
    h[1].docker("network", "connect", "held-net", a.name)
    h[2].docker("network", "connect", "held-net", b.name)
    ip = ip_of(h[2], "held-net", b.name)
    wait_for(lambda: ping(a, ip), timeout=10, what="ping before the restart")
    sandbox = sandbox_path(run_dir_for(h[2].state_dir), net_id)
    inode = os.stat(sandbox).st_ino
    block = "ovtheld"
    h[2].kill9()
    os.unlink(Path(h[2].state_dir) / "swarm" / "view.json")
    h[2].ns.sh("nft", f"add table inet {block}; add chain inet {block} out "
               "{ type filter hook output priority 0; }; "
               f"add rule inet {block} out tcp dport 2377 drop")  # fmt: skip
    try:
        h[2].start()  # returns once the start-up converge has run, without the state
        info = h[2].request("GET", "/info").json()
        assert info["Swarm"]["LocalNodeState"] == "pending"  # in a swarm, no manager reached
        assert os.stat(sandbox).st_ino == inode, "the sandbox was made again"
        assert ip in b.sh("ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert ping(a, ip, count=3)
    finally:
        h[2].ns.sh("nft", "delete", "table", "inet", block, check=False)
    wait_for(lambda: h[2].docker("network", "inspect", "held-net", check=False).returncode == 0,
             timeout=15, what="host2 to get the swarm's state back")  # fmt: skip
    assert os.stat(sandbox).st_ino == inode
    assert ping(a, ip, count=3)
    h[1].docker("network", "disconnect", "held-net", a.name)
    h[2].docker("network", "disconnect", "held-net", b.name)
    h[0].docker("network", "rm", "held-net")


def test_swarm_create_refuses_what_it_cannot_honour(lab: Cluster) -> None:
    """The same refusals as for local networks: an overlay is never created silently
    without what was asked for."""
    h = lab.hosts
    before = h[0].request("GET", "/networks").json()
    cases = [
        ({"ConfigOnly": True}, 400, "config-only"),
        ({"ConfigFrom": {"Network": "y"}}, 400, "config-only"),
        ({"IPAM": {"Driver": "foo"}}, 404, 'plugin "foo" not found'),
        ({"EnableIPv4": False}, 400, "IPv4 can only be disabled"),
        ({"EnableIPv6": True}, 400, "IPv6"),
        ({"Scope": "local"}, 400, "invalid scope"),
    ]
    for extra, status, fragment in cases:
        body = {"Name": "refused", "Driver": "overlay", **extra}
        reply = h[0].request("POST", "/v1.48/networks/create", body)
        assert reply.status == status and fragment in reply.json()["message"], (extra, reply.body)
    assert h[0].request("GET", "/networks").json() == before


def test_leaving_the_swarm_takes_its_overlay_endpoints_along(lab: Cluster) -> None:
    """Last in this module (host2 leaves). Its containers' overlay interfaces and the
    docker_gwbridge legs only they needed go; nothing stale stays in its store to trip a
    later connect (that was a 500, KeyError on the vanished network)."""
    h = lab.hosts
    h[0].docker("network", "create", "-d", "overlay", "--attachable", "--subnet",
                "10.77.9.0/24", "leave-net")  # fmt: skip
    wait_for(lambda: h[2].docker("network", "inspect", "leave-net", check=False).returncode == 0,
             timeout=10, what="leave-net on host2")  # fmt: skip
    c = h[2].container("lv")
    h[2].docker("network", "connect", "leave-net", c.name)
    assert sorted(x["ifname"] for x in json.loads(c.sh("ip", "-j", "link").stdout)) == [
        "eth0", "eth1", "lo",
    ]  # fmt: skip
    h[2].docker("swarm", "leave")
    names = sorted(x["ifname"] for x in json.loads(c.sh("ip", "-j", "link").stdout))
    assert names == ["lo"], names
    gw = json.loads(h[2].docker("network", "inspect", "docker_gwbridge").stdout)[0]
    assert gw["Containers"] == {}
    h[2].docker("network", "create", "--subnet", "10.77.10.0/24", "after-leave")
    h[2].docker("network", "connect", "after-leave", c.name)  # no stale record in the way
    h[2].docker("network", "disconnect", "after-leave", c.name)
    h[2].docker("network", "rm", "after-leave")
