"""Support for the overlay data-plane tests and bench (no tests here): hosts in namespaces
on an underlay bridge, each driving its own Dataplane through a driver process.

A Dataplane acts on the netns of its process, so each "host" runs this module as a driver
under `nsenter --net=<host>` (which keeps the caller's mount namespace: the sandboxes it
bind-mounts are visible here and outlive a killed driver, as on a real host). The driver
reads one JSON request per line on stdin and answers one JSON line:

    {"desired": {...}, "fresh": true}            reconcile towards that desired state
    {"add_peers": [...], "del_peers": [...]}     the same, after patching the last one
    {"probe_mtu": "192.0.2.11"}                  dataplane.probe.address_mtu

Everything a test makes carries one random prefix (`ovo-<hex>-`): namespaces through
nshelpers.Lab, sandbox run dirs under /run/ovo-<hex>/<host>. OverlayLab.close() (run
however the test ends) kills the drivers, unmounts whatever is mounted below that
directory and removes it; Lab.close() then removes the namespaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from dataplane.model import (
    SANDBOX_BRIDGE,
    Desired,
    EndpointSpec,
    IpsecSpec,
    OverlaySpec,
    PeerSpec,
)
from tests.integration.nshelpers import Interactive, Lab, Netns, lab, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNDERLAY = IPv4Network("192.0.2.0/24")

# --- JSON for Desired -----------------------------------------------------------------------


def encode(d: Desired) -> dict[str, Any]:
    def ep(e: EndpointSpec) -> list[Any]:
        gw = str(e.default_gateway) if e.default_gateway else None
        return [e.endpoint_id, e.network_id, e.bridge, e.host_ifname, e.netns_path, e.ifname,
                str(e.address), e.mac, e.mtu, gw]  # fmt: skip

    def ov(o: OverlaySpec) -> list[Any]:
        return [o.network_id, o.vni, str(o.subnet), str(o.gateway), o.mtu, o.dstport,
                o.encrypted]  # fmt: skip

    assert not d.bridges, "overlay driver: bridges are not encoded"
    return {
        "endpoints": [ep(e) for e in d.endpoints],
        "overlays": [ov(o) for o in d.overlays],
        "peers": [peer(p) for p in d.peers],
        "vtep": str(d.vtep) if d.vtep else None,
        "ipsec": _ipsec(d.ipsec) if d.ipsec else None,
    }


def _ipsec(spec: IpsecSpec) -> dict[str, Any]:
    return {"keys": [k.hex() for k in spec.keys], "primary": spec.primary.hex(),
            "epoch": spec.epoch, "peers": [[str(a), e] for a, e in spec.peers],
            "port": spec.port}  # fmt: skip


def _ipsec_of(doc: dict[str, Any]) -> IpsecSpec:
    peers = tuple((IPv4Address(a), e) for a, e in doc["peers"])
    return IpsecSpec(tuple(bytes.fromhex(k) for k in doc["keys"]), bytes.fromhex(doc["primary"]),
                     doc["epoch"], peers, doc["port"])  # fmt: skip


def peer(p: PeerSpec) -> list[str]:
    return [p.network_id, str(p.ip), p.mac, str(p.vtep)]


def _peer(x: list[str]) -> PeerSpec:
    return PeerSpec(x[0], IPv4Address(x[1]), x[2], IPv4Address(x[3]))


def decode(doc: dict[str, Any]) -> Desired:
    eps = frozenset(
        EndpointSpec(
            eid,
            net,
            br,
            host,
            ns,
            ifn,
            IPv4Interface(addr),
            mac,
            mtu,
            IPv4Address(gw) if gw else None,
        )
        for eid, net, br, host, ns, ifn, addr, mac, mtu, gw in doc["endpoints"]
    )
    ovs = frozenset(
        OverlaySpec(net, vni, IPv4Network(sub), IPv4Interface(gw), mtu, port, enc)
        for net, vni, sub, gw, mtu, port, enc in doc["overlays"]
    )
    vtep = IPv4Address(doc["vtep"]) if doc["vtep"] else None
    peers = frozenset(_peer(x) for x in doc["peers"])
    ipsec = _ipsec_of(doc["ipsec"]) if doc.get("ipsec") else None
    return Desired(endpoints=eps, overlays=ovs, peers=peers, vtep=vtep, ipsec=ipsec)


# --- the driver (runs inside a host netns) ----------------------------------------------------


def _op_name(op: Any) -> str:
    name = type(op).__name__
    if name == "ProgramPeers":
        return f"ProgramPeers:+{len(op.replace_fdb)}/-{len(op.del_fdb)}"
    target = getattr(op, "ifname", None) or getattr(getattr(op, "spec", None), "host_ifname", None)
    target = target or os.path.basename(getattr(op, "path", "") or "")
    return f"{name}:{target}" if target else name


async def _serve(run_dir: str, nft: bool = True) -> None:
    from dataplane.probe import address_mtu
    from dataplane.reconciler import Dataplane

    dp = Dataplane(run_dir=run_dir, nft=nft)
    desired = Desired()
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        req = json.loads(line)
        if "probe_mtu" in req:
            print(json.dumps({"mtu": await address_mtu(req["probe_mtu"])}), flush=True)
            continue
        if "desired" in req:
            desired = decode(req["desired"])
        if req.get("add_peers") or req.get("del_peers"):
            gone = {_peer(x) for x in req.get("del_peers", [])}
            added = {_peer(x) for x in req.get("add_peers", [])}
            desired = replace(desired, peers=frozenset((desired.peers - gone) | added))
        start = time.perf_counter()
        r = await dp.reconcile(desired, fresh=req.get("fresh", True))
        ms = (time.perf_counter() - start) * 1000
        out = {
            "applied": [_op_name(op) for op in r.applied],
            "gone": [e.endpoint_id for e in r.gone],
            "errors": list(r.errors),
            "warnings": list(r.warnings),
            "ms": round(ms, 3),
        }
        print(json.dumps(out), flush=True)
    await dp.close()


def main() -> None:
    asyncio.run(_serve(sys.argv[1], nft=sys.argv[2:] != ["no-nft"]))


# --- the lab (runs in the test) ---------------------------------------------------------------


@dataclass
class Host:
    ns: Netns
    vtep: IPv4Address
    run_dir: str
    driver: Interactive | None = None

    def reconcile(self, desired: Desired | None = None, fresh: bool = True, timeout: float = 60,
                  **patch: Any) -> dict[str, Any]:  # fmt: skip
        """One reconcile in this host's driver; `patch`: add_peers/del_peers lists."""
        assert self.driver is not None
        req: dict[str, Any] = {"fresh": fresh, **patch}
        if desired is not None:
            req["desired"] = encode(desired)
        self.driver.send_line(json.dumps(req))
        return json.loads(self.driver.read_line(timeout=timeout))

    def probe_mtu(self) -> int:
        assert self.driver is not None
        self.driver.send_line(json.dumps({"probe_mtu": str(self.vtep)}))
        return json.loads(self.driver.read_line())["mtu"]

    def sandbox(self, network_id: str) -> str:
        from dataplane.layout import sandbox_path

        return sandbox_path(self.run_dir, network_id)


