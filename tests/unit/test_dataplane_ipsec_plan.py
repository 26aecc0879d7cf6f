"""Encrypted overlays, pure parts: derived SAs, the diff and its order, the messages."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dataplane import xfrmmsg
from dataplane.effects import after
from dataplane.ipsec_plan import derive, plan_xfrm, policies_ready, wanted
from dataplane.model import (
    HOLD_IPSEC,
    SANDBOX_VXLAN,
    Desired,
    IpsecSpec,
    Observed,
    ObservedLink,
    ObservedSandbox,
    OverlaySpec,
    VxlanInfo,
)

A, B, C = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), IPv4Address("192.0.2.3")
K1, K2, K3 = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
EA, EB, EC = "a" * 16, "b" * 16, "c" * 16
PORT = 4790


def overlay(vni: int, encrypted: bool) -> OverlaySpec:
    return OverlaySpec(f"{vni}" * 16, vni, IPv4Network("10.9.0.0/24"),
                       IPv4Interface("10.9.0.1/24"), 1416, PORT if encrypted else 4789,
                       encrypted)  # fmt: skip


def spec(keys: tuple[bytes, ...] = (K1, K2), primary: bytes = K1, epoch: str = EA,
         peers: tuple[tuple[IPv4Address, str], ...] = ((B, EB), (C, EC))) -> IpsecSpec:  # fmt: skip
    return IpsecSpec(keys, primary, epoch, peers, PORT)


def desired(me: IPv4Address = A, **kw: object) -> Desired:
    base = Desired(overlays=frozenset({overlay(4097, True), overlay(4098, False)}), vtep=me,
                   ipsec=spec())  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def test_both_ends_derive_the_same_sa_and_each_direction_and_epoch_its_own() -> None:
    a_to_b = derive(K1, A, B, EA)
    assert a_to_b == derive(K1, A, B, EA)
    assert len({a_to_b, derive(K1, B, A, EA), derive(K2, A, B, EA), derive(K1, A, B, EC)}) == 4
    spi, key = a_to_b
    assert spi >= 0x100 and len(key) == xfrmmsg.AEAD_KEY_BYTES
    sent_by_a = {s for s in wanted(desired(), Observed())[0].sas if s.src == A and s.dst == B}
    b_side = desired(B, ipsec=spec(epoch=EB, peers=((A, EA),)))
    received_by_b = {s for s in wanted(b_side, Observed())[0].sas if s.dst == B}
    assert sent_by_a and sent_by_a <= received_by_b


def test_sas_with_every_node_and_two_wildcard_policies() -> None:
    want, problems = wanted(desired(), Observed())
    assert problems == []
    outbound = [s for s in want.sas if s.src == A]
    inbound = [s for s in want.sas if s.dst == A]
    assert sorted(str(s.dst) for s in outbound) == ["192.0.2.2", "192.0.2.3"]
    assert sorted(str(s.src) for s in inbound) == ["192.0.2.2"] * 2 + ["192.0.2.3"] * 2
    assert all(s.dport == PORT and s.reqid == xfrmmsg.REQID for s in want.sas)
    assert {(p.dport, p.outbound) for p in want.policies} == {(PORT, True), (PORT, False)}
    # even without a local endpoint on an encrypted network: SAs must not flap
    assert wanted(desired(overlays=frozenset()), Observed())[0] == want
    # a peer that has not told its epoch yet: we can send to it, not decrypt it
    quiet = wanted(desired(ipsec=spec(peers=((B, ""),))), Observed())[0]
    assert {(s.src, s.dst) for s in quiet.sas} == {(A, B)}


def test_no_keys_or_epoch_yet_holds_traffic_back_and_keeps_what_the_kernel_has() -> None:
    want, problems = wanted(desired(ipsec=spec(keys=(), primary=b"")), Observed())
    assert not want.sas and len(want.policies) == 2
    assert problems and "no data-path keys" in problems[0]
    # a daemon starting before it knows its epoch must not tear down working SAs
    (op,), _, _ = plan_xfrm(desired(), Observed())
    working = after(Observed(), op)
    early, late, _ = plan_xfrm(desired(ipsec=spec(epoch="")), working)
    assert early == [] and late == []


def test_hold_keeps_the_kernel_as_it_is() -> None:
    """The swarm's state unknown for a moment (role switch, stop, catch-up): deleting SAs
    now and re-adding them later would restart their counters under the same keys."""
    (op,), _, _ = plan_xfrm(desired(), Observed())
    working = after(Observed(), op)
    assert plan_xfrm(desired(ipsec=HOLD_IPSEC), working) == ([], [], [])
    assert plan_xfrm(desired(ipsec=HOLD_IPSEC, overlays=frozenset()), working) == ([], [], [])
    assert len(plan_xfrm(desired(ipsec=None), working)[1][0].del_sas) == 6  # truly none


def test_hold_leaves_the_nft_guard_alone() -> None:
    from dataplane import nftables
    from dataplane.model import ApplyNft
    from dataplane.plan import plan

    guarded = replace(Observed(), nft=nftables.render([], [PORT]).fingerprint)
    assert not any(isinstance(op, ApplyNft) for op in plan(desired(ipsec=HOLD_IPSEC), guarded))
    assert not any(isinstance(op, ApplyNft) for op in plan(desired(), guarded))
    assert any(isinstance(op, ApplyNft) for op in plan(desired(ipsec=None), guarded))


def test_policies_outlive_the_last_vxlan_device_on_their_port() -> None:
    d = desired()
    early, late, _ = plan_xfrm(d, Observed())
    state = after(Observed(), early[0])
    assert policies_ready(state.xfrm, PORT) and not late
    vxlan = ObservedLink(SANDBOX_VXLAN, "vxlan", "overlayd:x:vxlan", 1416, True,
                         vxlan=VxlanInfo(4097, PORT, A, False, True))  # fmt: skip
    busy = replace(state, sandboxes={"/x": ObservedSandbox("/x", True, {SANDBOX_VXLAN: vxlan})})
    gone = replace(d, ipsec=None, overlays=frozenset())
    early, late, _ = plan_xfrm(gone, busy)
    assert not early and not late[0].del_policies and len(late[0].del_sas) == 6
    early, late, _ = plan_xfrm(gone, state)  # the device is gone: now the policies go too
    assert len(late[0].del_policies) == 2


def test_rotation_is_make_before_break_and_removals_come_late() -> None:
    d = desired()
    early, late, _ = plan_xfrm(d, Observed())
    (op,) = early
    assert not late and len(op.add_sas) == 6 and len(op.put_policies) == 2
    assert all(s.dst == A for s in op.add_sas[:4])  # receive before sending
    state = after(Observed(), op)
    assert plan_xfrm(d, state) == ([], [], [])
    # rotation: K3 arrives (newest), K2 becomes primary, K1 stays for receiving
    rotated = desired(ipsec=spec(keys=(K1, K2, K3), primary=K2))
    early, late, _ = plan_xfrm(rotated, state)
    assert {s.src for s in early[0].add_sas} == {A, B, C} and len(early[0].add_sas) == 4
    assert {(s.src, s.dst) for s in late[0].del_sas} == {(A, B), (A, C)}  # old outbound
    # a peer's new epoch (it rebooted): its inbound SAs are replaced, nothing else
    state = after(after(state, early[0]), late[0])
    rebooted = desired(ipsec=replace(rotated.ipsec, peers=((B, "f" * 16), (C, EC))))
    early, late, _ = plan_xfrm(rebooted, state)
    assert {(s.src, s.dst) for s in early[0].add_sas} == {(B, A)} and len(early[0].add_sas) == 3
    assert {(s.src, s.dst) for s in late[0].del_sas} == {(B, A)}


def test_keys_never_reach_a_log_line() -> None:
    (op,), _, _ = plan_xfrm(desired(), Observed())
    text = repr(op) + repr(op.add_sas) + repr(desired())
    assert K1.hex() not in text and op.add_sas[0].key.hex() not in text
    assert repr(op).startswith("ProgramXfrm(SA +6")


def test_messages_round_trip_and_survive_garbage() -> None:
    spi, key = derive(K1, A, B, EA)
    sa = xfrmmsg.SaEntry(A, B, spi, key, xfrmmsg.REQID, PORT)
    msg = xfrmmsg.new_sa(7, sa)
    # a dump reply has the request's layout: usersa_info, then the attributes
    (parsed,) = list(xfrmmsg.parse(msg))
    assert parsed == sa and parsed.key == key
    for outbound in (True, False):
        p = xfrmmsg.PolicyEntry(PORT, outbound, xfrmmsg.REQID, xfrmmsg.POLICY_PRIORITY)
        dump_like = bytearray(xfrmmsg.put_policy(8, p))
        dump_like[4:6] = xfrmmsg.XFRM_MSG_NEWPOLICY.to_bytes(2, "little")
        assert list(xfrmmsg.parse(bytes(dump_like))) == [p]
    for cut in range(len(msg)):
        list(xfrmmsg.parse(msg[:cut]))  # truncated: nothing raises
    larval = bytearray(msg)
    larval[16 + 72 : 16 + 76] = bytes(4)  # SPI 0: an acquire's placeholder, not ours
    assert list(xfrmmsg.parse(bytes(larval))) == []
