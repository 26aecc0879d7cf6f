"""Bridge networks really connect namespaces, isolate networks, and survive restarts."""

from __future__ import annotations

import json
import os
import subprocess

from tests.integration.harness import Host, Netns, wait_for


def ip_of(host: Host, net: str, ns: Netns) -> str:
    doc = json.loads(host.docker("network", "inspect", net).stdout)[0]
    for ep in doc["Containers"].values():
        if ep["Name"] == ns.name:
            return ep["IPv4Address"].split("/")[0]
    raise AssertionError(f"{ns.name} not on {net}")


def pings(src: Netns, dst_ip: str) -> bool:
    return src.sh("ping", "-c1", "-W1", dst_ip, check=False).returncode == 0


def tcp_echo(server: Netns, client: Netns, ip: str, port: int = 5001) -> bool:
    """One TCP round trip through a real socket pair in two namespaces."""
    srv = server.popen(
        "python3", "-c",
        "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        f"s.bind(('0.0.0.0',{port}));s.listen();c,_=s.accept();c.sendall(c.recv(64).upper())",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        code = (
            "import socket,sys\n"
            "for _ in range(100):\n"
            "  try:\n"
            f"    s=socket.create_connection(('{ip}',{port}),timeout=1);break\n"
            "  except OSError:\n"
            "    import time;time.sleep(0.05)\n"
            "s.sendall(b'ping');sys.stdout.write(s.recv(64).decode())"
        )
        out = client.sh("python3", "-c", code, check=False, timeout=20).stdout
        return out == "PING"
    finally:
        srv.kill()
        srv.wait()


def test_two_namespaces_talk_icmp_and_tcp_but_not_across_networks(host: Host) -> None:
    host.docker("network", "create", "red")
    host.docker("network", "create", "blue")
    a, b, c = host.container("a"), host.container("b"), host.container("c")
    host.docker("network", "connect", "red", a.name)
    host.docker("network", "connect", "red", b.name)
    host.docker("network", "connect", "blue", c.name)
    ip_b, ip_c = ip_of(host, "red", b), ip_of(host, "blue", c)
    assert pings(a, ip_b)
    assert tcp_echo(b, a, ip_b)
    # Different networks are isolated (forwarding between bridges is dropped).
    assert not pings(a, ip_c)
    assert not pings(c, ip_b)
    # The gateway answers, and the default route points at it.
    assert "default via 172.18.0.1 dev eth0" in a.sh("ip", "route").stdout
    assert pings(a, "172.18.0.1")


def test_internal_network_has_no_way_out(host: Host) -> None:
    host.docker("network", "create", "--internal", "--subnet", "10.83.0.0/24", "int")
    host.docker("network", "create", "--subnet", "10.84.0.0/24", "ext")
    a, b = host.container("a"), host.container("b")
    host.docker("network", "connect", "int", a.name)
    host.docker("network", "connect", "ext", b.name)
    # No default route on an internal network, and no NAT for its subnet.
    assert "default" not in a.sh("ip", "route").stdout
    rules = host.ns.sh("nft", "list", "table", "ip", "overlayd").stdout
    assert "10.84.0.0/24" in rules and "10.83.0.0/24" not in rules
    # The host's uplink is not reachable from the internal network.
    assert not pings(a, "198.51.100.2")
    assert pings(b, "198.51.100.2")


def _kernel_snapshot(host: Host) -> tuple[str, str]:
    links = host.ns.sh("ip", "-o", "link", "show").stdout
    # Drop counters and state that legitimately vary.
    links = "\n".join(sorted(line.split("\\")[0] for line in links.splitlines()))
    nft = host.ns.sh("nft", "list", "table", "ip", "overlayd").stdout
    return links, nft


