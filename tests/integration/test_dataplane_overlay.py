"""The overlay data plane against a real kernel: hosts are namespaces on an underlay bridge
(itself in a namespace), each driving its own Dataplane (test_dataplane_overlay_lab), and
containers are further namespaces. Traffic crosses hosts through kernel VXLAN only.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from dataplane.layout import sandbox_path
from dataplane.model import Desired
from dataplane.mtu import overlay_mtu
from dataplane.sysctl import BRIDGE_NETFILTER
from tests.integration.nshelpers import wait_until
from tests.integration.test_dataplane_overlay_lab import (
    OverlayLab,
    as_peer,
    clean,
    endpoint,
    overlay,
    overlay_lab,
    pings,
    sandbox_fdb,
    sandbox_links,
    sandbox_neigh,
    wait_ping,
)

pytestmark = pytest.mark.kernel

TCP_ONCE = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen()\n"
    "c,a=s.accept();c.sendall(b'x'*int(sys.argv[2])+a[0].encode());c.close()\n"
)
TCP_GET = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3);d=b''\n"
    "while (b:=c.recv(65536)): d+=b\n"
    "print(len(d), d[-20:].lstrip(b'x').decode())\n"
)


@pytest.fixture
def ol() -> Iterator[OverlayLab]:
    with overlay_lab() as it:
        yield it


def test_three_hosts_two_networks(ol: OverlayLab) -> None:
    """Full mesh inside a network (ICMP and TCP), nothing across networks even with the
    same subnet, MTU from a 1400-byte underlay, a second reconcile changes nothing."""
    hosts = ol.add_hosts(3, mtu=1400)
    mtu = overlay_mtu(hosts[0].probe_mtu())
    assert mtu == 1350
    a, b = overlay("a", 4097, mtu=mtu), overlay("b", 4098, mtu=mtu)  # same subnet, other VNI
    cs = [ol.world.netns(f"c{i}") for i in range(1, 6)]
    eps = {  # container -> (endpoint, host index)
        0: (endpoint(a, cs[0], 11), 0),
        1: (endpoint(a, cs[1], 12), 1),
        2: (endpoint(a, cs[2], 13), 2),
        3: (endpoint(b, cs[3], 14), 0),
        4: (endpoint(b, cs[4], 15), 1),
    }

    def desired(h: int) -> Desired:
        local = frozenset(e for e, on in eps.values() if on == h)
        remote = frozenset(as_peer(e, hosts[on]) for e, on in eps.values() if on != h)
        return Desired(endpoints=local, overlays=frozenset({a, b}), peers=remote,
                       vtep=hosts[h].vtep)  # fmt: skip

    first = [clean(h.reconcile(desired(i))) for i, h in enumerate(hosts)]
    assert all("CreateSandbox:ovl-aaaaaaaaaa" in r["applied"] for r in first)
    assert "CreateSandbox:ovl-bbbbbbbbbb" not in first[2]["applied"]  # no local endpoint
    assert [clean(h.reconcile(desired(i)))["applied"] for i, h in enumerate(hosts)] == [[]] * 3

    ip = {k: str(e.address.ip) for k, (e, _) in eps.items()}
    for src, dst in [(0, 1), (0, 2), (1, 2), (2, 0), (3, 4)]:
        assert wait_ping(cs[src], ip[dst]), (src, dst)
    assert not pings(cs[0], ip[4]) and not pings(cs[1], ip[3])  # other VNI: no answer
    assert not pings(cs[3], ip[1])
    # a full-size DF packet crosses the 1400-byte underlay; the kernel refuses one more byte
    assert pings(cs[0], ip[2], size=mtu - 28) and not pings(cs[0], ip[2], size=mtu - 27)
    ol.world.spawn(cs[2], sys.executable, "-c", TCP_ONCE, "7000", "300000")
    out = wait_until(lambda: cs[0].run(sys.executable, "-c", TCP_GET, ip[2], "7000",
                                       timeout=5).stdout.split(), what="tcp")  # fmt: skip
    assert out == [str(300000 + len(ip[0])), ip[0]]

    # the kernel holds Docker's layout
    sb = hosts[0].sandbox(a.network_id)
    links = sandbox_links(sb)
    vx = links["vxlan0"]["linkinfo"]["info_data"]
    assert (vx["id"], vx["port"], vx["local"], vx["learning"], vx["proxy"]) == (
        4097, 4789, str(hosts[0].vtep), False, True)  # fmt: skip
    assert links["vxlan0"]["master"] == "br0" and links["br0"]["mtu"] == mtu
    assert links["vxlan0"]["ifalias"] == f"overlayd:{a.network_id}:vxlan"
    fdb = sandbox_fdb(sb)
    assert {m: e["dst"] for m, e in fdb.items()} == {
        eps[1][0].mac: str(hosts[1].vtep), eps[2][0].mac: str(hosts[2].vtep)}  # fmt: skip
    assert all(e["state"] == "permanent" for e in fdb.values())
    neigh = sandbox_neigh(sb)
    assert {d: (e["lladdr"], e["state"]) for d, e in neigh.items()} == {
        ip[1]: (eps[1][0].mac, ["PERMANENT"]), ip[2]: (eps[2][0].mac, ["PERMANENT"])}  # fmt: skip
    eth0 = cs[0].run("ip", "-j", "link", "show", "eth0").stdout
    assert eps[0][0].mac in eth0 and f'"mtu":{mtu}' in eth0
    # br_netfilter (if loaded) is switched off in the sandbox only: no rules there
    knobs = [k for k in BRIDGE_NETFILTER if os.path.exists(k)]
    for knob in knobs:
        assert hosts[0].ns.run("nsenter", f"--net={sb}", "cat", knob).stdout.strip() == "0"
        assert hosts[0].ns.run("cat", knob).stdout.strip() == "1"  # a new netns's default
    # nothing of the overlay in the host namespaces themselves
    assert "vxlan" not in hosts[0].ns.run("ip", "-d", "link").stdout


def test_restart_adopts_everything_without_losing_a_packet(ol: OverlayLab) -> None:
    h1, h2 = ol.add_hosts(2)
    a = overlay("a", 4097)
    c1, c2 = ol.world.netns("c1"), ol.world.netns("c2")
    e1, e2 = endpoint(a, c1, 11), endpoint(a, c2, 12)
    d1 = Desired(endpoints=frozenset({e1}), overlays=frozenset({a}),
                 peers=frozenset({as_peer(e2, h2)}), vtep=h1.vtep)  # fmt: skip
    d2 = Desired(endpoints=frozenset({e2}), overlays=frozenset({a}),
                 peers=frozenset({as_peer(e1, h1)}), vtep=h2.vtep)  # fmt: skip
    clean(h1.reconcile(d1))
    clean(h2.reconcile(d2))
    assert wait_ping(c1, str(e2.address.ip))

    flood = ol.world.interactive(c1, "ping", "-i", "0.01", "-c", "250", "-q", str(e2.address.ip))
    time.sleep(0.3)
    for host, d in ((h1, d1), (h2, d2)):
        ol.kill_driver(host)  # kill -9 of the daemon: the kernel keeps forwarding
        ol.start_driver(host)
        assert clean(host.reconcile(d))["applied"] == []
    flood.proc.wait(timeout=20)
    assert flood.proc.stdout is not None
    summary = flood.proc.stdout.read().decode()
    assert re.search(r"250 packets transmitted, 250 received, 0% packet loss", summary), summary


def test_start_cleans_what_a_previous_run_left(ol: OverlayLab) -> None:
    """Stale FDB/neigh entries, a sandbox of a network that is gone, an orphaned vxlan of
    ours holding a VNI another network needs: cleaned at start, foreign things left alone."""
    (h1,) = ol.add_hosts(1)
    a, z, w, u = overlay("a", 4097), overlay("z", 4100), overlay("w", 4101), overlay("u", 4102)
    c1, c2 = ol.world.netns("c1"), ol.world.netns("c2")
    e1 = endpoint(a, c1, 11)
    far = IPv4Address("192.0.2.200")
    peer = replace(as_peer(endpoint(a, c2, 12), h1), vtep=far)
    old = Desired(endpoints=frozenset({e1, endpoint(z, c2, 11)}), overlays=frozenset({a, z}),
                  peers=frozenset({peer}), vtep=h1.vtep)  # fmt: skip
    clean(h1.reconcile(old))
    sb = h1.sandbox(a.network_id)
    # "previous run" leftovers: entries nobody wants any more, on our vxlan0
    ns = ["nsenter", f"--net={sb}"]
    h1.ns.run(*ns, "bridge", "fdb", "add", "02:42:0a:4d:00:63", "dev", "vxlan0", "dst",
              "192.0.2.99", "self", "permanent")  # fmt: skip
    h1.ns.run(*ns, "ip", "neigh", "add", "10.77.0.99", "lladdr", "02:42:0a:4d:00:63", "dev",
              "vxlan0", "nud", "permanent")  # fmt: skip
    # ... an orphaned vxlan of ours in the host namespace holding w's VNI, a foreign one u's
    h1.ns.run("ip", "link", "add", "vx-old", "type", "vxlan", "id", "4101", "dstport", "4789")
    h1.ns.run("ip", "link", "set", "vx-old", "alias", f"overlayd:{'o' * 64}:vxlan")
    h1.ns.run("ip", "link", "add", "vx-docker", "type", "vxlan", "id", "4102", "dstport", "4789")
    c3, c4 = ol.world.netns("c3"), ol.world.netns("c4")
    new = Desired(
        endpoints=frozenset({e1, endpoint(w, c3, 11), endpoint(u, c4, 11)}),
        overlays=frozenset({a, w, u}),  # z is gone: its VNI 4100 is free for anyone
        peers=frozenset({peer}),
        vtep=h1.vtep,
    )
    ol.kill_driver(h1)
    ol.start_driver(h1)
    r = h1.reconcile(new)
    assert r["applied"][0] == "DelLink:vx-old"  # first: it holds the VNI w needs
    assert r["applied"].index("CreateSandbox:ovl-wwwwwwwwww") < r["applied"].index(
        "DelSandbox:ovl-zzzzzzzzzz"
    )
    assert "ProgramPeers:+0/-1" in r["applied"] and "DelSandbox:ovl-zzzzzzzzzz" in r["applied"]
    (problem,) = r["errors"]
    assert "VNI 4102" in problem and "vx-docker" in problem
    assert set(sandbox_fdb(sb)) == {peer.mac} and set(sandbox_neigh(sb)) == {str(peer.ip)}
    hl = h1.ns.run("ip", "-d", "link").stdout
    assert "vx-old" not in hl and "vx-docker" in hl  # reported, not deleted
    assert not os.path.exists(h1.sandbox(z.network_id))
    assert "vxlan0" in sandbox_links(h1.sandbox(w.network_id))
    assert "vxlan0" not in sandbox_links(h1.sandbox(u.network_id))  # local-only, reported
    assert wait_ping(c3, str(w.gateway.ip))


def test_peer_and_endpoint_removal(ol: OverlayLab) -> None:
    h1, h2 = ol.add_hosts(2)
    a = overlay("a", 4097)
    c1, c2, c3 = (ol.world.netns(n) for n in ("c1", "c2", "c3"))
    e1, e2, e3 = endpoint(a, c1, 11), endpoint(a, c2, 12), endpoint(a, c3, 13)
    d1 = Desired(endpoints=frozenset({e1}), overlays=frozenset({a}),
                 peers=frozenset({as_peer(e2, h2), as_peer(e3, h2)}), vtep=h1.vtep)  # fmt: skip
    d2 = Desired(endpoints=frozenset({e2, e3}), overlays=frozenset({a}),
                 peers=frozenset({as_peer(e1, h1)}), vtep=h2.vtep)  # fmt: skip
    clean(h1.reconcile(d1))
    clean(h2.reconcile(d2))
    assert wait_ping(c1, str(e3.address.ip))

    # e3 leaves: h2 deletes its veth, h1 its FDB + neigh entry, in one batch
    r2 = clean(h2.reconcile(replace(d2, endpoints=frozenset({e2})), fresh=False))
    assert r2["applied"] == [f"DelLink:{e3.host_ifname}"]
    r1 = clean(h1.reconcile(del_peers=[[a.network_id, str(e3.address.ip), e3.mac,
                                        str(h2.vtep)]], fresh=False))  # fmt: skip
    assert r1["applied"] == ["ProgramPeers:+0/-1"]
    sb = h1.sandbox(a.network_id)
    assert set(sandbox_fdb(sb)) == {e2.mac} and set(sandbox_neigh(sb)) == {str(e2.address.ip)}
    assert "eth0" not in c3.run("ip", "link").stdout
    assert not pings(c1, str(e3.address.ip)) and pings(c1, str(e2.address.ip))

    # the last local endpoint leaves: the sandbox goes, mount and file included
    r1 = clean(h1.reconcile(replace(d1, endpoints=frozenset())))
    assert r1["applied"] == ["DelSandbox:ovl-aaaaaaaaaa"]
    with open("/proc/self/mountinfo") as f:
        assert sb not in f.read()
    assert not os.path.exists(sb) and "eth0" not in c1.run("ip", "link").stdout
    assert clean(h1.reconcile(replace(d1, endpoints=frozenset())))["applied"] == []


def test_ten_thousand_remote_endpoints(ol: OverlayLab) -> None:
    (h1,) = ol.add_hosts(1)
    a = overlay("a", 4097, subnet="10.64.0.0/18")
    c1 = ol.world.netns("c1")
    e1 = endpoint(a, c1, 2)
    peers = frozenset(  # 10 000 endpoints behind 100 other hosts
        replace(as_peer(endpoint(a, c1, 100 + i), h1), vtep=IPv4Address("192.0.2.100") + i % 100)
        for i in range(10_000)
    )
    d = Desired(endpoints=frozenset({e1}), overlays=frozenset({a}), peers=peers, vtep=h1.vtep)
    r = clean(h1.reconcile(d))
    assert "ProgramPeers:+10000/-0" in r["applied"]
    sb = sandbox_path(h1.run_dir, a.network_id)
    assert len(sandbox_fdb(sb)) == 10_000 and len(sandbox_neigh(sb)) == 10_000
    again = clean(h1.reconcile(d))
    assert again["applied"] == []
    print(f"\n10k peers: first reconcile {r['ms']:.0f} ms, fresh no-op {again['ms']:.0f} ms")
