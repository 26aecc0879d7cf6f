"""The encrypted overlay path end to end, run inside user-mode Linux by
test_overlay_encrypted.py (the host kernel has no ESP); prints one JSON report.

Two hosts on an underlay bridge, each driving its own Dataplane (the overlay lab of
test_dataplane_overlay_lab.py): an encrypted network (its VXLAN on port 4790, through ESP)
and a plain one (4789) with one container each per host. Then: pings; what crosses the
underlay; cleartext VXLAN injected from a third underlay host; key rotation under a ping
flood; idempotence and adoption after kill -9 of a driver; removal.
"""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from dataplane.ipsec_plan import derive
from dataplane.model import Desired, EndpointSpec, IpsecSpec
from dataplane.mtu import overlay_mtu
from dataplane.reach import inet_checksum
from tests.integration.nshelpers import Netns
from tests.integration.test_dataplane_overlay_lab import (
    Host,
    as_peer,
    endpoint,
    overlay,
    overlay_lab,
    pings,
    wait_ping,
)

KEYS = [bytes([i]) * 16 for i in range(1, 6)]
EPOCH = {1: "1" * 16, 2: "2" * 16}
LISTENER = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9999))\n"
    "print('up', flush=True)\n"
    "while True: print(s.recv(100).decode(), flush=True)\n"
)


def sa_packets(host: Host) -> int:
    out = host.ns.run("ip", "-s", "xfrm", "state").stdout
    return sum(int(p) for _b, p in re.findall(r"(\d+)\(bytes\), (\d+)\(packets\)", out))


def xfrm_listing(host: Host) -> tuple[str, str]:
    return host.ns.run("ip", "xfrm", "state").stdout, host.ns.run("ip", "xfrm", "policy").stdout


def vxlan_frame(vni: int, ep: EndpointSpec, payload: bytes) -> bytes:
    """VXLAN + Ethernet + IPv4 + UDP to ep's port 9999, from a made-up sender."""
    udp = struct.pack("!HHHH", 5555, 9999, 8 + len(payload), 0) + payload
    src = IPv4Address(int(ep.address.network.network_address) + 99)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src.packed,
                      ep.address.ip.packed)  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
    eth = bytes.fromhex(ep.mac.replace(":", "")) + bytes.fromhex("02420a4d0063") + b"\x08\x00"
    return struct.pack("!II", 0x08000000, vni << 8) + eth + hdr + udp


