"""Encrypted vs plain overlay inside user-mode Linux (the host kernel has no ESP), as JSON.

    .venv/bin/python -m tests.bench.overlay_encrypted [--seconds 5]

Two hosts on an underlay bridge, each with a plain and an encrypted overlay network and
one container on each (the data-plane lab of tests/integration, drivers without nft);
iperf3 (1 TCP stream) and ping RTT (median of 20) across the underlay, the plain overlay
and the encrypted one. UML runs the kernel as a user process: absolute figures are far
below the host's, the ratios between the three paths are what this is for.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

INSIDE = "--inside"


def inside(seconds: int) -> dict[str, Any]:
    from dataplane.model import Desired, IpsecSpec
    from dataplane.mtu import overlay_mtu
    from tests.integration.test_dataplane_overlay_lab import (
        as_peer,
        endpoint,
        overlay,
        overlay_lab,
        wait_ping,
    )

    out: dict[str, Any] = {}
    with overlay_lab(nft=False) as ol:
        h1, h2 = ol.add_hosts(2)
        enc = replace(overlay("e", 4097, "10.77.0.0/24", mtu=overlay_mtu(1500, encrypted=True),
                              encrypted=True), dstport=4790)  # fmt: skip
        plain = overlay("p", 4098, "10.78.0.0/24")
        c1, c2 = ol.world.netns("c1"), ol.world.netns("c2")
        e1, e2 = endpoint(enc, c1, 11), endpoint(enc, c2, 12)
        p1, p2 = endpoint(plain, c1, 11, "eth1"), endpoint(plain, c2, 12, "eth1")
        keys = (b"\x01" * 16, b"\x02" * 16)
        for me, other, mine, theirs, ep, op in ((h1, h2, [e1, p1], [e2, p2], "1", "2"),
                                                (h2, h1, [e2, p2], [e1, p1], "2", "1")):  # fmt: skip
            spec = IpsecSpec(keys, keys[0], ep * 16, ((other.vtep, op * 16),), 4790)
            r = me.reconcile(Desired(endpoints=frozenset(mine), overlays=frozenset({enc, plain}),
                                     peers=frozenset(as_peer(e, other) for e in theirs),
                                     vtep=me.vtep, ipsec=spec))  # fmt: skip
            assert not r["errors"], r
        paths = {"underlay": (h1.ns, h2.ns, str(h2.vtep)),
                 "plain": (c1, c2, str(p2.address.ip)),
                 "encrypted": (c1, c2, str(e2.address.ip))}  # fmt: skip
        for name in ("plain", "encrypted"):
            assert wait_ping(c1, paths[name][2]), name
        for name, (client, server, ip) in paths.items():
            pings = client.run("ping", "-c", "20", "-i", "0.05", ip).stdout
            rtt = statistics.median(float(x) for x in re.findall(r"time=([\d.]+)", pings))
            srv = ol.world.spawn(server, "iperf3", "-s", "-1")
            time.sleep(0.5)
            res = client.run("iperf3", "-c", ip, "-t", str(seconds), "-J", timeout=seconds + 60)
            srv.wait(timeout=30)
            gbit = json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
            out[name] = {"rtt_ms": rtt, "gbit_s": round(gbit, 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument(INSIDE, action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        print("RESULT " + json.dumps(inside(args.seconds)), flush=True)
        return
    from tests.integration.uml import VENV_PYTHON, run_in_uml

    start = time.monotonic()
    r = run_in_uml(f"{VENV_PYTHON} -m tests.bench.overlay_encrypted {INSIDE} "
                   f"--seconds {args.seconds}", timeout=600)  # fmt: skip
    line = next((x for x in r.output.splitlines() if x.startswith("RESULT ")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"bench failed inside UML:\n{r.output[-3000:]}")
    res = json.loads(line[len("RESULT ") :])
    res["ratios"] = {
        "encrypted_over_plain_throughput": round(res["encrypted"]["gbit_s"] / res["plain"]["gbit_s"], 3),
        "plain_over_underlay_throughput": round(res["plain"]["gbit_s"] / res["underlay"]["gbit_s"], 3),
        "encrypted_rtt_over_plain": round(res["encrypted"]["rtt_ms"] / res["plain"]["rtt_ms"], 3),
    }  # fmt: skip
    res.update(bench="overlay_encrypted", kernel="Debian user-mode-linux 6.1 (in UML)",
               cipher="rfc4106(gcm(aes)) 128-bit ICV, ESN", seconds=args.seconds,
               wall_s=round(time.monotonic() - start, 1),
               date=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
