"""Compare every host's kernel with the cluster's view of its overlay networks.

The cluster's view comes from the API only: for each swarm overlay network, `GET
/networks/{id}` on each host lists that host's endpoints under `Containers` (IP, MAC),
the VNI is in `Options`, the gateway in `IPAM`, and a host's VTEP is its swarm address
(`GET /info` → `Swarm.NodeAddr`). The kernel side is read with `ip`/`bridge` through
`nsenter` (an implementation of its own, independent of dataplane/), and must match:

- a host with local endpoints on a network has its sandbox netns: `br0` with the gateway
  address, `vxlan0` (the VNI, dstport, `proxy`, no learning) enslaved to it, one veth per
  local endpoint, nothing else;
- FDB on vxlan0 == {MAC → VTEP} and neigh on vxlan0 == {IP → MAC}, permanent, for
  exactly the endpoints on the *other* hosts;
- each local endpoint's container netns has exactly one interface with its MAC, holding
  its IP, and no interface holds an address of the network that no endpoint owns;
- a host without local endpoints on a network has no sandbox for it, no sandbox is left
  for a network that is gone, and no overlay device sits in the host namespace.

`check(hosts)` returns human-readable differences (empty: converged);
`wait_converged(hosts, timeout)` polls it and returns the last differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dataplane.layout import SANDBOX_PREFIX, run_dir_for, sandbox_dir, sandbox_path
from tests.integration.harness import Host, Netns

VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
SEP = "@@overlay-checker@@"


@dataclass(frozen=True)
class Endpoint:
    host: int  # index into the hosts given to the checker
    network_id: str
    endpoint_id: str
    name: str
    ip: IPv4Interface
    mac: str


@dataclass
class Network:
    id: str
    name: str
    vni: int | None
    subnet: IPv4Network | None
    gateway: IPv4Interface | None


@dataclass
class ClusterView:
    vteps: dict[int, str] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    endpoints: list[Endpoint] = field(default_factory=list)

    def local(self, host: int, net_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.host == host and e.network_id == net_id]

    def remote(self, host: int, net_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.host != host and e.network_id == net_id]


# --- the API side ---------------------------------------------------------------------------


def _get(host: Host, path: str) -> object:
    reply = host.request("GET", path, timeout=10)
    if reply.status != 200:
        raise RuntimeError(f"GET {path} -> {reply.status}: {reply.body[:200]!r}")
    return reply.json()


def _network_from(doc: dict) -> Network:
    cfgs = (doc.get("IPAM") or {}).get("Config") or []
    subnet = gateway = None
    if cfgs:
        subnet = IPv4Network(cfgs[0]["Subnet"])
        if cfgs[0].get("Gateway"):
            gateway = IPv4Interface(f"{cfgs[0]['Gateway']}/{subnet.prefixlen}")
    vni_text = (doc.get("Options") or {}).get(VNI_OPTION, "")
    vni = int(vni_text.split(",")[0]) if vni_text else None
    return Network(doc["Id"], doc["Name"], vni, subnet, gateway)


def cluster_view(hosts: Sequence[Host]) -> tuple[ClusterView, list[str]]:
    """The cluster's view from the API of `hosts`, and any inconsistency in it (hosts that
    disagree on a network, duplicate IPs or MACs, MACs that are not 02:42:<ip>)."""
    view = ClusterView()
    diffs: list[str] = []
    seen_on: dict[str, set[int]] = {}
    for i, host in enumerate(hosts):
        info = _get(host, "/info")
        assert isinstance(info, dict)
        addr = (info.get("Swarm") or {}).get("NodeAddr") or ""
        if not addr:
            diffs.append(f"host{i}: /info has no Swarm.NodeAddr (not in a swarm?)")
        view.vteps[i] = addr
        listed = _get(host, '/networks?filters={"driver":["overlay"]}')
        assert isinstance(listed, list)
        for summary in listed:
            if summary.get("Scope") != "swarm":
                continue
            doc = _get(host, f"/networks/{summary['Id']}")
            assert isinstance(doc, dict)
            net = _network_from(doc)
            known = view.networks.setdefault(net.id, net)
            seen_on.setdefault(net.id, set()).add(i)
            if (known.vni, known.subnet, known.gateway) != (net.vni, net.subnet, net.gateway):
                diffs.append(f"host{i}: network {net.name} differs from another host's "
                             f"(vni {net.vni}/{known.vni}, subnet {net.subnet}/{known.subnet}, "
                             f"gateway {net.gateway}/{known.gateway})")  # fmt: skip
            for ep in (doc.get("Containers") or {}).values():
                endpoint = Endpoint(
                    host=i, network_id=net.id, endpoint_id=ep["EndpointID"], name=ep["Name"],
                    ip=IPv4Interface(ep["IPv4Address"]), mac=ep["MacAddress"].lower(),
                )  # fmt: skip
                view.endpoints.append(endpoint)
    for net_id, on in seen_on.items():
        if len(on) != len(hosts):
            missing = sorted(set(range(len(hosts))) - on)
            diffs.append(f"network {view.networks[net_id].name} unknown on hosts {missing}")
    by_ip: dict[tuple[str, IPv4Address], Endpoint] = {}
    by_mac: dict[tuple[str, str], Endpoint] = {}
    for ep in view.endpoints:
        net = view.networks[ep.network_id]
        where = f"host{ep.host}: {net.name}/{ep.name}"
        if (other := by_ip.setdefault((ep.network_id, ep.ip.ip), ep)) is not ep:
            diffs.append(f"{where}: IP {ep.ip.ip} also held by host{other.host}:{other.name}")
        if (other := by_mac.setdefault((ep.network_id, ep.mac), ep)) is not ep:
            diffs.append(f"{where}: MAC {ep.mac} also held by host{other.host}:{other.name}")
        if ep.mac != mac_for(ep.ip.ip):
            diffs.append(f"{where}: MAC {ep.mac} is not {mac_for(ep.ip.ip)} for {ep.ip.ip}")
        if net.subnet is not None and ep.ip.network != net.subnet:
            diffs.append(f"{where}: address {ep.ip} is not in the subnet {net.subnet}")
    return view, diffs


def mac_for(ip: IPv4Address) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


# --- the kernel side ------------------------------------------------------------------------


def _in_netns(path: str, *commands: str) -> list[list[dict]]:
    """Run `commands` (each printing JSON) in one nsenter; a failed command gives []."""
    script = f"; echo {SEP}; ".join(f"{c} 2>/dev/null" for c in commands)
    res = subprocess.run(["nsenter", f"--net={path}", "sh", "-c", script],
                         capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
    if res.stderr.strip():  # each command's own stderr goes to /dev/null: this is nsenter's
        raise RuntimeError(f"nsenter --net={path} failed: {res.stderr.strip()}")
    chunks = res.stdout.split(SEP)
    out = []
    for chunk in chunks:
        text = chunk.strip()
        out.append(json.loads(text) if text else [])
    if len(out) != len(commands):
        raise RuntimeError(f"nsenter --net={path}: {len(out)} outputs for {len(commands)} commands")
    return out


def _addrs(link: dict) -> set[IPv4Interface]:
    return {IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            for a in link.get("addr_info", []) if a.get("family") == "inet"}  # fmt: skip


def _kind(link: dict) -> str:
    return (link.get("linkinfo") or {}).get("info_kind", "")


def _check_sandbox(i: int, path: str, net: Network, view: ClusterView, dstport: int) -> list[str]:
    where = f"host{i}: {net.name} sandbox"
    try:
        links, fdb, neigh = _in_netns(
            path, "ip -d -j addr show", "bridge -j fdb show dev vxlan0",
            "ip -j neigh show dev vxlan0",
        )  # fmt: skip
    except (RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        return [f"{where}: cannot read it: {exc}"]
    diffs: list[str] = []
    by_name = {link["ifname"]: link for link in links}
    br0, vxlan = by_name.get("br0"), by_name.get("vxlan0")
    if br0 is None or _kind(br0) != "bridge":
        diffs.append(f"{where}: no bridge br0")
    else:
        if net.gateway is not None and net.gateway not in _addrs(br0):
            diffs.append(f"{where}: br0 lacks the gateway {net.gateway} (has {_addrs(br0)})")
        if "UP" not in br0.get("flags", []):
            diffs.append(f"{where}: br0 is down")
    if vxlan is None or _kind(vxlan) != "vxlan":
        diffs.append(f"{where}: no vxlan device vxlan0")
    else:
        data = vxlan["linkinfo"].get("info_data", {})
        if data.get("id") != net.vni:
            diffs.append(f"{where}: vxlan0 has VNI {data.get('id')}, the network {net.vni}")
        if data.get("port") != dstport:
            diffs.append(f"{where}: vxlan0 has dstport {data.get('port')}, expected {dstport}")
        if data.get("learning") is not False or data.get("proxy") is not True:
            diffs.append(f"{where}: vxlan0 learning={data.get('learning')} "
                         f"proxy={data.get('proxy')} (want no learning, proxy)")  # fmt: skip
        if vxlan.get("master") != "br0":
            diffs.append(f"{where}: vxlan0 is not enslaved to br0")
        if "UP" not in vxlan.get("flags", []):
            diffs.append(f"{where}: vxlan0 is down")
    local = view.local(i, net.id)
    veths = [link for link in links if _kind(link) == "veth"]
    if len(veths) != len(local):
        diffs.append(f"{where}: {len(veths)} veths for {len(local)} local endpoints "
                     f"({sorted(v['ifname'] for v in veths)})")  # fmt: skip
    diffs += [f"{where}: veth {v['ifname']} not on br0" for v in veths if v.get("master") != "br0"]
    others = [n for n, link in by_name.items()
              if n not in ("lo", "br0", "vxlan0") and _kind(link) != "veth"]  # fmt: skip
    diffs += [f"{where}: unexpected device {n}" for n in sorted(others)]

    remote = view.remote(i, net.id)
    want_fdb = {e.mac: view.vteps[e.host] for e in remote}
    have_fdb: dict[str, str] = {}
    for entry in fdb:
        if "dst" not in entry:  # the bridge's own entries for vxlan0, not the tunnel's
            continue
        mac = entry["mac"].lower()
        if mac in have_fdb:
            diffs.append(f"{where}: FDB has {mac} twice ({have_fdb[mac]}, {entry['dst']})")
        have_fdb[mac] = entry["dst"]
        if entry.get("state") != "permanent":
            diffs.append(f"{where}: FDB entry {mac} -> {entry['dst']} is {entry.get('state')}")
    diffs += _diff_maps(f"{where}: FDB", want_fdb, have_fdb)

    want_neigh = {str(e.ip.ip): e.mac for e in remote}
    have_neigh: dict[str, str] = {}
    for entry in neigh:
        have_neigh[entry["dst"]] = entry.get("lladdr", "").lower()
        if "PERMANENT" not in entry.get("state", []):
            diffs.append(f"{where}: neigh {entry['dst']} is {entry.get('state')}")
    diffs += _diff_maps(f"{where}: neigh", want_neigh, have_neigh)
    return diffs


def _diff_maps(where: str, want: dict[str, str], have: dict[str, str]) -> list[str]:
    diffs = []
    for key in sorted(want.keys() | have.keys()):
        if key not in have:
            diffs.append(f"{where} missing {key} -> {want[key]}")
        elif key not in want:
            diffs.append(f"{where} stale {key} -> {have[key]}")
        elif want[key] != have[key]:
            diffs.append(f"{where} {key} -> {have[key]}, expected {want[key]}")
    return diffs


def _check_containers(i: int, view: ClusterView, extra: Iterable[str]) -> list[str]:
    """Each local endpoint: exactly one interface with its MAC, holding its IP. Any
    address inside an overlay subnet that no local endpoint of that netns owns is stray."""
    diffs: list[str] = []
    mine: dict[str, list[Endpoint]] = {}
    for ep in view.endpoints:
        if ep.host == i:
            mine.setdefault(ep.name, []).append(ep)
    for name in extra:
        mine.setdefault(name, [])
    subnets = [n.subnet for n in view.networks.values() if n.subnet is not None]
    for name, eps in sorted(mine.items()):
        path = f"/run/netns/{name}"
        if not os.path.exists(path):
            diffs.append(f"host{i}: container {name}: no netns at {path}")
            continue
        try:
            (links,) = _in_netns(path, "ip -j addr show")
        except (RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            diffs.append(f"host{i}: container {name}: cannot read it: {exc}")
            continue
        owned: set[IPv4Interface] = set()
        for ep in eps:
            net = view.networks[ep.network_id].name
            with_mac = [link for link in links if link.get("address", "").lower() == ep.mac]
            if len(with_mac) != 1:
                diffs.append(f"host{i}: container {name}: {len(with_mac)} interfaces with "
                             f"{net}'s MAC {ep.mac}")  # fmt: skip
                continue
            link = with_mac[0]
            if ep.ip not in _addrs(link):
                diffs.append(f"host{i}: container {name}: {link['ifname']} lacks {net}'s "
                             f"address {ep.ip} (has {sorted(map(str, _addrs(link)))})")  # fmt: skip
            if "UP" not in link.get("flags", []):
                diffs.append(f"host{i}: container {name}: {link['ifname']} ({net}) is down")
            if not link["ifname"].startswith("eth"):
                diffs.append(f"host{i}: container {name}: {net} is on {link['ifname']}")
            owned.add(ep.ip)
        for link in links:
            for addr in _addrs(link) - owned:
                if any(addr.ip in s for s in subnets):
                    diffs.append(f"host{i}: container {name}: stray {addr} on {link['ifname']}")
    return diffs


def _check_host_netns(i: int, host: Host, view: ClusterView) -> list[str]:
    """No overlay device left in the host namespace (vxlans live in sandboxes)."""
    try:
        (links,) = _in_netns(host.ns.path, "ip -d -j link show")
    except (RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        return [f"host{i}: cannot read the host netns: {exc}"]
    diffs = []
    for link in links:
        alias = link.get("ifalias", "")
        net_id = alias.split(":")[1] if alias.startswith("overlayd:") else ""
        if _kind(link) == "vxlan" or net_id in view.networks:
            diffs.append(f"host{i}: orphaned {_kind(link) or 'device'} {link['ifname']} "
                         f"in the host netns (alias {alias!r})")  # fmt: skip
    return diffs


def check_host(i: int, host: Host, view: ClusterView, containers: Iterable[str] = (),
               dstport: int = 4789) -> list[str]:  # fmt: skip
    run_dir = run_dir_for(host.state_dir)
    diffs: list[str] = []
    wanted: set[str] = set()
    for net in view.networks.values():
        path = sandbox_path(run_dir, net.id)
        if view.local(i, net.id):
            wanted.add(os.path.basename(path))
            if not os.path.exists(path):
                diffs.append(f"host{i}: {net.name} has local endpoints but no sandbox at {path}")
                continue
            diffs += _check_sandbox(i, path, net, view, dstport)
        elif os.path.exists(path):
            diffs.append(f"host{i}: {net.name} has no local endpoint but a sandbox at {path}")
            wanted.add(os.path.basename(path))  # reported once
    try:
        present = os.listdir(sandbox_dir(run_dir))
    except FileNotFoundError:
        present = []
    for name in sorted(present):
        if name.startswith(SANDBOX_PREFIX) and name not in wanted:
            diffs.append(f"host{i}: orphaned sandbox {name} (no such network)")
    diffs += _check_containers(i, view, containers)
    diffs += _check_host_netns(i, host, view)
    return diffs


def check(hosts: Sequence[Host], containers: Iterable[Netns] = (),
          dstport: int = 4789) -> list[str]:  # fmt: skip
    """Every difference between the hosts' kernels and the cluster's view (API) of them.
    `containers` are further netns to check for stray overlay addresses (e.g. detached)."""
    try:
        view, diffs = cluster_view(hosts)
    except Exception as exc:  # an API that does not answer is a difference too
        return [f"cannot build the cluster view: {exc!r}"]
    extra: dict[int, list[str]] = {}
    host_of_ns = {c.name: i for i, h in enumerate(hosts) for c in h.containers}
    for c in containers:
        if c.name in host_of_ns:
            extra.setdefault(host_of_ns[c.name], []).append(c.name)
    for i, host in enumerate(hosts):
        diffs += check_host(i, host, view, extra.get(i, ()), dstport)
    return diffs


def wait_converged(hosts: Sequence[Host], timeout: float = 10.0,
                   containers: Iterable[Netns] = (), interval: float = 0.1) -> list[str]:  # fmt: skip
    """Poll `check` until it reports no difference or `timeout` passes; the last result."""
    containers = list(containers)
    deadline = time.monotonic() + timeout
    while True:
        diffs = check(hosts, containers)
        if not diffs or time.monotonic() >= deadline:
            return diffs
        time.sleep(interval)
