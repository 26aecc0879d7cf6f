"""Two overlayd daemons in a swarm with an encrypted overlay network, run inside
user-mode Linux by test_overlay_encrypted.py; prints one JSON report.

The whole chain: the managers' ipsec key ring replicated to the worker, the connect on
each host, SAs and policies derived on both sides, ESP on the underlay. This UML kernel
has no nftables `ip` family, so the daemons run with --iptables false and the network is
--internal (no docker_gwbridge leg, whose NAT would need it).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from typing import Any

from tests.integration.cluster import cluster_of, form_swarm
from tests.integration.harness import wait_for


def main() -> None:
    report: dict[str, Any] = {}
    with cluster_of(2, tag="enc", start=False) as c:
        h = c.hosts
        for host in h:
            host.start("--iptables", "false")
        form_swarm(c)
        h[0].docker("network", "create", "-d", "overlay", "--attachable", "--internal",
                    "--opt", "encrypted", "--subnet", "10.66.0.0/24", "secret")  # fmt: skip
        wait_for(lambda: h[1].docker("network", "inspect", "secret", check=False).returncode == 0,
                 timeout=30, what="secret on host1")  # fmt: skip
        c0, c1 = h[0].container("a"), h[1].container("b")
        connects = [h[0].docker("network", "connect", "secret", c0.name, check=False),
                    h[1].docker("network", "connect", "secret", c1.name, check=False)]  # fmt: skip
        report["connect"] = [(r.returncode, r.stderr.strip()) for r in connects]
        ip1 = re.search(r"inet (10\.66\.0\.\d+)", c1.sh("ip", "-o", "addr").stdout)
        report["ip"] = ip1.group(1) if ip1 else None
        mtu = re.search(r"mtu (\d+)", c0.sh("ip", "-o", "link", "show", "eth0").stdout)
        report["mtu"] = int(mtu.group(1)) if mtu else None
        dump = c.underlay.popen("tcpdump", "-i", "br0", "-n", "-l", "-q",
                                "ip proto 50 or udp port 4790", stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        time.sleep(0.5)
        ok = False
        if report["ip"]:
            deadline = time.monotonic() + 20
            while not ok and time.monotonic() < deadline:
                ok = c0.sh("ping", "-c1", "-W1", report["ip"], check=False).returncode == 0
        report["ping"] = ok
        if ok:
            c0.sh("ping", "-c", "5", "-i", "0.1", report["ip"], check=False)
        time.sleep(0.2)
        dump.send_signal(signal.SIGINT)
        out, _ = dump.communicate(timeout=10)
        report["wire"] = {"esp": out.count("ESP"), "udp": out.count(".4790")}
        report["xfrm"] = [len(re.findall(r"proto esp spi", x.ns.sh("ip", "xfrm", "state").stdout))
                          for x in h]  # fmt: skip
        # kill -9 of the worker's daemon under a ping flood: the kernel keeps encrypting,
        # the restarted daemon keeps its epoch (its SAs are still there) and changes nothing
        spis = sorted(re.findall(r"spi (0x[0-9a-f]+)", h[1].ns.sh("ip", "xfrm", "state").stdout))
        def xfrm_stat() -> list[dict[str, int]]:
            return [{k: int(v) for k, v in re.findall(r"(\w+)\s+(\d+)",
                                                      x.ns.sh("cat", "/proc/net/xfrm_stat").stdout)
                     if int(v)} for x in h]  # fmt: skip

        before = xfrm_stat()
        flood = c0.popen("ping", "-i", "0.01", "-c", "800", "-q", report["ip"] or "0",
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(0.5)
        h[1].kill9()
        h[1].start("--iptables", "false")
        report["restarted_before_flood_ended"] = flood.poll() is None
        out, _ = flood.communicate(timeout=60)
        report["xfrm_stat_during_restart"] = [before, xfrm_stat()]
        report["restart"] = {
            "ping": out.strip().splitlines()[-2:],
            "same_sas": spis == sorted(re.findall(r"spi (0x[0-9a-f]+)",
                                                  h[1].ns.sh("ip", "xfrm", "state").stdout)),
        }  # fmt: skip
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
