"""Gossip as the daemons run it: 5 overlayd hosts in a swarm find each other, count
endpoint records per network, and all notice a killed host within about a second."""

from __future__ import annotations

import re
import time

from tests.integration.cluster import cluster_of, form_swarm
from tests.integration.harness import Host, wait_for


def metric(host: Host, name: str, labels: str) -> float:
    text = host.request("GET", "/metrics").body.decode()
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_five_daemons_gossip_and_detect_a_killed_host() -> None:
    with cluster_of(5, tag="gd") as c:
        h = c.hosts
        form_swarm(c)
        wait_for(lambda: all(metric(x, "overlayd_gossip_members", 'state="alive"') == 5 for x in h),
                 timeout=15, what="every daemon to see 5 alive members")  # fmt: skip

        net = h[0].docker("network", "create", "-d", "overlay", "--attachable", "gd-net").stdout.strip()
        wait_for(lambda: all(x.docker("network", "inspect", "gd-net", check=False).returncode == 0
                             for x in h), timeout=10, what="gd-net everywhere")  # fmt: skip
        for i, host in enumerate(h):
            host.docker("network", "connect", "gd-net", host.container(f"e{i}").name)
        wait_for(lambda: all(metric(x, "overlayd_gossip_table_entries", f'network="{net}"') == 5
                             for x in h), timeout=10, what="5 records in every table")  # fmt: skip

        h[4].kill9()
        h[4].ns.sh("ip", "link", "set", "eth0", "down")  # the whole host is gone
        start = time.monotonic()
        wait_for(lambda: all(metric(x, "overlayd_gossip_members", 'state="dead"') == 1 for x in h[:4]),
                 timeout=10, what="every peer to declare the killed host dead")  # fmt: skip
        detected = time.monotonic() - start
        assert detected < 5, f"detection took {detected:.2f} s"
        wait_for(lambda: all(metric(x, "overlayd_gossip_table_entries", f'network="{net}"') == 4
                             for x in h[:4]), timeout=5, what="its record withdrawn")  # fmt: skip
