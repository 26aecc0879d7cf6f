"""Docker 20.10's overlay data path built by hand (iproute2, no daemon) between two hosts of
a bench cluster: the throughput reference measured on the same kernel and underlay, in the
same run as overlayd's overlay.

Docker's dockerd never touches a packet: its overlay is the kernel's path through the
devices libnetwork sets up, so the same devices with the same flags carry the same
traffic. As libnetwork's overlay driver makes them (drivers/overlay/ov_utils.go
`createVxlan`, ov_network.go `setupSubnetSandbox`, ov_endpoint/joinleave `peerAdd`):

- per host a sandbox namespace holding `br0` (the gateway address, MTU 1450);
- a vxlan device with `learning proxy l2miss l3miss`, UDP port 4789, no outer UDP
  checksum, created in the host namespace (its socket binds on the underlay) and moved
  into the sandbox, on br0;
- the container's veth (txqueuelen 0) from br0 to the container as eth0, MTU 1450;
- each remote container as a permanent `self` FDB entry (MAC -> VTEP) and a permanent
  neigh entry (IP -> MAC) on the vxlan device.

br_netfilter stays as the kernel sets it in a new namespace: Docker does not touch it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.harness import Netns, delete_netns, make_netns, unique

MTU = 1450
GATEWAY_HOST = 254


def _mac(ns: Netns, dev: str) -> str:
    return json.loads(ns.sh("ip", "-j", "link", "show", dev).stdout)[0]["address"]


@contextmanager
def docker_overlay(hosts: list[Netns], vteps: list[str], vni: int,
                   prefix: str) -> Iterator[list[Netns]]:  # fmt: skip
    """One container per host on a Docker-made overlay; container i is `{prefix}.{i+1}`
    (a /24). Everything made here goes on exit."""
    made: list[str] = []
    containers: list[Netns] = []
    try:
        for i, host in enumerate(hosts):
            sandbox = make_netns(unique("dks"))
            made.append(sandbox.name)
            ctr = make_netns(unique("dkc"))
            made.append(ctr.name)
            containers.append(ctr)
            sandbox.sh("ip", "link", "add", "br0", "type", "bridge")
            sandbox.sh("ip", "addr", "add", f"{prefix}.{GATEWAY_HOST}/24", "dev", "br0")
            sandbox.sh("ip", "link", "set", "br0", "mtu", str(MTU), "up")
            vx = unique("dkv")
            host.sh("ip", "link", "add", vx, "type", "vxlan", "id", str(vni), "dstport", "4789",
                    "learning", "proxy", "l2miss", "l3miss", "noudpcsum")  # fmt: skip
            host.sh("ip", "link", "set", vx, "netns", sandbox.name)
            sandbox.sh("ip", "link", "set", vx, "name", "vxlan0")
            sandbox.sh("ip", "link", "set", "vxlan0", "mtu", str(MTU), "master", "br0", "up")
            sandbox.sh("ip", "link", "add", "veth0", "txqueuelen", "0", "type", "veth",
                       "peer", "name", "eth0", "netns", ctr.name)  # fmt: skip
            sandbox.sh("ip", "link", "set", "veth0", "mtu", str(MTU), "master", "br0", "up")
            ctr.sh("ip", "addr", "add", f"{prefix}.{i + 1}/24", "dev", "eth0")
            ctr.sh("ip", "link", "set", "eth0", "mtu", str(MTU), "up")
        macs = [_mac(c, "eth0") for c in containers]
        sandboxes = [Netns(n) for n in made[::2]]
        for i, sandbox in enumerate(sandboxes):
            for j, mac in enumerate(macs):
                if i == j:
                    continue
                sandbox.sh("bridge", "fdb", "add", mac, "dev", "vxlan0", "dst", vteps[j],
                           "self", "permanent")  # fmt: skip
                sandbox.sh("ip", "neigh", "add", f"{prefix}.{j + 1}", "lladdr", mac,
                           "dev", "vxlan0", "nud", "permanent")  # fmt: skip
        yield containers
    finally:
        for name in made:
            delete_netns(name)
