"""Overlay data-plane figures on 3 hosts in namespaces, printed as JSON (needs root).

    .venv/bin/python -m tests.bench.overlay_fdb [--seconds 10] [--peers 10000]

- program_peers_ms: one reconcile that programs `--peers` remote endpoints (FDB + neigh
  each) into a sandbox (goal <= 1000 ms for 10 000), and the fresh no-op reconcile after it
  (dump of everything + plan: the periodic safety net's cost);
- peer_add_ms: one more remote endpoint until its neigh entry is in the kernel, median of
  20, with the large table present and in a small network: the reconcile inside the
  driver, and the whole request to the driver process (JSON both ways);
- first_endpoint_ms: the first local endpoint of a network (sandbox, br0, vxlan, veth);
- rtt_ms: median of 20 pings container->container across hosts vs host->host;
- iperf3: 1 TCP stream for --seconds, overlay / underlay throughput ratio.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from dataplane.model import Desired, PeerSpec
from dataplane.mtu import overlay_mtu
from tests.integration.nshelpers import Netns
from tests.integration.test_dataplane_overlay_lab import (
    Host,
    OverlayLab,
    as_peer,
    clean,
    endpoint,
    overlay,
    overlay_lab,
    peer,
    sandbox_neigh,
    wait_ping,
)


def _rtts(ns: Netns, dst: str, n: int = 20) -> float:
    out = ns.run("ping", "-c", str(n), "-i", "0.05", dst).stdout
    return statistics.median(float(x) for x in re.findall(r"time=([\d.]+) ms", out))


def _iperf(lab: OverlayLab, server: Netns, client: Netns, dst: str, seconds: int) -> float:
    lab.world.spawn(server, "iperf3", "-s", "-1")
    time.sleep(0.3)
    out = client.run("iperf3", "-c", dst, "-t", str(seconds), "-J", timeout=seconds + 30).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def _synthetic(net: str, base: IPv4Address, n: int, first: int) -> list[PeerSpec]:
    """n remote endpoints behind 100 made-up VTEPs (no traffic goes to them)."""
    out = []
    for i in range(n):
        ip = base + first + i
        mac = "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)
        out.append(PeerSpec(net, ip, mac, IPv4Address("192.0.2.100") + i % 100))
    return out


def _peer_adds(
    host: Host, net: str, base: IPv4Address, first: int, n: int = 20
) -> dict[str, float]:
    inside, wall = [], []
    for p in _synthetic(net, base, n, first):
        start = time.perf_counter()
        r = clean(host.reconcile(add_peers=[peer(p)], fresh=False))
        wall.append((time.perf_counter() - start) * 1000)
        inside.append(r["ms"])
        assert r["applied"] == ["ProgramPeers:+1/-0"], r
    assert str(p.ip) in sandbox_neigh(host.sandbox(net))  # there once the reconcile returned
    return {
        "reconcile_median": round(statistics.median(inside), 2),
        "request_median": round(statistics.median(wall), 2),
    }


def run(seconds: int, npeers: int) -> dict[str, Any]:
    result: dict[str, Any] = {"hosts": 3, "peers": npeers}
    with overlay_lab() as lab:
        hosts = lab.add_hosts(3)
        mtu = overlay_mtu(hosts[0].probe_mtu())
        a = overlay("a", 4097, subnet="10.64.0.0/16", mtu=mtu)
        small = overlay("s", 4098, subnet="10.65.0.0/24", mtu=mtu)
        cs = [lab.world.netns(f"c{i}") for i in range(1, 4)]
        eps = [endpoint(a, c, 2 + i) for i, c in enumerate(cs)]
        small_ep = endpoint(small, lab.world.netns("s1"), 2)

        def desired(i: int, extra: frozenset[PeerSpec] = frozenset()) -> Desired:
            peers = frozenset(as_peer(e, hosts[j]) for j, e in enumerate(eps) if j != i)
            return Desired(endpoints=frozenset({eps[i]}), overlays=frozenset({a, small}),
                           peers=peers | extra, vtep=hosts[i].vtep)  # fmt: skip

        first = [clean(h.reconcile(desired(i)))["ms"] for i, h in enumerate(hosts)]
        result["first_endpoint_ms"] = round(statistics.median(first), 2)
        ip1 = str(eps[1].address.ip)
        assert wait_ping(cs[0], ip1)
        result["overlay_mtu"] = mtu
        result["rtt_ms"] = {
            "overlay": _rtts(cs[0], ip1),
            "underlay": _rtts(hosts[0].ns, str(hosts[1].vtep)),
        }
        if shutil.which("iperf3"):
            o = _iperf(lab, cs[1], cs[0], ip1, seconds)
            u = _iperf(lab, hosts[1].ns, hosts[0].ns, str(hosts[1].vtep), seconds)
            result["iperf3"] = {
                "seconds": seconds,
                "overlay_gbit": round(o / 1e9, 2),
                "underlay_gbit": round(u / 1e9, 2),
                "ratio": round(o / u, 3),
            }

        h1, sb = hosts[0], hosts[0].sandbox(a.network_id)
        many = frozenset(_synthetic(a.network_id, a.subnet.network_address, npeers, 1000))
        r = clean(h1.reconcile(desired(0, many), fresh=False))
        assert f"ProgramPeers:+{npeers}/-0" in r["applied"], r
        noop = clean(h1.reconcile(desired(0, many), fresh=True))
        assert noop["applied"] == []
        assert len(sandbox_neigh(sb)) == npeers + 2
        adds = _peer_adds(h1, a.network_id, a.subnet.network_address, 1000 + npeers)
        # back to the 2 real peers (and a first endpoint in the small network)
        s1 = replace(desired(0), endpoints=frozenset({eps[0], small_ep}))
        gone = clean(h1.reconcile(s1, fresh=False))
        result["program_peers_ms"] = {
            "program": r["ms"],
            "fresh_noop": noop["ms"],
            "remove_all": gone["ms"],
        }
        result["peer_add_ms"] = {
            f"with_{npeers}": adds,
            "small_network": _peer_adds(h1, small.network_id, small.subnet.network_address, 50),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="iperf3 duration per direction")
    ap.add_argument("--peers", type=int, default=10_000)
    args = ap.parse_args(argv)
    json.dump(run(args.seconds, args.peers), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