def capture(ns: Netns, ifname: str, expr: str) -> subprocess.Popen[str]:
    return subprocess.Popen(ns.argv("tcpdump", "-i", ifname, "-n", "-l", "-q", expr),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip


def stop(proc: subprocess.Popen[str]) -> int:
    """Lines the capture printed (one per packet)."""
    time.sleep(0.2)  # let the last packets reach tcpdump's buffer before it stops
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    return len([line for line in out.splitlines() if line.strip()])


def main() -> None:
    report: dict[str, Any] = {}
    with overlay_lab(nft=False) as ol:  # this UML kernel has no nftables `ip` family
        h1, h2 = ol.add_hosts(2)
        assert ol.underlay is not None
        mtu = overlay_mtu(1500, encrypted=True)
        enc = replace(overlay("e", 4097, "10.77.0.0/24", mtu=mtu, encrypted=True), dstport=4790)
        plain = overlay("p", 4098, "10.78.0.0/24")
        c1, c2 = ol.world.netns("c1"), ol.world.netns("c2")
        e1, e2 = endpoint(enc, c1, 11), endpoint(enc, c2, 12)
        p1, p2 = endpoint(plain, c1, 11, "eth1"), endpoint(plain, c2, 12, "eth1")

        def desired(me: Host, other: Host, mine: list[EndpointSpec], theirs: list[EndpointSpec],
                    keys: tuple[tuple[bytes, ...], bytes] | None,
                    nets: tuple[Any, ...] = (enc, plain)) -> Desired:  # fmt: skip
            ids = {n.network_id for n in nets}
            me_i, other_i = (1, 2) if me is h1 else (2, 1)
            ipsec = None if keys is None else IpsecSpec(
                keys[0], keys[1], EPOCH[me_i], ((other.vtep, EPOCH[other_i]),), 4790)
            return Desired(
                endpoints=frozenset(e for e in mine if e.network_id in ids),
                overlays=frozenset(nets),
                peers=frozenset(as_peer(e, other) for e in theirs if e.network_id in ids),
                vtep=me.vtep, ipsec=ipsec,
            )  # fmt: skip

        ring = ((KEYS[0], KEYS[1]), KEYS[0])
        d1 = desired(h1, h2, [e1, p1], [e2, p2], ring)
        d2 = desired(h2, h1, [e2, p2], [e1, p1], ring)
        report["first"] = [h1.reconcile(d1), h2.reconcile(d2)]
        report["again"] = [h1.reconcile(d1)["applied"], h2.reconcile(d2)["applied"]]
        enc_ip, plain_ip = str(e2.address.ip), str(p2.address.ip)
        report["ping_encrypted"] = wait_ping(c1, enc_ip)
        report["ping_plain"] = wait_ping(c1, plain_ip)
        report["ping_encrypted_full_mtu"] = pings(c1, enc_ip, size=enc.mtu - 28)
        report["ping_encrypted_one_byte_more"] = pings(c1, enc_ip, size=enc.mtu - 27)

        # what crosses the underlay
        before = sa_packets(h1)
        esp = capture(ol.underlay, "ul0", "ip proto 50")
        clear = capture(ol.underlay, "ul0", "udp port 4790")
        plain_wire = capture(ol.underlay, "ul0", "udp port 4789")
        time.sleep(0.5)  # tcpdump attaches
        c1.run("ping", "-c", "10", "-i", "0.05", "-W", "1", enc_ip)
        enc_sa_packets = sa_packets(h1) - before
        c1.run("ping", "-c", "10", "-i", "0.05", "-W", "1", plain_ip)
        report["wire"] = {"esp": stop(esp), "udp_4790": stop(clear), "udp_4789": stop(plain_wire),
                          "sa_packets_encrypted_pings": enc_sa_packets,
                          "sa_packets_plain_pings": sa_packets(h1) - before - enc_sa_packets}  # fmt: skip

        # cleartext VXLAN from a third host on the underlay
        x = ol.world.netns("x")
        ol.underlay.run("ip", "link", "add", "px", "type", "veth", "peer", "name", "eth0",
                        "netns", x.path)  # fmt: skip
        ol.underlay.run("ip", "link", "set", "px", "master", "ul0", "up")
        x.run("ip", "addr", "add", "192.0.2.99/24", "dev", "eth0")
        x.run("ip", "link", "set", "eth0", "up")
        h2.ns.run("ip", "addr", "add", "192.0.2.50/24", "dev", "eth0")  # a second address
        listener = ol.world.interactive(c2, sys.executable, "-c", LISTENER)
        assert listener.read_line(timeout=20) == "up"
        inject = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
            "for _ in range(5): s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))\n"
        )

        def injected(vni: int, ep: EndpointSpec, port: int, tag: str, to: str = "") -> bool:
            frame = vxlan_frame(vni, ep, tag.encode())
            x.run(sys.executable, "-c", inject, frame.hex(), to or str(h2.vtep), str(port))
            try:
                return listener.read_line(timeout=2) == tag
            except TimeoutError:
                return False

        report["inject"] = {
            "plain_vni_plain_port": injected(plain.vni, p2, 4789, "p"),  # the control: arrives
            "encrypted_vni_encrypted_port": injected(enc.vni, e2, 4790, "e1"),
            "encrypted_vni_plain_port": injected(enc.vni, e2, 4789, "e2"),
            "encrypted_vni_second_address": injected(enc.vni, e2, 4790, "e3", "192.0.2.50"),
            "encrypted_vni_broadcast": injected(enc.vni, e2, 4790, "e4", "192.0.2.255"),
            "plain_vni_broadcast": injected(plain.vni, p2, 4789, "p2", "192.0.2.255"),
        }
        stats = h2.ns.run("cat", "/proc/net/xfrm_stat").stdout
        report["xfrm_stat_h2"] = {k: int(v) for k, v in re.findall(r"(\w+)\s+(\d+)", stats)
                                  if int(v)}  # fmt: skip

        # key rotation under a ping flood: the newest key is installed for receiving one
        # rotation before anyone sends with it (the managers' rule), host by host
        flood = subprocess.Popen(c1.argv("ping", "-i", "0.01", "-c", "400", "-q", enc_ip),
                                 stdout=subprocess.PIPE, text=True)  # fmt: skip
        rotations = [(tuple(KEYS[:3]), KEYS[1]), (tuple(KEYS[1:4]), KEYS[2])]
        applied = []
        for new in rotations:
            time.sleep(0.5)
            for me, other, mine, theirs in ((h1, h2, [e1, p1], [e2, p2]),
                                            (h2, h1, [e2, p2], [e1, p1])):  # fmt: skip
                applied.append(me.reconcile(desired(me, other, mine, theirs, new)))
        out, _ = flood.communicate(timeout=60)
        report["rotation"] = {"ping": out.strip().splitlines()[-2:],
                              "applied": [r["applied"] for r in applied],
                              "errors": [r["errors"] for r in applied]}  # fmt: skip
        states, _ = xfrm_listing(h1)
        spi_now, _ = derive(KEYS[2], h1.vtep, h2.vtep, EPOCH[1])
        spi_old, _ = derive(KEYS[0], h1.vtep, h2.vtep, EPOCH[1])
        report["rotation"]["out_spi_now"] = f"0x{spi_now:08x}" in states
        report["rotation"]["out_spi_first_gone"] = f"0x{spi_old:08x}" not in states
        report["rotation"]["sa_count_h1"] = states.count("proto esp")

        # h2 "reboots" (a new epoch): h1 learns it first (as from the managers), then h2
        # sends with it; the ping works on with fresh SAs both ways
        last = rotations[-1]
        EPOCH[2] = "9" * 16
        applied = [h1.reconcile(desired(h1, h2, [e1, p1], [e2, p2], last)),
                   h2.reconcile(desired(h2, h1, [e2, p2], [e1, p1], last))]  # fmt: skip
        report["new_epoch"] = {"errors": [r["errors"] for r in applied],
                               "ping": wait_ping(c1, enc_ip),
                               "spi": f"0x{derive(last[1], h2.vtep, h1.vtep, EPOCH[2])[0]:08x}"
                               in xfrm_listing(h1)[0]}  # fmt: skip

        # kill -9 of a driver: the kernel keeps it all, a new one adopts it unchanged
        d1 = desired(h1, h2, [e1, p1], [e2, p2], last)
        ol.kill_driver(h1)
        report["ping_while_driver_dead"] = pings(c1, enc_ip)
        ol.start_driver(h1)
        report["adopted"] = h1.reconcile(d1)["applied"]

        # the swarm has no encrypted network any more: nothing of ours is left in h1's tables
        gone = desired(h1, h2, [e1, p1], [e2, p2], None, (plain,))
        report["removed"] = h1.reconcile(gone)
        report["policies_after_first_pass"] = xfrm_listing(h1)[1].count("dport 4790")
        # the policies outlive the sandbox by one pass: the next one takes them
        report["removed_again"] = h1.reconcile(gone)["applied"]
        report["left_after_removal"] = xfrm_listing(h1)
        report["ping_plain_after_removal"] = pings(c1, plain_ip)
        listener.proc.kill()
    print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
