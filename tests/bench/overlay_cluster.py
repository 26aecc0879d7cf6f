"""Overlay figures of issue 6 on a real 3-host swarm in namespaces, printed as JSON (root).

    .venv/bin/python -m tests.bench.overlay_cluster [--quick]

host0 is the manager, host1 and host2 join as workers; one attachable overlay network with
a resident endpoint (a netns "container") on every host, so every host has its sandbox.

- connect_to_neigh_ms: POST /networks/{id}/connect of a fresh container on host2 (the API,
  not the docker CLI) until the neigh entry (IP -> MAC) of that endpoint is on host1's
  vxlan0, measured from the start and from the return of the call. Watched through a
  netlink socket opened inside host1's sandbox: RTM_NEWNEIGH events as they happen, with a
  dump every 2 ms as a cross-check. `cold_sandbox` is the same on a second network on
  which host2 has no endpoint yet (the connect also makes host2's sandbox).
- connect_to_ping_ms: same connects, until the first echo reply from host1's resident
  container to the new endpoint: an ICMP raw socket in that container sends one echo
  request per ms from the moment the call returns (the IP is known only then).
- host_killed_fdb_gone_s: SIGKILL host2's overlayd and set its eth0 down; time from the
  kill until no FDB entry towards host2's VTEP is left on host0's and host1's vxlan0
  (polled every 5 ms); then eth0 up, overlayd started again, time until they are back.
- iperf3: 1 TCP stream, underlay host2 -> host1 (eth0 addresses), overlay container on
  host2 -> container on host1; their ratio. In the same rounds, the same between two
  containers on Docker 20.10's overlay devices built by hand on host1 and host2
  (tests/bench/docker_layout.py): Docker's ratio on this kernel, measured, not recalled.
- rtt_ms: median of 20 pings container -> container across hosts, and host -> host.
- rss_mb: overlayd's RSS per host after all this.

The hosts' work dirs (daemon logs included) go with the cluster; BENCH_KEEP_LOGS=<dir>
copies the three daemon logs there first.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

from dataplane.layout import run_dir_for, sandbox_dir, sandbox_path
from dataplane.reach import inet_checksum
from tests.bench.docker_layout import docker_overlay
from tests.integration.cluster import Cluster, cluster_of, form_swarm
from tests.integration.harness import Host, Netns, delete_netns, wait_for

DOCKER = {
    "connect_to_neigh_ms": 279,
    "connect_to_ping_ms": 434,
    "host_killed_fdb_gone_s": "5.3-7.4",
    "iperf3_overlay_over_underlay": "0.80-0.84",
    "overlay_rtt_ms": 0.126,
    "rss_mb": 103,
}
DOCKER_LAYOUT_VNI = 15_000_001  # far from overlayd's VNIs
GOALS = {
    "connect_to_neigh_ms": "<= 20 after the connect call",
    "connect_to_ping_ms": "<= 50",
    "host_killed_fdb_gone_s": "<= 1.5",
    "iperf3_overlay_over_underlay": ">= Docker's",
    "overlay_rtt_ms": "<= Docker's",
    "rss_mb": "<= 60",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- namespaces and raw netlink --------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the block with this thread in the netns at `path`; sockets made there stay there."""
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTMGRP_NEIGH = 0x4
RTMGRP_IPV4_IFADDR = 0x10
AF_BRIDGE = 7
NDA_DST, NDA_LLADDR = 1, 2
IFLA_IFNAME = 3
IFA_LOCAL = 2
NUD_INCOMPLETE, NUD_FAILED = 0x01, 0x20
NDMSG = struct.Struct("=BxxxiHBB")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBi")
NLMSGHDR = struct.Struct("=IHHII")


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out = {}
    while off + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _messages(data: bytes) -> Iterator[tuple[int, bytes, int, int]]:
    """(type, whole buffer, payload offset, message end) for each message in a datagram."""
    off = 0
    while off + NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size:
            break
        yield kind, data, off + NLMSGHDR.size, off + length
        off += (length + 3) & ~3


