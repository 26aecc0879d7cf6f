"""Gossip figures at 1000 simulated nodes (issue 5): prints one JSON object.

Per loss rate (0 / 5 / 20 %): idle bandwidth per node, dissemination time to
99.9 % and 100 % of nodes (SWIM metadata update and a table endpoint record),
first and full detection of a killed node, and false positives (live nodes
declared dead) over a window with one CPU-starved node lagging up to 200 ms.
Seeded, simulated time, one process, real codec + XChaCha20-Poly1305 frames.
The cluster starts converged (SimNet.bootstrap). Takes ~10-15 minutes at
1000 nodes on 2 cores; `--nodes 200` for a quick look.

    .venv/bin/python tests/bench/gossip_sim.py [--nodes 1000] [--losses 0,0.05,0.2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from swim_scenarios import (
    NET,
    cluster,
    detection,
    false_positives,
    idle_bandwidth,
    swim_dissemination,
    table_dissemination,
)

ANCHORS = {
    "dissemination_999_s": {"serf_model_1000_nodes": 2.0, "goal": 1.0},
    "idle_kbit_per_node": {"serf": 330, "goal": "below"},
    "full_detection_s": {"memberlist_defaults_10_nodes": 5.6, "goal_3_5_hosts": 1.5},
}


def r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def one(n: int, loss: float, seed: int, fp_window: float) -> dict[str, object]:
    t0 = time.monotonic()
    net = cluster(n, seed, loss=loss, networks=(NET,))
    bw = idle_bandwidth(net, 3.0)
    sw = swim_dissemination(net)
    tb = table_dissemination(net)
    det = detection(net, "n17", window=15.0)
    net.make_slow("n3", 0.2)
    fps = false_positives(net, fp_window, exclude={"n17"})
    return {
        "nodes": n,
        "loss": loss,
        "seed": seed,
        "bytes_per_node_per_s": round(bw),
        "kbit_per_node_per_s": round(bw * 8 / 1000, 1),
        "swim_dissemination_999_s": r(sw.p999),
        "swim_dissemination_100_s": r(sw.p100),
        "table_dissemination_999_s": r(tb.p999),
        "table_dissemination_100_s": r(tb.p100),
        "first_detection_s": r(det.first),
        "full_detection_s": r(det.full),
        "detected_by": det.detected_by,
        "false_positive_window_s": fp_window,
        "false_positives": len(fps),
        "false_positive_victims": sorted({v for _, _, v in fps}),
        "wall_s": round(time.monotonic() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--losses", default="0,0.05,0.2")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fp-window", type=float, default=10.0)
    args = ap.parse_args()
    runs = [one(args.nodes, float(x), args.seed, args.fp_window) for x in args.losses.split(",")]
    print(json.dumps({"bench": "gossip_sim", "anchors": ANCHORS, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
