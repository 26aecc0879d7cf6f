"""Real leader failover: 3 (or 5) overlayd managers in namespaces, kill -9 the leader,
time until another manager leads and until a write (network create) succeeds there.
Prints one JSON object. Needs root.

    .venv/bin/python -m tests.bench.swarm_failover [--managers 3] [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

from tests.integration.cluster import cluster_of, form_swarm
from tests.integration.harness import Host, wait_for


def leads(host: Host) -> bool:
    try:
        text = host.request("GET", "/metrics", timeout=2).body.decode()
    except OSError:
        return False
    return re.search(r"^overlayd_swarm_leader 1\.0$", text, re.M) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--managers", type=int, default=3)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    elect, write = [], []
    with cluster_of(args.managers, tag="fo") as c:
        h = c.hosts
        form_swarm(c, "manager")
        for trial in range(args.trials):
            leader = wait_for(lambda: next((x for x in h if leads(x)), None), timeout=15,
                              what="a leader")  # fmt: skip
            others = [x for x in h if x is not leader]
            wait_for(lambda o=others: all(x.docker("node", "ls", check=False).returncode == 0
                                          for x in o), timeout=15, what="followers serving reads")  # fmt: skip
            leader.kill9()
            start = time.monotonic()
            wait_for(lambda o=others: any(leads(x) for x in o), timeout=30, interval=0.01,
                     what="a new leader")  # fmt: skip
            elect.append(time.monotonic() - start)
            others[0].docker("network", "create", "-d", "overlay", f"fo-{trial}", timeout=30)
            write.append(time.monotonic() - start)
            leader.start()
    doc = {
        "managers": args.managers,
        "trials": args.trials,
        "new_leader_s": {"p50": round(statistics.median(elect), 3), "max": round(max(elect), 3),
                         "all": [round(x, 3) for x in elect]},
        "first_write_s": {"p50": round(statistics.median(write), 3), "max": round(max(write), 3)},
        "swarmkit_default": "election after 10-20 s (1 s tick, ElectionTick 10)",
        "goal": "<= 2 s",
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