def test_restart_and_kill9_keep_connectivity_and_state(host: Host) -> None:
    host.docker("network", "create", "--subnet", "10.85.0.0/24", "keep")
    a, b = host.container("a"), host.container("b")
    host.docker("network", "connect", "keep", a.name)
    host.docker("network", "connect", "keep", b.name)
    ip_b = ip_of(host, "keep", b)
    inspect_before = json.loads(host.docker("network", "inspect", "keep").stdout)
    kernel_before = _kernel_snapshot(host)

    # A continuous ping (200 x 50 ms) runs across both restarts and must lose nothing.
    pinger = a.popen("ping", "-i", "0.05", "-c", "200", "-W", "1", ip_b,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        host.stop()
        host.start()
        host.kill9()
        assert pings(a, ip_b)
        host.start()
        assert pinger.poll() is None, "the ping window must cover both restarts"
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    summary = next(line for line in out.splitlines() if "packets transmitted" in line)
    assert " 0% packet loss" in summary, summary

    assert json.loads(host.docker("network", "inspect", "keep").stdout) == inspect_before
    assert _kernel_snapshot(host) == kernel_before
    # No duplicate addresses or links in the container.
    assert a.sh("ip", "-4", "-o", "addr", "show").stdout.count("10.85.0.") == 1


def test_stale_kernel_objects_are_removed_at_start(host: Host) -> None:
    host.docker("network", "create", "--subnet", "10.86.0.0/24", "gone")
    a = host.container("a")
    host.docker("network", "connect", "gone", a.name)
    net_id = json.loads(host.docker("network", "inspect", "gone").stdout)[0]["Id"]
    host.kill9()
    # While overlayd is down, its state loses the network (e.g. restored from backup).
    subprocess.run(
        ["sqlite3", f"{host.state_dir}/local.db",
         f"DELETE FROM endpoints WHERE network_id='{net_id}'; DELETE FROM networks WHERE id='{net_id}';"],
        check=True,
    )  # fmt: skip
    host.start()
    wait_for(
        lambda: f"br-{net_id[:12]}" not in host.ns.sh("ip", "-o", "link").stdout,
        what="orphaned bridge removed",
    )
    assert "10.86.0.0/24" not in host.ns.sh("nft", "list", "table", "ip", "overlayd").stdout
    assert a.sh("ip", "link", "show", "eth0", check=False).returncode != 0


def test_deleted_container_namespace_releases_its_endpoint(host: Host) -> None:
    host.docker("network", "create", "--subnet", "10.87.0.0/24", "eph")
    a = host.container("a")
    host.docker("network", "connect", "eph", a.name)
    subprocess.run(["ip", "netns", "del", a.name], check=True)
    wait_for(
        lambda: json.loads(host.docker("network", "inspect", "eph").stdout)[0]["Containers"] == {},
        timeout=15,
        what="endpoint of a deleted namespace dropped by the periodic reconcile",
    )
    host.docker("network", "rm", "eph")


def test_container_by_name_path_or_pid_is_one_container(host: Host) -> None:
    host.docker("network", "create", "--subnet", "10.89.0.0/24", "refs")
    a = host.container("a")
    sleeper = a.popen("sleep", "600")
    try:
        # nsenter enters the namespace, then execs: until then its PID is still ours.
        wait_for(
            lambda: os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino == os.stat(a.path).st_ino,
            what="sleeper inside the container namespace",
        )
        reply = host.request(
            "POST", "/networks/refs/connect", {"Container": str(sleeper.pid), "Name": "web"}
        )
        assert reply.status == 200, reply.body
        doc = json.loads(host.docker("network", "inspect", "refs").stdout)[0]
        (ep,) = doc["Containers"].values()
        assert ep["Name"] == "web"  # the explicit name wins over "pid-<n>"
        assert "10.89.0.2/24" in a.sh("ip", "-4", "-o", "addr", "show", "eth0").stdout
        # The same namespace by its name or by a path is the same container.
        for ref in (a.name, a.path, f"/proc/{sleeper.pid}/ns/net"):
            r = host.docker("network", "connect", "refs", ref, check=False)
            assert r.returncode == 1 and "already exists in network refs" in r.stderr, ref
        host.docker("network", "disconnect", "refs", a.path)
        # The host's own namespace (or PID 1's) is never taken for a container.
        for ref in ("/proc/self/ns/net", str(host.proc.pid)):
            r = host.request("POST", "/networks/refs/connect", {"Container": ref})
            assert r.status == 403, (ref, r.body)
            assert "host's own network namespace" in r.json()["message"]
        assert json.loads(host.docker("network", "inspect", "refs").stdout)[0]["Containers"] == {}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_iptables_false_writes_no_rules_and_bridges_still_work() -> None:
    """dockerd's --iptables=false: the host's firewall is someone else's. Bridges and
    endpoints are made as ever; overlayd neither reads nor writes nftables."""
    from tests.integration.conftest import make_host

    h = make_host("nf")
    try:
        h.start("--iptables", "false")
        h.docker("network", "create", "red")
        a, b = h.container("a"), h.container("b")
        h.docker("network", "connect", "red", a.name)
        h.docker("network", "connect", "red", b.name)
        assert pings(a, ip_of(h, "red", b))
        assert h.ns.sh("nft", "list", "ruleset").stdout.strip() == ""
    finally:
        h.close()


def test_devices_a_crash_left_without_alias_are_made_again(host: Host) -> None:
    """kill -9 between `ip link add` and the request that sets the alias: a down device
    without alias under the name overlayd derives from the network's or endpoint's ID. The
    restart redoes it (it used to be "exists and is not overlayd's" for good)."""
    host.docker("network", "create", "--subnet", "10.87.0.0/24", "halfmade")
    a, b = host.container("a"), host.container("b")
    host.docker("network", "connect", "halfmade", a.name)
    host.docker("network", "connect", "halfmade", b.name)
    doc = json.loads(host.docker("network", "inspect", "halfmade").stdout)[0]
    bridge = f"br-{doc['Id'][:12]}"
    ep_b = next(ep for ep in doc["Containers"].values() if ep["Name"] == b.name)["EndpointID"]
    veth = f"ove-{ep_b[:11]}"
    ip_b = ip_of(host, "halfmade", b)
    host.kill9()
    # what the crash would have left: the bridge and b's veth as just created, nothing more
    host.ns.sh("ip", "link", "del", veth)
    host.ns.sh("ip", "link", "del", bridge)
    host.ns.sh("ip", "link", "add", bridge, "type", "bridge")
    host.ns.sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "ovtpeer0")
    host.start()

    def redone() -> bool:
        links = {x["ifname"]: x for x in json.loads(host.ns.sh("ip", "-j", "link").stdout)}
        return all(links.get(n, {}).get("ifalias", "").startswith("overlayd:")
                   and "UP" in links[n]["flags"] for n in (bridge, veth))  # fmt: skip

    wait_for(redone, timeout=10, what="the half-made bridge and veth made again")
    assert "ovtpeer0" not in host.ns.sh("ip", "-o", "link").stdout  # its pair went with it
    wait_for(lambda: pings(a, ip_b), timeout=10, what="a -> b again")
    host.docker("network", "disconnect", "halfmade", a.name)
    host.docker("network", "disconnect", "halfmade", b.name)
    host.docker("network", "rm", "halfmade")