@dataclass
class OverlayLab:
    world: Lab
    base: str  # /run/<prefix>: every host's run dir is below it
    underlay: Netns | None = None
    hosts: list[Host] = field(default_factory=list)
    nft: bool = True  # False: drivers never touch nftables (a kernel without its ip family)

    def add_hosts(self, n: int, mtu: int = 1500) -> list[Host]:
        if self.underlay is None:
            self.underlay = self.world.netns("ul")
            self.underlay.run("ip", "link", "add", "ul0", "type", "bridge")
            self.underlay.run("ip", "link", "set", "ul0", "up")
        for _ in range(n):
            i = len(self.hosts) + 1
            ns = self.world.netns(f"h{i}")
            vtep = UNDERLAY.network_address + 10 + i
            self.underlay.run("ip", "link", "add", f"p{i}", "mtu", str(mtu), "type", "veth",
                              "peer", "name", "eth0", "netns", ns.path)  # fmt: skip
            self.underlay.run("ip", "link", "set", f"p{i}", "master", "ul0", "up")
            ns.run("ip", "addr", "add", f"{vtep}/{UNDERLAY.prefixlen}", "dev", "eth0")
            ns.run("ip", "link", "set", "eth0", "mtu", str(mtu), "up")
            host = Host(ns, vtep, os.path.join(self.base, f"h{i}"))
            self.start_driver(host)
            self.hosts.append(host)
        return self.hosts[-n:]

    def start_driver(self, host: Host) -> None:
        code = f"import sys; sys.path.insert(0, {REPO!r}); from {__name__} import main; main()"
        host.driver = self.world.interactive(host.ns, sys.executable, "-c", code, host.run_dir,
                                             *([] if self.nft else ["no-nft"]))  # fmt: skip
        assert "ready" in host.driver.read_line(timeout=30)

    def kill_driver(self, host: Host) -> None:
        """kill -9: no clean shutdown of anything."""
        assert host.driver is not None
        host.driver.proc.kill()
        host.driver.proc.wait(timeout=10)
        host.driver = None

    def close(self) -> None:
        for host in self.hosts:
            if host.driver is not None:
                with suppress(Exception):
                    self.kill_driver(host)
        unmount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