class Nl:
    """A NETLINK_ROUTE socket created inside a netns (given by path)."""

    def __init__(self, netns: str, groups: int = 0) -> None:
        with in_netns(netns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, groups))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def dump(self, kind: int, body: bytes) -> list[tuple[int, bytes, int, int]]:
        """The whole reply to one dump request (read to NLMSG_DONE, other seqs skipped)."""
        self.seq += 1
        flags = NLM_F_REQUEST | NLM_F_DUMP
        self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, self.seq, 0) + body)
        out = []
        while True:
            data = self.sock.recv(1 << 16)
            for mtype, buf, off, end in _messages(data):
                if NLMSGHDR.unpack_from(buf, off - NLMSGHDR.size)[3] != self.seq:
                    continue
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", buf, off)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return out
                out.append((mtype, buf, off, end))

    def ifindex(self, name: str) -> int:
        for _, buf, off, end in self.dump(RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0)):
            _, _, index, _, _ = IFINFOMSG.unpack_from(buf, off)
            a = _attrs(buf, off + IFINFOMSG.size, end)
            if a.get(IFLA_IFNAME, b"").rstrip(b"\0").decode() == name:
                return index
        raise LookupError(name)

    def ipv4_addrs(self) -> list[str]:
        out = []
        for _, buf, off, end in self.dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
            a = _attrs(buf, off + IFADDRMSG.size, end)
            if IFA_LOCAL in a:
                out.append(str(IPv4Address(a[IFA_LOCAL])))
        return out

    def neighbours(self, family: int, ifindex: int) -> list[tuple[str, str]]:
        """(dst, lladdr) of usable entries on ifindex; for AF_BRIDGE dst is the VTEP."""
        out = []
        for mtype, buf, off, end in self.dump(RTM_GETNEIGH, NDMSG.pack(family, 0, 0, 0, 0)):
            entry = parse_neigh(mtype, buf, off, end)
            if entry and entry[0] == family and entry[1] == ifindex:
                out.append((entry[2], entry[3]))
        return out


def parse_neigh(mtype: int, buf: bytes, off: int, end: int) -> tuple[int, int, str, str] | None:
    if mtype != RTM_NEWNEIGH:
        return None
    family, ifindex, state, _, _ = NDMSG.unpack_from(buf, off)
    if state & (NUD_INCOMPLETE | NUD_FAILED):
        return None
    a = _attrs(buf, off + NDMSG.size, end)
    dst = str(IPv4Address(a[NDA_DST])) if len(a.get(NDA_DST, b"")) == 4 else ""
    mac = ":".join(f"{b:02x}" for b in a.get(NDA_LLADDR, b""))
    return family, ifindex, dst, mac


class NeighWatch(threading.Thread):
    """First time each IPv4 neigh entry is seen on a sandbox's vxlan0: netlink events as
    they arrive, and a full dump every DUMP_EVERY s as a safety net (`by` counts which saw
    an entry first). Entries already present at the start are ignored."""

    DUMP_EVERY = 0.01

    def __init__(self, sandbox: str) -> None:
        super().__init__(daemon=True)
        self.events = Nl(sandbox, RTMGRP_NEIGH)
        self.events.sock.setblocking(False)
        self.poll = Nl(sandbox)
        self.vxlan = self.poll.ifindex("vxlan0")
        self.old = {dst for dst, _ in self.poll.neighbours(socket.AF_INET, self.vxlan)}
        self.seen: dict[str, float] = {}
        self.by = {"event": 0, "dump": 0}
        self.cond = threading.Condition()
        self.halt = False
        self.start()

    def _note(self, dst: str, when: float, by: str) -> None:
        if dst and dst not in self.old and dst not in self.seen:
            with self.cond:
                self.seen[dst] = when
                self.by[by] += 1
                self.cond.notify_all()

    def run(self) -> None:
        fd = self.events.sock.fileno()
        next_dump = 0.0
        while not self.halt:
            now = time.monotonic()
            if select.select([fd], [], [], max(0.0, next_dump - now))[0]:
                while True:
                    try:
                        data = self.events.sock.recv(1 << 16)
                    except BlockingIOError:
                        break
                    when = time.monotonic()
                    for msg in _messages(data):
                        e = parse_neigh(*msg)
                        if e and e[0] == socket.AF_INET and e[1] == self.vxlan:
                            self._note(e[2], when, "event")
            if time.monotonic() >= next_dump:
                when = time.monotonic()
                for dst, _ in self.poll.neighbours(socket.AF_INET, self.vxlan):
                    self._note(dst, when, "dump")
                next_dump = time.monotonic() + self.DUMP_EVERY

    def wait(self, ip: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: ip in self.seen, timeout)
            return self.seen.get(ip)

    def stop(self) -> None:
        self.halt = True
        self.join(2)
        self.events.close()
        self.poll.close()


