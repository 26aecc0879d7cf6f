"""API latency and idle RSS of overlayd, measured like Docker's figures: curl over the socket.

Prints one JSON object. Run as root from the repo: `make bench` (or
`.venv/bin/python tests/bench/api_latency.py --calls 20`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.harness import Host, make_host, wait_for

DOCKER = {"create_ms": 2.1, "list_ms": 1.6, "inspect_ms": 1.4, "rss_mb": 103}


def curl_ms(host: Host, method: str, path: str, body: str | None = None) -> float:
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
           "--unix-socket", host.socket, "-X", method, f"http://localhost{path}"]  # fmt: skip
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "-d", body]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    status, seconds = int(out[0]), float(out[1])
    assert status < 300, f"{method} {path} answered {status}"
    return seconds * 1000


def bridge_visible_ms(host: Host, name: str) -> float:
    """From the create call's start until `ip link` in the host netns shows the bridge."""
    start = time.perf_counter()
    reply = host.request("POST", "/v1.47/networks/create", {"Name": name})
    ifname = f"br-{reply.json()['Id'][:12]}"
    wait_for(
        lambda: host.ns.sh("ip", "link", "show", ifname, check=False).returncode == 0,
        interval=0,
        what=f"{ifname} in the kernel",
    )
    return (time.perf_counter() - start) * 1000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    host = make_host("b")
    try:
        host.start("--log-level", "info")
        assert host.proc is not None
        idle = wait_for(lambda: rss_mb(host.proc.pid), what="RSS")
        create = [
            curl_ms(host, "POST", "/v1.47/networks/create", json.dumps({"Name": f"bench{i}"}))
            for i in range(args.calls)
        ]
        listing = [curl_ms(host, "GET", "/v1.47/networks") for _ in range(args.calls)]
        inspect = [curl_ms(host, "GET", "/v1.47/networks/bench0") for _ in range(args.calls)]
        bridge_ms = [bridge_visible_ms(host, f"vis{i}") for i in range(5)]
        result = {
            "calls": args.calls,
            "create_ms_median": round(statistics.median(create), 3),
            "list_ms_median": round(statistics.median(listing), 3),
            "inspect_ms_median": round(statistics.median(inspect), 3),
            # create answers after the fsync; the bridge follows. Upper bound: includes
            # the ~ms cost of the `ip link` probe itself.
            "create_to_bridge_in_kernel_ms_median": round(statistics.median(bridge_ms), 3),
            "networks_at_end": args.calls + 8,
            "rss_idle_mb": round(idle, 1),
            "rss_after_mb": round(rss_mb(host.proc.pid), 1),
            "docker_20_10": DOCKER,
        }
        print(json.dumps(result, indent=2))
    finally:
        host.close()


if __name__ == "__main__":
    main()
