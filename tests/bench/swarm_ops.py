"""Swarm figures on real daemons in namespaces (issue 4), printed as JSON. Needs root.

- init_s / join_s: `POST /swarm/init` and `POST /swarm/join` wall time (Docker: 0.14 s
  and 0.075 s);
- create: `POST /networks/create -d overlay` on a 3-manager cluster, sent to a follower
  (forwarded to the leader) and to the leader: latency p50/p90, and throughput with
  8 concurrent clients;
- worker_down_s: kill -9 a worker's overlayd → the managers show it `down`
  (Docker: 10.5-12.8 s; goal <= 3 s).

    .venv/bin/python -m tests.bench.swarm_ops [--creates 40]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

from tests.integration.cluster import cluster_of
from tests.integration.harness import Host, wait_for


def timed(host: Host, method: str, path: str, body: object = None) -> float:
    start = time.perf_counter()
    reply = host.request(method, path, body)
    assert reply.status < 300, reply.body
    return time.perf_counter() - start


def is_leader(host: Host) -> bool:
    text = host.request("GET", "/metrics").body.decode()
    return re.search(r"^overlayd_swarm_leader 1\.0$", text, re.M) is not None


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--creates", type=int, default=40)
    args = ap.parse_args()
    doc: dict[str, object] = {}
    with cluster_of(4, tag="so") as c:
        h = c.hosts
        doc["init_s"] = round(timed(h[0], "POST", "/swarm/init", {"AdvertiseAddr": c.addr(0)}), 3)
        tokens = h[0].request("GET", "/swarm").json()["JoinTokens"]
        joins = []
        for i, host in enumerate(h[1:], start=1):
            token = tokens["Manager"] if i < 3 else tokens["Worker"]
            joins.append(timed(host, "POST", "/swarm/join", {
                "RemoteAddrs": [f"{c.addr(0)}:2377"], "JoinToken": token,
                "AdvertiseAddr": c.addr(i)}))  # fmt: skip
        doc["join_s"] = {"manager": [round(x, 3) for x in joins[:2]], "worker": round(joins[2], 3)}
        leader = next(x for x in h[:3] if is_leader(x))
        follower = next(x for x in h[:3] if x is not leader)
        create: dict[str, object] = {}
        for label, host in (("via_leader", leader), ("via_follower", follower)):
            lat = [timed(host, "POST", "/networks/create", {"Name": f"{label}{k}", "Driver": "overlay"})
                   for k in range(args.creates)]  # fmt: skip
            create[label] = {"p50_ms": pct(lat, 0.5), "p90_ms": pct(lat, 0.9)}
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: timed(follower, "POST", "/networks/create",
                                          {"Name": f"tp{k}", "Driver": "overlay"}), range(160)))  # fmt: skip
        create["throughput_per_s_8_clients"] = round(160 / (time.perf_counter() - start), 1)
        doc["create"] = create

        worker = h[3]
        wid = worker.request("GET", "/info").json()["Swarm"]["NodeID"]

        def state() -> str:
            return leader.request("GET", f"/nodes/{wid}").json()["Status"]["State"]

        wait_for(lambda: state() == "ready", timeout=10, what="worker ready")
        worker.kill9()
        start = time.monotonic()
        wait_for(lambda: state() == "down", timeout=30, interval=0.02, what="worker down")
        doc["worker_down_s"] = round(time.monotonic() - start, 3)
    doc["docker"] = {"init_s": 0.14, "join_s": 0.075, "worker_down_s": "10.5-12.8"}
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
