"""Several overlayd hosts on one underlay: host namespaces wired by veth pairs to a
bridge that lives in a namespace of its own (nothing in the root namespace)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import Host, Netns, delete_netns, make_netns, unique

SUBNET = "192.0.2"


@dataclass
class Cluster:
    underlay: Netns
    hosts: list[Host] = field(default_factory=list)

    def addr(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def close(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(Exception):  # tear down the rest regardless
                host.close()
        delete_netns(self.underlay.name)


def add_host(cluster: Cluster, tag: str = "h") -> Host:
    i = len(cluster.hosts)
    ns = make_netns(unique(tag))
    workdir = Path(tempfile.mkdtemp(prefix=f"{ns.name}-"))
    host = Host(ns=ns, workdir=workdir)
    host.extra_args = ("--advertise-addr", cluster.addr(i), "--hostname", f"{tag}{i}")
    cluster.hosts.append(host)
    try:
        u = cluster.underlay
        peer = f"u{i}"
        u.sh("ip", "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        u.sh("ip", "link", "set", peer, "master", "br0", "up")
        ns.sh("ip", "addr", "add", f"{cluster.addr(i)}/24", "dev", "eth0")
        ns.sh("ip", "link", "set", "eth0", "up")
    except Exception:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return host


@contextmanager
def cluster_of(n: int, tag: str = "h", start: bool = True) -> Iterator[Cluster]:
    underlay = make_netns(unique("ul"))
    cluster = Cluster(underlay)
    try:
        underlay.sh("ip", "link", "add", "br0", "type", "bridge")
        underlay.sh("ip", "link", "set", "br0", "up")
        for _ in range(n):
            host = add_host(cluster, tag)
            if start:
                host.start()
        yield cluster
    finally:
        cluster.close()


def form_swarm(cluster: Cluster, role: str = "worker") -> None:
    """The tutorials' steps with the docker CLI: host0 inits, every other host joins with
    the `role` token (manager or worker)."""
    h = cluster.hosts
    h[0].docker("swarm", "init", "--advertise-addr", cluster.addr(0))
    token = h[0].docker("swarm", "join-token", "-q", role).stdout.strip()
    for host in h[1:]:
        host.docker("swarm", "join", "--token", token, f"{cluster.addr(0)}:2377")
