"""Losing quorum and getting it back: a manager alone answers writes with a clear 503,
reads what it can, and `swarm init --force-new-cluster` makes it a working one-manager
swarm again with everything that was committed."""

from __future__ import annotations

import json

from tests.integration.cluster import cluster_of, form_swarm
from tests.integration.harness import wait_for


def test_quorum_loss_then_force_new_cluster() -> None:
    with cluster_of(3, tag="fq") as c:
        h = c.hosts
        form_swarm(c, "manager")
        h[0].docker("network", "create", "-d", "overlay", "kept-net")
        wait_for(lambda: h[2].docker("network", "inspect", "kept-net", check=False).returncode == 0,
                 timeout=10, what="kept-net replicated")  # fmt: skip
        h[1].kill9()
        h[2].kill9()
        res = h[0].docker("network", "create", "-d", "overlay", "lost-net", check=False, timeout=30)
        assert res.returncode != 0 and "does not have a leader" in res.stderr
        res = h[0].docker("node", "ls", check=False, timeout=30)
        assert res.returncode != 0 and "does not have a leader" in res.stderr
        # Local reads still answer: the network list comes from the local copy.
        assert "kept-net" in h[0].docker("network", "ls", "--format", "{{.Name}}").stdout

        h[0].docker("swarm", "init", "--force-new-cluster", "--advertise-addr", c.addr(0))
        wait_for(lambda: h[0].docker("node", "ls", check=False).returncode == 0,
                 timeout=15, what="the forced cluster to answer")  # fmt: skip
        assert "kept-net" in h[0].docker("network", "ls", "--format", "{{.Name}}").stdout
        h[0].docker("network", "create", "-d", "overlay", "new-net")
        info = json.loads(h[0].docker("info", "--format", "{{json .Swarm}}").stdout)
        assert info["ControlAvailable"] is True and info["LocalNodeState"] == "active"