def test_a_broken_network_does_not_fail_connects_to_the_others(host: Host) -> None:
    """A foreign device took one network's bridge name while overlayd was down: that
    network's connects fail (clearly, leaving nothing behind); every other network's
    connects work as before."""
    host.docker("network", "create", "--subnet", "10.88.0.0/24", "taken")
    host.docker("network", "create", "--subnet", "10.89.0.0/24", "fine")
    taken_id = json.loads(host.docker("network", "inspect", "taken").stdout)[0]["Id"]
    bridge = f"br-{taken_id[:12]}"
    host.stop()
    host.ns.sh("ip", "link", "del", bridge)
    host.ns.sh("ip", "link", "add", bridge, "type", "veth", "peer", "name", "ovtpeer1")
    host.ns.sh("ip", "link", "set", bridge, "up")  # someone else's device, in use
    try:
        host.start()
        a, b = host.container("a"), host.container("b")
        host.docker("network", "connect", "fine", a.name)
        host.docker("network", "connect", "fine", b.name)
        assert pings(a, ip_of(host, "fine", b))
        res = host.docker("network", "connect", "taken", a.name, check=False)
        assert res.returncode != 0 and bridge in res.stderr, res.stderr
        assert "10.88.0." not in a.sh("ip", "-4", "-o", "addr").stdout  # nothing left behind
        assert host.request("GET", "/networks/taken").json()["Containers"] == {}
        assert bridge in host.ns.sh("ip", "-o", "link", "show", bridge).stdout  # untouched
    finally:
        host.ns.sh("ip", "link", "del", bridge, check=False)
    for c in (a, b):
        host.docker("network", "disconnect", "fine", c.name)
    host.docker("network", "rm", "fine", "taken")