class AddrWatch(threading.Thread):
    """When an IPv4 address starting with `prefix` first shows up in a netns (events)."""

    def __init__(self, netns: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.nl = Nl(netns, RTMGRP_IPV4_IFADDR)
        self.prefix = prefix
        self.when: float | None = None
        self.halt = False
        self.start()

    def run(self) -> None:
        while not self.halt and self.when is None:
            if not select.select([self.nl.sock], [], [], 0.05)[0]:
                continue
            data = self.nl.sock.recv(1 << 16)
            when = time.monotonic()
            for mtype, buf, off, end in _messages(data):
                a = _attrs(buf, off + IFADDRMSG.size, end)
                local = str(IPv4Address(a[IFA_LOCAL])) if IFA_LOCAL in a else ""
                if mtype == RTM_NEWADDR and local.startswith(self.prefix):
                    self.when = when

    def stop(self) -> float | None:
        self.halt = True
        self.join(2)
        self.nl.close()
        return self.when


# -- ICMP ------------------------------------------------------------------------------------
class Pinger:
    """An ICMP raw socket inside a container's netns."""

    def __init__(self, netns: str) -> None:
        with in_netns(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.ident = os.getpid() & 0xFFFF

    def close(self) -> None:
        self.sock.close()

    def first_reply(self, dst: str, timeout: float = 5.0, interval: float = 0.001) -> float | None:
        """Echo requests every `interval` until the first reply; its monotonic time."""
        deadline = time.monotonic() + timeout
        seq, next_send = 0, 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                seq = (seq + 1) & 0xFFFF
                body = struct.pack("!d", now) + b"overlayd-bench"
                hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, seq)
                pkt = struct.pack("!BBHHH", 8, 0, inet_checksum(hdr + body), self.ident, seq) + body
                with contextlib.suppress(OSError):  # EHOSTUNREACH while ARP fails
                    self.sock.sendto(pkt, (dst, 0))
                next_send = now + interval
            if select.select([self.sock], [], [], max(0.0, next_send - time.monotonic()))[0]:
                while True:
                    try:
                        data, (src, _) = self.sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    when = time.monotonic()
                    ihl = (data[0] & 0x0F) * 4
                    kind, _, _, ident, _ = struct.unpack_from("!BBHHH", data, ihl)
                    if src == dst and kind == 0 and ident == self.ident:
                        return when
        return None


# -- helpers ---------------------------------------------------------------------------------
def stats(xs: list[float], digits: int = 1) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    s = sorted(xs)

    def pct(p: float) -> float:
        return s[max(0, math.ceil(p * len(s)) - 1)]

    return {
        "n": len(s),
        "min": round(s[0], digits),
        "p50": round(statistics.median(s), digits),
        "p90": round(pct(0.9), digits),
        "max": round(s[-1], digits),
    }


def connect(host: Host, net_id: str, container: str) -> None:
    r = host.request("POST", f"/networks/{net_id}/connect", {"Container": container})
    assert r.status == 200, f"connect {container}: {r.status} {r.body[:300]!r}"


def disconnect(host: Host, net_id: str, container: str) -> None:
    r = host.request("POST", f"/networks/{net_id}/disconnect", {"Container": container})
    assert r.status == 200, f"disconnect {container}: {r.status} {r.body[:300]!r}"


def overlay_ip(ns: Netns, subnet_prefix: str) -> str:
    out = ns.sh("ip", "-o", "-4", "addr", "show").stdout
    return next(a for a in re.findall(r"inet ([\d.]+)/", out) if a.startswith(subnet_prefix))


def sandbox_of(host: Host, net_id: str) -> str:
    return sandbox_path(run_dir_for(host.state_dir), net_id)


def remove_sandboxes(hosts: list[Host]) -> None:
    """A stopped overlayd leaves its sandboxes mounted (traffic survives restarts); these
    hosts are gone for good, so their mounts and run dirs go too."""
    for host in hosts:
        run_dir = run_dir_for(host.state_dir)
        ns_dir = sandbox_dir(run_dir)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(ns_dir):
                path = os.path.join(ns_dir, name)
                subprocess.run(["umount", "-l", path], capture_output=True, check=False)
                with contextlib.suppress(OSError):
                    os.unlink(path)
        shutil.rmtree(run_dir, ignore_errors=True)
        if os.path.exists(run_dir):
            log(f"could not remove {run_dir}")


def rss_mb(host: Host) -> float | None:
    if host.proc is None or host.proc.poll() is not None:
        return None
    with open(f"/proc/{host.proc.pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return round(kb / 1024, 1)


# -- the figures -----------------------------------------------------------------------------
def _call(watch: NeighWatch, done: dict[str, Any], fn: Any, *args: Any) -> None:
    """fn(*args) in a thread: done["t1"] = when it returned (done["error"] if it failed)."""
    try:
        fn(*args)
    except Exception as exc:
        done["error"] = exc
    done["t1"] = time.monotonic()
    with watch.cond:
        watch.cond.notify_all()


def bare_connects(host: Host, net_id: str, n: int) -> dict[str, Any]:
    """The connect call alone, nothing watching or pinging (the observer's own cost)."""
    out = []
    for k in range(n):
        ctr = host.container(f"u{k}")
        t0 = time.monotonic()
        connect(host, net_id, ctr.name)
        out.append((time.monotonic() - t0) * 1000)
        disconnect(host, net_id, ctr.name)
        host.containers.remove(ctr)
        delete_netns(ctr.name)
    return stats(out)


def connect_trials(c: Cluster, net_id: str, prefix: str, client: Netns, n: int,
                   tag: str) -> dict[str, Any]:  # fmt: skip
    """n fresh containers connected on host2 (one at a time), watched from host1."""
    h1, h2 = c.hosts[1], c.hosts[2]
    neigh_start, neigh_ret, ping_start, ping_ret, call, addr = [], [], [], [], [], []
    missed = 0
    pinger = Pinger(client.path)
    watch = NeighWatch(sandbox_of(h1, net_id))
    try:
        for k in range(n):
            ctr = h2.container(f"{tag}{k}")
            client.sh("ip", "neigh", "flush", "all")
            probe = Nl(ctr.path)
            addr_watch = AddrWatch(ctr.path, prefix)
            with watch.cond:
                watch.seen.clear()
            done: dict[str, Any] = {}
            th = threading.Thread(target=_call, args=(watch, done, connect, h2, net_id, ctr.name))
            t0 = time.monotonic()
            th.start()
            # ping from the first sign of the new IP: its neigh entry on host1 (which the
            # client's ARP needs anyway, so nothing is lost) or the call's return
            with watch.cond:
                watch.cond.wait_for(lambda done=done: watch.seen or "t1" in done, 30)
                early = next(iter(watch.seen), None)
            t_ping = pinger.first_reply(early) if early else None
            th.join(30)
            if "error" in done:
                raise done["error"]
            t1 = done["t1"]
            ip = next(a for a in probe.ipv4_addrs() if a.startswith(prefix))
            probe.close()
            if early is None:
                t_ping = pinger.first_reply(ip)
            elif early != ip:
                log(f"  {tag}{k}: host1 saw {early} first, the endpoint is {ip}")
                t_ping = None
            t_neigh = watch.wait(ip, 5.0)
            t_addr = addr_watch.stop()
            if t_addr is not None:
                addr.append((t_addr - t0) * 1000)
            call.append((t1 - t0) * 1000)
            if t_neigh is None or t_ping is None:
                missed += 1
                log(f"  {tag}{k}: {ip} neigh={t_neigh} ping={t_ping} (missed)")
            else:
                neigh_start.append((t_neigh - t0) * 1000)
                neigh_ret.append((t_neigh - t1) * 1000)
                ping_start.append((t_ping - t0) * 1000)
                ping_ret.append((t_ping - t1) * 1000)
            disconnect(h2, net_id, ctr.name)
            sb = Nl(sandbox_of(h1, net_id))
            try:
                wait_for(lambda sb=sb, ip=ip: ip not in {
                    d for d, _ in sb.neighbours(socket.AF_INET, watch.vxlan)},
                    timeout=10, interval=0.005, what=f"{ip} gone from host1")  # fmt: skip
            finally:
                sb.close()
            watch.seen.pop(ip, None)  # the IP may come back in a later trial
            h2.containers.remove(ctr)
            delete_netns(ctr.name)
    finally:
        watch.stop()
        pinger.close()
    return {
        "samples": n,
        "missed": missed,
        "neigh_first_seen_by": watch.by,
        "connect_call_ms": stats(call),
        "ip_in_new_container_after_call_start_ms": stats(addr),
        "neigh_after_call_start_ms": stats(neigh_start),
        "neigh_after_call_return_ms": stats(neigh_ret),
        "ping_after_call_start_ms": stats(ping_start),
        "ping_after_call_return_ms": stats(ping_ret),
    }


def fdb_towards(sb: Nl, vxlan: int, vtep: str) -> list[str]:
    return [mac for dst, mac in sb.neighbours(AF_BRIDGE, vxlan) if dst == vtep]


def kill_trials(c: Cluster, net_id: str, trials: int) -> dict[str, Any]:
    h2 = c.hosts[2]
    vtep = c.addr(2)
    watchers = {}
    for i in (0, 1):
        sb = Nl(sandbox_of(c.hosts[i], net_id))
        watchers[f"host{i}"] = (sb, sb.ifindex("vxlan0"))
    gone: dict[str, list[float]] = {name: [] for name in watchers}
    gone_all, back_all, back_after_ready = [], [], []
    timeouts = 0
    try:
        for k in range(trials):
            for name, (sb, vx) in watchers.items():
                assert fdb_towards(sb, vx, vtep), f"no FDB entry towards host2 on {name}"
            t0 = time.monotonic()
            h2.kill9()
            h2.ns.sh("ip", "link", "set", "eth0", "down")
            pending = set(watchers)
            deadline = t0 + 20
            while pending and time.monotonic() < deadline:
                for name in sorted(pending):
                    sb, vx = watchers[name]
                    if not fdb_towards(sb, vx, vtep):
                        gone[name].append(time.monotonic() - t0)
                        pending.discard(name)
                time.sleep(0.005)
            if pending:
                timeouts += 1
                log(f"  kill {k}: entries still on {sorted(pending)} after 20 s")
            else:
                gone_all.append(max(gone[name][-1] for name in watchers))
                log(f"  kill {k}: gone after {gone_all[-1]:.2f} s")
            h2.ns.sh("ip", "link", "set", "eth0", "up")
            t_up = time.monotonic()
            h2.start()
            t_ready = time.monotonic()
            wait_for(lambda: all(fdb_towards(sb, vx, vtep) for sb, vx in watchers.values()),
                     timeout=60, interval=0.005, what="host2's FDB entries back")  # fmt: skip
            back_all.append(time.monotonic() - t_up)
            back_after_ready.append(time.monotonic() - t_ready)
            log(f"  kill {k}: back {back_all[-1]:.2f} s after eth0 up")
    finally:
        for sb, _ in watchers.values():
            sb.close()
    return {
        "trials": trials,
        "timeouts": timeouts,
        "fdb_gone_on_all_peers_s": stats(gone_all, 2),
        "fdb_gone_per_peer_s": {name: stats(v, 2) for name, v in gone.items()},
        "back_after_eth0_up_and_restart_s": stats(back_all, 2),
        "back_after_restarted_daemon_answers_s": stats(back_after_ready, 2),
    }


def rtt_ms(ns: Netns, dst: str, n: int = 20) -> float:
    ns.sh("ping", "-c", "2", "-i", "0.05", dst)  # resolve ARP first
    out = ns.sh("ping", "-c", str(n), "-i", "0.05", dst).stdout
    return statistics.median(float(x) for x in re.findall(r"time=([\d.]+) ms", out))


def iperf(server: Netns, client: Netns, dst: str, seconds: int,
          procs: list[subprocess.Popen]) -> float:  # fmt: skip
    srv = server.popen("iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True)  # fmt: skip
    procs.append(srv)
    try:
        wait_for(lambda: ":5201" in server.sh("ss", "-Hltn").stdout, timeout=10,
                 what="iperf3 server listening")  # fmt: skip
        out = client.sh("iperf3", "-c", dst, "-t", str(seconds), "-J", timeout=seconds + 30).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    finally:
        stop_procs([srv])


def stop_procs(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def make_network(c: Cluster, name: str, subnet: str) -> str:
    h = c.hosts
    net_id = h[0].docker("network", "create", "--driver=overlay", "--attachable",
                         "--subnet", subnet, name).stdout.strip()  # fmt: skip
    wait_for(lambda: all(x.request("GET", f"/networks/{net_id}").status == 200 for x in h),
             timeout=15, what=f"{name} on every host")  # fmt: skip
    return net_id


def run(quick: bool) -> dict[str, Any]:
    samples, cold, kills, seconds = (5, 2, 1, 3) if quick else (20, 5, 3, 10)
    out: dict[str, Any] = {
        "bench": "overlay_cluster",
        "quick": quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "hosts": "3 overlayd in namespaces on one underlay bridge (host0 manager, 2 workers)",
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
    }
    procs: list[subprocess.Popen] = []
    hosts: list[Host] = []
    t_start = time.monotonic()
    try:
        with cluster_of(3, tag="bn") as c:
            hosts = list(c.hosts)
            h = c.hosts
            log("forming the swarm")
            form_swarm(c)
            net = make_network(c, "bench-net", "10.77.0.0/24")
            net2 = make_network(c, "bench-cold", "10.78.0.0/24")
            res = [host.container(f"r{i}") for i, host in enumerate(h)]
            for host, ctr in zip(h, res, strict=True):
                connect(host, net, ctr.name)
            ips = [overlay_ip(ctr, "10.77.") for ctr in res]
            connect(h[1], net2, res[1].name)  # host1 has the cold network's sandbox
            # host1's client container retries ARP every few ms instead of every 1 s, so the
            # ping figure is the overlay's, not the kernel's ARP back-off in the client
            for ctr in res:
                for dev in ("eth0", "eth1", "eth2"):
                    ctr.sh("sysctl", "-qw", f"net.ipv4.neigh.{dev}.retrans_time_ms=1",
                           check=False)  # fmt: skip
            for i in range(3):
                for j in range(3):
                    if i != j:
                        wait_for(lambda i=i, j=j: res[i].sh(
                            "ping", "-c1", "-W1", ips[j], check=False).returncode == 0,
                            timeout=10, what=f"r{i} -> r{j}")  # fmt: skip
            log(f"cluster ready after {time.monotonic() - t_start:.1f} s; connect trials")
            warm = connect_trials(c, net, "10.77.", res[1], samples, "w")
            bare = bare_connects(h[2], net, max(5, samples // 2))
            log(f"cold-sandbox trials ({cold})")
            cold_res = connect_trials(c, net2, "10.78.", res[1], cold, "k")
            out["connect_to_neigh_ms"] = {
                "what": "POST connect on host2 -> neigh entry on host1's vxlan0",
                "samples": warm["samples"],
                "missed": warm["missed"],
                "after_call_return": warm["neigh_after_call_return_ms"],
                "after_call_start": warm["neigh_after_call_start_ms"],
                "connect_call": warm["connect_call_ms"],
                "connect_call_unobserved": bare,
                "neigh_first_seen_by": warm["neigh_first_seen_by"],
                "ip_in_new_container_after_call_start": warm[
                    "ip_in_new_container_after_call_start_ms"
                ],
                "goal_ms": 20,
                "docker_ms": DOCKER["connect_to_neigh_ms"],
            }
            out["connect_to_ping_ms"] = {
                "what": "POST connect on host2 -> first echo reply host1 container -> new endpoint",
                "samples": warm["samples"],
                "after_call_start": warm["ping_after_call_start_ms"],
                "after_call_return": warm["ping_after_call_return_ms"],
                "goal_ms": 50,
                "docker_ms": DOCKER["connect_to_ping_ms"],
            }
            out["cold_sandbox"] = {
                "what": "as above, first endpoint of a network on host2 (sandbox made too)",
                **cold_res,
            }

            log("RTT")
            out["rtt_ms"] = {
                "overlay_median": rtt_ms(res[1], ips[2]),
                "underlay_median": rtt_ms(h[1].ns, c.addr(2)),
                "docker_overlay": DOCKER["overlay_rtt_ms"],
            }
            # Alternating rounds, median ratios: one pair alone swings 0.67-0.87 on 2 cores.
            # Docker's own data path (its devices and flags, built by hand) runs in the same
            # rounds on the same hosts: Docker's figure on this kernel, not from a table.
            rounds = []
            with docker_overlay([h[1].ns, h[2].ns], [c.addr(1), c.addr(2)],
                                DOCKER_LAYOUT_VNI, "10.79.0") as dk:  # fmt: skip
                wait_for(lambda: dk[1].sh("ping", "-c1", "-W1", "10.79.0.1",
                                          check=False).returncode == 0,
                         timeout=10, what="Docker-layout containers reach each other")  # fmt: skip
                for n in range(1 if quick else 3):
                    log(f"iperf3 round {n + 1}: underlay, then overlayd and Docker's layout "
                        f"({seconds} s each)")  # fmt: skip
                    u = iperf(h[1].ns, h[2].ns, c.addr(1), seconds, procs)
                    got: dict[str, float] = {}
                    # the two overlays take turns going first: no order bias
                    for leg in ("ours", "docker")[:: 1 if n % 2 == 0 else -1]:
                        if leg == "ours":
                            got[leg] = iperf(res[1], res[2], ips[1], seconds, procs)
                        else:
                            got[leg] = iperf(dk[0], dk[1], "10.79.0.1", seconds, procs)
                    rounds.append((u, got["ours"], got["docker"]))
            ratios = sorted(o / u for u, o, _ in rounds)
            docker_ratios = sorted(d / u for u, _, d in rounds)
            out["iperf3"] = {
                "seconds": seconds,
                "streams": 1,
                "rounds_gbit_s": [
                    {
                        "underlay": round(u / 1e9, 2),
                        "overlayd": round(o / 1e9, 2),
                        "docker_layout": round(d / 1e9, 2),
                    }
                    for u, o, d in rounds
                ],
                "ratio": round(ratios[len(ratios) // 2], 3),
                "ratios": [round(r, 3) for r in ratios],
                "docker_layout_ratio": round(docker_ratios[len(docker_ratios) // 2], 3),
                "docker_layout_ratios": [round(r, 3) for r in docker_ratios],
                "docker_ratio_recorded": DOCKER["iperf3_overlay_over_underlay"],
            }
            log(f"host kills ({kills})")
            out["host_killed_fdb_gone_s"] = {
                "what": "kill -9 overlayd on host2 + its eth0 down -> no FDB entry towards "
                "host2 on host0's and host1's vxlan0",
                **kill_trials(c, net, kills),
                "goal_s": 1.5,
                "docker_s": DOCKER["host_killed_fdb_gone_s"],
            }
            out["rss_mb"] = {f"host{i}": rss_mb(host) for i, host in enumerate(h)}
            out["rss_mb"]["note"] = "host2's daemon was restarted by the kill trials"
            if os.environ.get("BENCH_KEEP_LOGS"):
                keep = os.environ["BENCH_KEEP_LOGS"]
                os.makedirs(keep, exist_ok=True)
                for i, host in enumerate(h):
                    shutil.copy(host.log_path, os.path.join(keep, f"host{i}.log"))
    finally:
        stop_procs(procs)
        remove_sandboxes(hosts)
    out["loadavg_at_end"] = os.getloadavg()[0]
    out["docker"] = DOCKER
    out["goals"] = GOALS
    out["notes"] = [
        "Connect latencies use the HTTP API (POST /networks/{id}/connect on the worker "
        "host2); the docker CLI would add its own start-up (~50-100 ms) to the call, and "
        "Docker's 279/434 ms were taken after `docker run`.",
        "The neigh figure is when the entry appeared in host1's sandbox (netlink "
        "RTM_NEWNEIGH event, with a dump every 10 ms as a safety net; neigh_first_seen_by "
        "says which saw it first); 'after_call_return' is negative when the entry arrives "
        "before the HTTP reply (host1 learns the endpoint from the raft-replicated IP "
        "allocation, before host2 has even built the veth).",
        "The ping figure: one echo per ms from a raw socket in host1's container, starting "
        "as soon as the new IP is known (its neigh entry on host1, which the client's ARP "
        "needs anyway, or the call's return); the client container's ARP retransmit time "
        "is set to 1 ms so a miss costs ~a jiffy, not 1 s.",
        "Host kill: t0 is just before SIGKILL of overlayd; eth0 goes down a few ms later; "
        "FDB polled every 5 ms on both peers.",
        f"Machine: {os.cpu_count()} CPUs shared by the 3 daemons, the bench and whatever "
        "else runs; iperf3 figures are CPU-bound.",
        f"Total runtime {time.monotonic() - t_start:.0f} s.",
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples, 3 s iperf3 runs")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
