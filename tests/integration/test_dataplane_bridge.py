"""The bridge data plane against a real kernel: a "host" netns runs the reconciler (this file,
started as a script under `nsenter --net=`, since the Dataplane acts on its own process's
netns), containers are further namespaces. Traffic stays inside namespaces made here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest

from dataplane.model import BridgeSpec, Desired, EndpointSpec
from tests.integration.nshelpers import Lab, Netns, lab, wait_until

pytestmark = pytest.mark.kernel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- the reconciler, run inside the host netns ----------------------------------------------


def _encode(d: Desired) -> dict[str, Any]:
    def plain(x: Any) -> dict[str, Any]:
        return {k: (str(v) if v is not None and not isinstance(v, (int, bool)) else v)
                for k, v in asdict(x).items()}  # fmt: skip

    return {"bridges": [plain(b) for b in d.bridges], "endpoints": [plain(e) for e in d.endpoints]}


def _decode(doc: dict[str, Any]) -> Desired:
    bridges = [
        BridgeSpec(
            **{**b, "gateway": IPv4Interface(b["gateway"]), "subnet": IPv4Network(b["subnet"])}
        )
        for b in doc["bridges"]
    ]
    endpoints = []
    for e in doc["endpoints"]:
        gw = e["default_gateway"]
        e = {**e, "address": IPv4Interface(e["address"])}
        e["default_gateway"] = IPv4Address(gw) if gw else None
        endpoints.append(EndpointSpec(**e))
    return Desired(frozenset(bridges), frozenset(endpoints))


def _op_name(op: Any) -> str:
    spec = getattr(op, "spec", None)
    target = getattr(op, "ifname", None) or getattr(spec, "host_ifname", None)
    target = target or getattr(spec, "ifname", None)
    return f"{type(op).__name__}:{target}" if target else type(op).__name__


async def _driver(req: dict[str, Any]) -> list[dict[str, Any]]:
    from dataplane.reconciler import Dataplane

    desired = _decode(req["desired"])
    dp = Dataplane()
    try:
        if req.get("concurrent"):
            results = await asyncio.gather(*(dp.reconcile(desired) for _ in range(req["rounds"])))
        else:
            results = [await dp.reconcile(desired) for _ in range(req["rounds"])]
    finally:
        await dp.close()
    return [
        {
            "applied": [_op_name(op) for op in r.applied],
            "gone": [e.endpoint_id for e in r.gone],
            "errors": list(r.errors),
        }
        for r in results
    ]


def reconcile(
    host: Netns, desired: Desired, rounds: int = 1, concurrent: bool = False
) -> list[dict[str, Any]]:
    """Run `rounds` reconciles with one fresh Dataplane (a new process) in the host netns."""
    req = {"desired": _encode(desired), "rounds": rounds, "concurrent": concurrent}
    module = "tests.integration.test_dataplane_bridge"
    cp = host.run(sys.executable, "-m", module, input=json.dumps(req), check=False, cwd=REPO)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


# --- building blocks ------------------------------------------------------------------------


def bridge(net: str, ifname: str, third: int, **kw: Any) -> BridgeSpec:
    return BridgeSpec(
        network_id=net * 64,
        ifname=ifname,
        gateway=IPv4Interface(f"172.31.{third}.1/24"),
        subnet=IPv4Network(f"172.31.{third}.0/24"),
        **kw,
    )


def endpoint(
    b: BridgeSpec, ns: Netns, host_ifname: str, last: int, gw: bool = True
) -> EndpointSpec:
    ip = b.subnet.network_address + last
    return EndpointSpec(
        endpoint_id=(host_ifname.encode().hex() * 64)[:64],
        network_id=b.network_id,
        bridge=b.ifname,
        host_ifname=host_ifname,
        netns_path=ns.path,
        ifname="eth0",
        address=IPv4Interface(f"{ip}/{b.subnet.prefixlen}"),
        mac="02:42:" + ":".join(f"{x:02x}" for x in ip.packed),
        mtu=b.mtu,
        default_gateway=None if b.internal or not gw else b.gateway.ip,
    )


def ip(e: EndpointSpec) -> str:
    return str(e.address.ip)


def pings(ns: Netns, dst: str) -> bool:
    return ns.ok("ping", "-c1", "-W1", "-q", dst)


def links(ns: Netns) -> dict[str, dict[str, Any]]:
    out = ns.run("ip", "-j", "-d", "link", "show").stdout
    return {link["ifname"]: link for link in json.loads(out)}


def nft_table(host: Netns) -> list[dict[str, Any]] | None:
    cp = host.run("nft", "-j", "list", "table", "ip", "overlayd", check=False)
    return json.loads(cp.stdout)["nftables"] if cp.returncode == 0 else None


def masqueraded(host: Netns) -> set[str]:
    """Source prefixes with a masquerade rule in our table."""
    found = set()
    for item in nft_table(host) or []:
        rule = item.get("rule")
        if rule and any("masquerade" in x for x in rule["expr"]):
            for x in rule["expr"]:
                right = x.get("match", {}).get("right")
                if isinstance(right, dict) and "prefix" in right:
                    found.add(f"{right['prefix']['addr']}/{right['prefix']['len']}")
    return found


def foreign_veth(host: Netns, name: str) -> None:
    host.run("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    host.run("ip", "link", "set", name, "alias", "not-overlayd", "up")


def stable(link: dict[str, Any]) -> dict[str, Any]:
    """What must not change on a device we do not own (counters and timers excluded)."""
    keys = ("ifindex", "flags", "mtu", "address", "ifalias", "master", "link_netnsid")
    return {k: link.get(k) for k in keys}


TCP_ONCE = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen()\n"
    "c,a=s.accept();c.sendall(b'hello '+a[0].encode());c.close()\n"
)
TCP_GET = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2)\n"
    "print(c.recv(100).decode())\n"
)
ECHO_SERVER = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen()\n"
    "while True:\n"
    " c,a=s.accept();f=c.makefile('rwb')\n"
    " for line in f: f.write(a[0].encode()+b' '+line);f.flush()\n"
)
ECHO_CLIENT = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5);f=c.makefile('rwb')\n"
    "print('connected',flush=True)\n"
    "for line in sys.stdin:\n"
    " f.write(line.encode());f.flush();print(f.readline().decode().strip(),flush=True)\n"
)


def tcp_get(lab_: Lab, server: Netns, client: Netns, dst: str, port: int) -> str:
    lab_.spawn(server, sys.executable, "-c", TCP_ONCE, str(port))
    return wait_until(
        lambda: client.run(sys.executable, "-c", TCP_GET, dst, str(port), timeout=5).stdout.strip(),
        what=f"tcp {dst}:{port}",
    )


@pytest.fixture
def world() -> Iterator[Lab]:
    with lab() as it:
        yield it


def no_errors(results: list[dict[str, Any]]) -> None:
    for r in results:
        assert r["errors"] == [] and r["gone"] == [], r


# --- tests ----------------------------------------------------------------------------------


def test_connectivity_isolation_and_idempotency(world: Lab) -> None:
    host, c1, c2, c3, c4 = (world.netns(n) for n in ("host", "c1", "c2", "c3", "c4"))
    foreign_veth(host, "fv0")
    before = stable(links(host)["fv0"])
    a = bridge("a", "obr-a", 1)
    b = bridge("b", "obr-b", 2, internal=True)
    c = bridge("c", "obr-c", 3, icc=False)
    e1, e2 = endpoint(a, c1, "ove-c1", 2), endpoint(a, c2, "ove-c2", 3)
    e3, e4 = endpoint(c, c3, "ove-c3", 2), endpoint(b, c4, "ove-c4", 2)
    desired = Desired(frozenset({a, b, c}), frozenset({e1, e2, e3, e4}))

    # two concurrent calls on one Dataplane: serialized, so the second finds nothing to do
    first, second = reconcile(host, desired, rounds=2, concurrent=True)
    no_errors([first, second])
    assert len(first["applied"]) >= 10 and second["applied"] == []
    assert reconcile(host, desired, rounds=2) == [{"applied": [], "gone": [], "errors": []}] * 2

    # same bridge: ICMP and TCP both ways
    assert wait_until(lambda: pings(c1, ip(e2)), what="c1 -> c2")
    assert pings(c2, ip(e1))
    assert tcp_get(world, c2, c1, ip(e2), 8080) == f"hello {ip(e1)}"
    # other bridges are unreachable, though each reaches its own gateway
    assert pings(c3, str(c.gateway.ip)) and pings(c4, str(b.gateway.ip))
    assert not pings(c3, ip(e1))
    assert not pings(c1, ip(e3))
    assert not pings(c1, ip(e4))
    # container side as specified
    inside = links(c1)["eth0"]
    assert (inside["address"], inside["mtu"], inside["operstate"]) == (e1.mac, 1500, "UP")
    assert "default via 172.31.1.1 dev eth0" in c1.run("ip", "route").stdout
    assert c4.run("ip", "route", "show", "default").stdout.strip() == ""
    # nft: NAT only for the non-internal bridges; forwarding on
    assert masqueraded(host) == {str(a.subnet), str(c.subnet)}
    assert host.run("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    # host side: aliases, masters; the foreign veth untouched
    hl = links(host)
    assert hl["obr-a"]["ifalias"] == f"overlayd:{a.network_id}"
    assert hl["ove-c1"]["ifalias"] == f"overlayd:{a.network_id}:{e1.endpoint_id}"
    assert hl["ove-c1"]["master"] == "obr-a" and hl["ove-c3"]["master"] == "obr-c"
    assert stable(hl["fv0"]) == before

    # the isolation is our table's doing: drop it by hand and c3 gets through; the next
    # reconcile notices and puts it back, and nothing else
    host.run("nft", "delete", "table", "ip", "overlayd")
    assert wait_until(lambda: pings(c3, ip(e1)), what="c3 -> c1 without our rules")
    assert reconcile(host, desired)[0]["applied"] == ["ApplyNft"]
    assert not pings(c3, ip(e1))


def test_icc_false_drops_traffic_between_ports(world: Lab) -> None:
    """The rule sees frames bridged port to port only through br_netfilter: a host where
    nothing switched it on (no Docker, no kube-proxy) gets it switched on, as Docker does."""
    host, c1, c2 = (world.netns(n) for n in ("host", "c1", "c2"))
    c = bridge("c", "obr-c", 3, icc=False)
    e1, e2 = endpoint(c, c1, "ove-c1", 2), endpoint(c, c2, "ove-c2", 3)
    knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    host.run("sh", "-c", f"test -e {knob} || modprobe br_netfilter; echo 0 > {knob}")
    no_errors(reconcile(host, Desired(frozenset({c}), frozenset({e1, e2}))))
    assert host.run("cat", knob).stdout == "1\n"
    assert wait_until(lambda: pings(c1, str(c.gateway.ip)), what="c1 -> gateway")
    assert not pings(c1, ip(e2))


def uplink(host, outside, name: str, net24: str) -> None:  # type: ignore[no-untyped-def]
    """An "uplink" veth from the host (<net24>.1) to a namespace standing for the outside
    world (<net24>.2)."""
    host.run("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    host.run("ip", "link", "set", f"{name}p", "netns", outside.path)
    host.run("ip", "addr", "add", f"{net24}.1/24", "dev", name)
    host.run("ip", "link", "set", name, "up")
    outside.run("ip", "addr", "add", f"{net24}.2/24", "dev", f"{name}p")
    outside.run("ip", "link", "set", f"{name}p", "up")


def test_restart_and_rule_changes_keep_traffic(world: Lab) -> None:
    host, c1, c2, outside = (world.netns(n) for n in ("host", "c1", "c2", "outside"))
    uplink(host, outside, "up0", "10.200.0")
    a = bridge("a", "obr-a", 1, mtu=1450)
    e1, e2 = endpoint(a, c1, "ove-c1", 2), endpoint(a, c2, "ove-c2", 3)
    desired = Desired(frozenset({a}), frozenset({e1, e2}))
    no_errors(reconcile(host, desired))
    assert links(host)["obr-a"]["mtu"] == links(c1)["eth0"]["mtu"] == 1450

    # a long-lived TCP connection out through the masquerade
    world.spawn(outside, sys.executable, "-c", ECHO_SERVER, "9000")
    argv = (sys.executable, "-c", ECHO_CLIENT, "10.200.0.2", "9000")
    client = wait_until(lambda: _connected(world.interactive(c1, *argv)), what="echo client")
    client.send_line("one")
    assert client.read_line() == "10.200.0.1 one"  # the outside saw the host: NAT works

    # the nft table is re-created (another bridge appears): conntrack'd flows keep going
    b = bridge("b", "obr-b", 2)
    grown = replace(desired, bridges=desired.bridges | {b})
    (r,) = reconcile(host, grown)
    assert r["applied"] == ["CreateBridge:obr-b", "AddAddr:obr-b", "ApplyNft"]
    client.send_line("two")
    assert client.read_line() == "10.200.0.1 two"

    # "crash": a new Dataplane (new process) adopts everything and changes nothing
    assert reconcile(host, grown) == [{"applied": [], "gone": [], "errors": []}]
    client.send_line("three")
    assert client.read_line() == "10.200.0.1 three"
    assert pings(c1, ip(e2))


def _connected(client: Any) -> Any:
    if client.read_line(timeout=3) != "connected":
        return None
    return client


def test_removal_is_exact_and_foreign_devices_survive(world: Lab) -> None:
    host, c1, c2, c3 = (world.netns(n) for n in ("host", "c1", "c2", "c3"))
    foreign_veth(host, "fv0")
    host.run("ip", "link", "add", "obr-x", "type", "bridge")  # looks like ours, is not
    a, c = bridge("a", "obr-a", 1), bridge("c", "obr-c", 3)
    x = bridge("x", "obr-x", 4)
    e1, e2, e3 = (
        endpoint(a, c1, "ove-c1", 2),
        endpoint(a, c2, "ove-c2", 3),
        endpoint(c, c3, "ove-c3", 2),
    )
    full = Desired(frozenset({a, c, x}), frozenset({e1, e2, e3}))
    (r,) = reconcile(host, full)
    assert r["gone"] == [] and len(r["errors"]) == 1 and "obr-x" in r["errors"][0]
    assert "overlayd" not in json.dumps(links(host)["obr-x"])
    before = {n: stable(link) for n, link in links(host).items() if n in ("fv0", "obr-x")}
    rules_before = json.dumps(nft_table(host))
    assert "obr-x" not in rules_before  # a foreign name never makes it into our rules

    # one endpoint leaves: exactly its veth goes (its container end with it)
    (r,) = reconcile(host, replace(full, endpoints=frozenset({e1, e3})))
    assert r["applied"] == ["DelLink:ove-c2"]
    wait_until(lambda: "eth0" not in links(c2), what="c2's eth0 gone")
    assert pings(c1, str(a.gateway.ip))

    # a network leaves: its endpoint, its bridge and its rules go, nothing else
    (r,) = reconcile(host, Desired(frozenset({a, x}), frozenset({e1})))
    assert r["applied"] == ["ApplyNft", "DelLink:ove-c3", "DelLink:obr-c"]
    hl = links(host)
    assert {"obr-c", "ove-c3", "ove-c2"}.isdisjoint(hl) and {"obr-a", "ove-c1"} <= set(hl)
    assert "obr-c" not in json.dumps(nft_table(host)) and masqueraded(host) == {str(a.subnet)}

    # nothing desired: every overlayd device and our table go; foreign ones stay as they were
    (r,) = reconcile(host, Desired())
    assert sorted(r["applied"]) == ["ApplyNft", "DelLink:obr-a", "DelLink:ove-c1"]
    hl = links(host)
    assert not any((link.get("ifalias") or "").startswith("overlayd:") for link in hl.values())
    assert {n: stable(hl[n]) for n in before} == before
    assert nft_table(host) is None


def test_vanished_container_is_reported(world: Lab) -> None:
    host, c1, c2 = (world.netns(n) for n in ("host", "c1", "c2"))
    a = bridge("a", "obr-a", 1)
    e1, e2 = endpoint(a, c1, "ove-c1", 2), endpoint(a, c2, "ove-c2", 3)
    desired = Desired(frozenset({a}), frozenset({e1, e2}))
    no_errors(reconcile(host, desired))
    world.delete_netns(c2)
    (r,) = reconcile(host, desired)
    assert r == {"applied": [], "gone": [e2.endpoint_id], "errors": []}
    # the daemon drops it; whatever is left of its veth goes with the next call
    reconcile(host, replace(desired, endpoints=frozenset({e1})))
    wait_until(lambda: "ove-c2" not in links(host), what="ove-c2 gone")
    assert reconcile(host, replace(desired, endpoints=frozenset({e1}))) == [
        {"applied": [], "gone": [], "errors": []}
    ]


def test_container_side_failure_is_reported_then_repaired(world: Lab) -> None:
    host, c1 = world.netns("host"), world.netns("c1")
    c1.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other")  # in the way
    a = bridge("a", "obr-a", 1)
    e1 = endpoint(a, c1, "ove-c1", 2)
    (r,) = reconcile(host, Desired(frozenset({a}), frozenset({e1})))
    assert r["errors"] and "CreateEndpoint" in r["errors"][0]
    # the failed pair was taken away whole: nothing in the host, no stray peer inside
    assert "ove-c1" not in links(host)
    assert set(links(c1)) == {"lo", "eth0", "other"}
    # the daemon picks a free name and the next call just creates it
    fixed = replace(e1, ifname="eth1")
    (r,) = reconcile(host, Desired(frozenset({a}), frozenset({fixed})))
    assert r == {"applied": ["CreateEndpoint:ove-c1"], "gone": [], "errors": []}
    assert wait_until(lambda: pings(c1, str(a.gateway.ip)), what="c1 -> gateway")
    assert set(links(c1)) == {"lo", "eth0", "other", "eth1"}


async def test_resolve_container_and_free_ifname(world: Lab) -> None:
    from dataplane.netns import free_ifname, resolve_container

    c1 = world.netns("c1")
    sleeper = world.spawn(c1, "sleep", "60")
    by_name = resolve_container(c1.name)
    assert by_name.path == c1.path and by_name.name == c1.name
    by_pid = wait_until(
        lambda: (r := resolve_container(str(sleeper.pid))).key == by_name.key and r,
        what="sleep entered the netns",
    )
    assert by_pid.path == f"/proc/{sleeper.pid}/ns/net"
    assert resolve_container(c1.path).key == by_name.key
    assert await free_ifname(c1.path) == "eth0"
    c1.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth2")
    assert await free_ifname(c1.path) == "eth1"
    with pytest.raises(LookupError):
        await free_ifname(f"/run/netns/{world.prefix}missing")
    assert not os.path.exists(f"/run/netns/{world.prefix}missing")  # flags=0: not created


if __name__ == "__main__":  # the driver: runs inside the host netns, JSON in and out
    json.dump(asyncio.run(_driver(json.load(sys.stdin))), sys.stdout)


def test_nothing_from_outside_opens_a_connection_to_a_container(world: Lab) -> None:
    """Docker's default: a host on the LAN that routes a bridge's subnet via this host
    reaches nothing behind it (no published ports here), while containers still get out
    through the masquerade and their replies come back."""
    host, c1, outside = (world.netns(n) for n in ("host", "c1", "outside"))
    uplink(host, outside, "up1", "10.201.0")
    a = bridge("a", "obr-a", 1)
    e1 = endpoint(a, c1, "ove-c1", 2)
    no_errors(reconcile(host, Desired(frozenset({a}), frozenset({e1}))))
    outside.run("ip", "route", "add", str(a.subnet), "via", "10.201.0.1")  # the LAN's route
    assert wait_until(lambda: pings(c1, "10.201.0.2"), what="c1 -> outside (masqueraded)")
    assert not pings(outside, ip(e1))


def test_container_interfaces_get_no_ipv6_link_local_address(world: Lab) -> None:
    """No rule here filters IPv6: an fe80:: address derived from the MAC would let
    containers on docker_gwbridge (from different overlays) talk past the IPv4 rules."""
    host, c1 = world.netns("host"), world.netns("c1")
    a = bridge("a", "obr-a", 1)
    e1 = endpoint(a, c1, "ove-c1", 2)
    no_errors(reconcile(host, Desired(frozenset({a}), frozenset({e1}))))
    assert c1.run("ip", "-6", "-o", "addr", "show", "dev", "eth0").stdout == ""
    assert "addrgenmode none" in c1.run("ip", "-d", "link", "show", "eth0").stdout