def test_a_namespace_made_again_under_the_same_name_is_another_container(host: Host) -> None:
    """The connected namespace is gone and a new one sits at its path (a reused PID's
    /proc/PID/ns/net, or `ip netns add` of the same name): the endpoint goes, and overlayd
    never builds the old container's interface, address and route into the newcomer."""
    host.docker("network", "create", "--subnet", "10.90.0.0/24", "reborn")
    a, b = host.container("a"), host.container("b")
    host.docker("network", "connect", "reborn", a.name)
    host.docker("network", "connect", "reborn", b.name)
    subprocess.run(["ip", "netns", "del", a.name], check=True)
    subprocess.run(["ip", "netns", "add", a.name], check=True)  # the newcomer
    host.docker("network", "disconnect", "reborn", b.name)  # any change: a converge runs

    def forgotten() -> bool:
        doc = json.loads(host.docker("network", "inspect", "reborn").stdout)[0]
        return doc["Containers"] == {}

    wait_for(forgotten, timeout=15, what="the replaced container's endpoint forgotten")
    names = [x["ifname"] for x in json.loads(a.sh("ip", "-j", "link").stdout)]
    assert names == ["lo"]
    assert "10.90.0." not in a.sh("ip", "-4", "-o", "addr").stdout
    host.docker("network", "rm", "reborn")


def test_an_mtu_put_right_reaches_both_ends_of_the_veth(host: Host) -> None:
    """When the plan corrects an endpoint's MTU (the underlay's changed, or someone changed
    it by hand), the container's end gets it too: ends that disagree drop big frames."""
    host.docker("network", "create", "--subnet", "10.91.0.0/24", "-o",
                "com.docker.network.driver.mtu=1400", "mtunet")  # fmt: skip
    a = host.container("a")
    host.docker("network", "connect", "mtunet", a.name)
    doc = json.loads(host.docker("network", "inspect", "mtunet").stdout)[0]
    ep = next(iter(doc["Containers"].values()))["EndpointID"]
    veth = f"ove-{ep[:11]}"

    def mtus() -> tuple[int, int]:
        outer = json.loads(host.ns.sh("ip", "-j", "link", "show", veth).stdout)[0]["mtu"]
        inner = json.loads(a.sh("ip", "-j", "link", "show", "eth0").stdout)[0]["mtu"]
        return outer, inner

    assert mtus() == (1400, 1400)
    host.ns.sh("ip", "link", "set", veth, "mtu", "1300")
    a.sh("ip", "link", "set", "eth0", "mtu", "1300")
    wait_for(lambda: mtus() == (1400, 1400), timeout=15, what="both ends back at 1400")
    host.docker("network", "disconnect", "mtunet", a.name)
    host.docker("network", "rm", "mtunet")
