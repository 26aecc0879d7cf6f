"""overlayd's xfrm messages against the kernel and iproute2, in scratch namespaces.

The host kernel has no ESP, so only policies are exercised here; SAs (and the encrypted
path end to end) are tested inside user-mode Linux (test_overlay_encrypted.py)."""

from __future__ import annotations

import subprocess

import pytest

from dataplane import nsenter
from dataplane.model import ProgramXfrm
from dataplane.xfrm import Xfrm
from dataplane.xfrmmsg import POLICY_PRIORITY, REQID, PolicyEntry

pytestmark = pytest.mark.kernel

def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def test_policies_as_iproute2_sees_them_and_foreign_ones_left_alone() -> None:
    out = PolicyEntry(4790, True, REQID, POLICY_PRIORITY)
    into = PolicyEntry(4790, False, REQID, POLICY_PRIORITY)

    def body() -> tuple[str, object, str, object]:
        x = Xfrm()
        try:
            # someone else's policy (another reqid) must never be reported or touched
            ip("xfrm", "policy", "add", "src", "10.0.0.1/32", "dst", "10.0.0.2/32", "dir",
               "out", "tmpl", "proto", "esp", "mode", "transport", "reqid", "7")  # fmt: skip
            x.apply(ProgramXfrm(put_policies=(out, into)))
            x.apply(ProgramXfrm(put_policies=(out,)))  # again: replaced, not duplicated
            listing = ip("xfrm", "policy")
            seen = x.observe().policies
            x.apply(ProgramXfrm(del_policies=(out, into)))
            x.apply(ProgramXfrm(del_policies=(out,)))  # already gone: not an error
            return listing, seen, ip("xfrm", "policy"), x.observe().policies
        finally:
            x.close()

    listing, seen, left, after = nsenter.in_scratch_netns(body)
    assert seen == {out, into}
    policies = [p if p.startswith("src ") else "src " + p for p in listing.split("\nsrc ")]
    mine = [p for p in policies if f"reqid {REQID}" in p]
    assert len(mine) == 2, listing
    sent = next(p for p in mine if "dir out" in p)
    received = next(p for p in mine if "dir in" in p)
    for p in (sent, received):  # every address: the vxlan socket listens on all of them
        assert p.startswith("src 0.0.0.0/0 dst 0.0.0.0/0 proto udp dport 4790")
    for p in mine:
        assert "proto esp" in p and "mode transport" in p and "priority 8192" in p
    assert "10.0.0.1/32" in left and "4790" not in left  # the foreign one survives
    assert after == frozenset()


def test_nft_guard_drops_non_esp_on_the_encrypted_port() -> None:
    """Defense in depth should the policies be flushed: what is not ESP on the encrypted
    networks' port is dropped both ways; other ports are untouched."""
    from dataplane import nftables
    from tests.integration.nshelpers import lab

    script = nftables.render([], [4790]).script
    recv = (
        "import socket, sys\n"
        "socks = []\n"
        "for p in (4789, 4790):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', p))\n"
        "    s.settimeout(1.5); socks.append(s)\n"
        "print('up', flush=True)\n"
        "for s in socks:\n"
        "    try: print(s.getsockname()[1], s.recv(10).decode(), flush=True)\n"
        "    except TimeoutError: print(s.getsockname()[1], 'nothing', flush=True)\n"
    )
    send = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for p in (4789, 4790):\n"
        "    try: s.sendto(b'x', (sys.argv[1], p)); print(p, 'sent')\n"
        "    except PermissionError: print(p, 'refused')\n"
    )
    with lab("ovx") as world:
        a, b = world.netns("a"), world.netns("b")
        a.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b.path)
        for ns, ip_addr in ((a, "10.99.0.1/24"), (b, "10.99.0.2/24")):
            ns.run("ip", "addr", "add", ip_addr, "dev", "eth0")
            ns.run("ip", "link", "set", "eth0", "up")
        b.run("nft", "-f", "-", input=script)
        listener = world.interactive(b, "python3", "-c", recv)
        assert listener.read_line(timeout=10) == "up"
        # from an unguarded host: 4789 arrives, 4790 is dropped on the way in
        assert a.run("python3", "-c", send, "10.99.0.2").stdout.split("\n")[:2] == [
            "4789 sent", "4790 sent"]  # fmt: skip
        got = {listener.read_line(timeout=5) for _ in range(2)}
        assert got == {"4789 x", "4790 nothing"}
        # a guarded sender may not even send cleartext to 4790
        a.run("nft", "-f", "-", input=script)
        assert a.run("python3", "-c", send, "10.99.0.2").stdout.split("\n")[:2] == [
            "4789 sent", "4790 refused"]  # fmt: skip


def test_policy_bypasses_are_found() -> None:
    """disable_policy / disable_xfrm make the kernel skip the policies that keep encrypted
    networks' traffic ESP-only; a connect refuses them when no nft guard covers it."""
    from dataplane.sysctl import policy_bypasses

    def body() -> tuple[list[str], list[str]]:
        clean = policy_bypasses()  # a fresh namespace: only lo, which the kernel exempts
        for knob in ("disable_policy", "disable_xfrm"):
            with open(f"/proc/sys/net/ipv4/conf/all/{knob}", "w") as f:
                f.write("1\n")
        return clean, policy_bypasses()

    clean, found = nsenter.in_scratch_netns(body)
    assert clean == []
    assert found == ["net.ipv4.conf.all.disable_policy", "net.ipv4.conf.all.disable_xfrm"]