def unmount_below(base: str) -> None:
    """Lazily unmount every mount point under base (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(base + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@contextmanager
def overlay_lab(nft: bool = True) -> Iterator[OverlayLab]:
    with lab("ovo") as world:
        it = OverlayLab(world, f"/run/{world.prefix.rstrip('-')}", nft=nft)
        try:
            yield it
        finally:
            it.close()


# --- building blocks ----------------------------------------------------------------------


def overlay(net: str, vni: int, subnet: str = "10.77.0.0/24", mtu: int = 1450,
            encrypted: bool = False) -> OverlaySpec:  # fmt: skip
    s = IPv4Network(subnet)
    gw = IPv4Interface(f"{s.network_address + 1}/{s.prefixlen}")
    return OverlaySpec(network_id=net * (64 // len(net)), vni=vni, subnet=s, gateway=gw, mtu=mtu,
                       encrypted=encrypted)  # fmt: skip


def mac_of(ip: IPv4Address) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def endpoint(o: OverlaySpec, c: Netns, last: int, ifname: str = "eth0") -> EndpointSpec:
    ip = o.subnet.network_address + last
    return EndpointSpec(
        endpoint_id=f"{c.name}-{o.vni}".ljust(64, "0")[:64],
        network_id=o.network_id,
        bridge=SANDBOX_BRIDGE,
        host_ifname=f"ve{last}-{o.vni}"[:15],
        netns_path=c.path,
        ifname=ifname,
        address=IPv4Interface(f"{ip}/{o.subnet.prefixlen}"),
        mac=mac_of(ip),
        mtu=o.mtu,
    )


def as_peer(e: EndpointSpec, host: Host) -> PeerSpec:
    return PeerSpec(e.network_id, e.address.ip, e.mac, host.vtep)


def sandbox_fdb(path: str) -> dict[str, dict[str, Any]]:
    """Self entries on vxlan0 by MAC, as iproute2 shows them."""
    out = subprocess.run(["nsenter", f"--net={path}", "bridge", "-j", "fdb", "show", "dev",
                          "vxlan0"], check=True, capture_output=True, text=True).stdout  # fmt: skip
    return {e["mac"]: e for e in json.loads(out) if "self" in e.get("flags", [])}


def sandbox_neigh(path: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "neigh", "show", "dev",
                          "vxlan0"], check=True, capture_output=True, text=True).stdout  # fmt: skip
    return {e["dst"]: e for e in json.loads(out)}


def sandbox_links(path: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "-d", "link", "show"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return {link["ifname"]: link for link in json.loads(out)}


def pings(ns: Netns, dst: str, size: int | None = None) -> bool:
    extra = ["-M", "do", "-s", str(size)] if size is not None else []
    return ns.ok("ping", "-c1", "-W1", "-q", *extra, dst)


def clean(r: dict[str, Any]) -> dict[str, Any]:
    assert r["errors"] == [] and r["gone"] == [], r
    return r


def wait_ping(ns: Netns, dst: str, timeout: float = 5) -> bool:
    return wait_until(lambda: pings(ns, dst), timeout=timeout, what=f"{ns.name} -> {dst}")


if __name__ == "__main__":
    main()
