"""Simulated raft leader failover with the default RaftConfig at a 100 ms tick.

Kills the leader of a healthy cluster (LAN latencies, a writing client) at a
random moment and measures, in simulated time, until a new leader exists and
until it has committed its first entry. Prints one JSON object; compare with
swarmkit (1 s tick, election 10 ticks: 10-20 s before a follower even campaigns).

`.venv/bin/python tests/bench/raft_failover.py --trials 500`
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))

from raft_cluster import Cluster
from raft_kv import ClientConfig
from raft_net import LinkProfile
from raft_node import NodeOptions

from manager.raft import RaftConfig, Role

SWARMKIT_S = {"follower_wait_min": 10.0, "follower_wait_max": 20.0}


def trial(seed: int, n: int) -> tuple[float, float]:
    """(ms to a new leader, ms to its first commit) after killing the leader."""
    cl = Cluster(
        seed,
        n=n,
        cfg=RaftConfig(),
        opts=NodeOptions(tick_ms=100.0, fsync_ms=(0.5, 4.0)),
        profile=LinkProfile(base_ms=(0.1, 0.5), jitter_ms=0.2),
        clients=1,
        client_cfg=ClientConfig(think_ms=(5.0, 20.0)),
        drift=0.01,
    )
    old = cl.run_until_leader()
    cl.run(500 + cl.rng.uniform(0, 1000))
    old = cl.leader() or old
    cl.crash(old.id)
    t0 = cl.net.now
    elected = None
    while True:
        cl.run(1.0)
        ld = cl.leader()
        if ld is None or ld.core is None or ld.id == old.id or ld.core.role != Role.LEADER:
            continue
        if elected is None:
            elected = cl.net.now - t0
        if ld.core.log_term(ld.core.commit_index) == ld.core.term:
            return elected, cl.net.now - t0
        if cl.net.now - t0 > 30_000:
            raise RuntimeError(f"seed {seed}: no failover in 30 s")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=300)
    args = ap.parse_args()
    out: dict[str, object] = {
        "tick_ms": 100,
        "config": {
            "heartbeat_tick": RaftConfig().heartbeat_tick,
            "election_tick": RaftConfig().election_tick,
        },
        "trials": args.trials,
        "swarmkit_s": SWARMKIT_S,
    }
    for n in (3, 5):
        elected, committed = [], []
        for seed in range(args.trials):
            e, c = trial(seed, n)
            elected.append(e)
            committed.append(c)
        out[f"{n}_managers"] = {
            "elected_ms": {
                "p50": pct(elected, 50),
                "p99": pct(elected, 99),
                "max": round(max(elected), 1),
            },
            "first_commit_ms": {
                "p50": pct(committed, 50),
                "p99": pct(committed, 99),
                "max": round(max(committed), 1),
                "mean": round(statistics.fmean(committed), 1),
            },
            "within_2s": sum(1 for c in committed if c <= 2000) / len(committed),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
