"""overlayd's xfrm messages against the kernel and iproute2, in scratch namespaces.

The host kernel has no ESP, so only policies are exercised here; SAs (and the encrypted
path end to end) are tested inside user-mode Linux (test_overlay_encrypted.py)."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address

import pytest

from dataplane import nsenter
from dataplane.model import ProgramXfrm
from dataplane.xfrm import Xfrm
from dataplane.xfrmmsg import MARK, POLICY_PRIORITY, REQID, PolicyEntry

pytestmark = pytest.mark.kernel

A, B = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def test_policies_as_iproute2_sees_them_and_foreign_ones_left_alone() -> None:
    def body() -> tuple[str, object, object, str, str]:
        x = Xfrm()
        try:
            p = PolicyEntry(A, B, 4789, MARK, REQID, POLICY_PRIORITY)
            # someone else's policy (no mark of ours) and one iproute2 makes with our mark
            ip("xfrm", "policy", "add", "src", "10.0.0.1/32", "dst", "10.0.0.2/32", "dir",
               "out", "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
            ip("xfrm", "policy", "add", "src", str(B), "dst", str(A), "proto", "udp", "dport",
               "4790", "dir", "out", "priority", str(POLICY_PRIORITY), "mark", hex(MARK),
               "mask", "0xffffffff", "tmpl", "src", str(B), "dst", str(A), "proto", "esp",
               "mode", "transport", "reqid", str(REQID))  # fmt: skip
            x.apply(ProgramXfrm(put_policies=(p,)))
            x.apply(ProgramXfrm(put_policies=(p,)))  # again: replaced, not duplicated
            listing = ip("xfrm", "policy")
            seen = x.observe().policies
            theirs = PolicyEntry(B, A, 4790, MARK, REQID, POLICY_PRIORITY)
            x.apply(ProgramXfrm(del_policies=(p, theirs)))
            x.apply(ProgramXfrm(del_policies=(p,)))  # already gone: not an error
            return listing, seen, {p, theirs}, ip("xfrm", "policy"), str(x.observe())
        finally:
            x.close()

    listing, seen, expected, left, after = nsenter.in_scratch_netns(body)
    assert seen == expected
    ours = listing.split("src 192.0.2.1/32 dst 192.0.2.2/32", 1)[1].split("\nsrc ", 1)[0]
    assert "proto udp dport 4789" in ours and "dir out priority 8192" in ours
    assert f"mark {MARK:#x}/0xffffffff" in ours and f"reqid {REQID}" in ours
    assert "proto esp" in ours and "mode transport" in ours
    assert listing.count("192.0.2.1/32 dst 192.0.2.2/32") == 1
    assert "10.0.0.1/32" in left and "192.0.2" not in left  # the foreign one survives
    assert "policies=frozenset()" in after
