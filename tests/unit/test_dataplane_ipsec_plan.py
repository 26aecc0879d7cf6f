"""Encrypted overlays, pure parts: derived SAs, the diff, the messages."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dataplane import xfrmmsg
from dataplane.effects import after
from dataplane.ipsec_plan import derive, plan_xfrm, wanted
from dataplane.model import Desired, IpsecKeys, Observed, OverlaySpec, PeerSpec

A, B, C = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), IPv4Address("192.0.2.3")
K1, K2, K3 = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16


def overlay(net: str, vni: int, encrypted: bool) -> OverlaySpec:
    return OverlaySpec(net * 64, vni, IPv4Network("10.9.0.0/24"), IPv4Interface("10.9.0.1/24"),
                       1416, 4790 if encrypted else 4789, encrypted)  # fmt: skip


def peer(net: str, last: int, vtep: IPv4Address) -> PeerSpec:
    return PeerSpec(net * 64, IPv4Address(f"10.9.0.{last}"), f"02:42:0a:09:00:{last:02x}", vtep)


def desired(me: IPv4Address, keys: tuple[bytes, ...] = (K1, K2), primary: bytes = K1,
            **kw: object) -> Desired:  # fmt: skip
    base = Desired(
        overlays=frozenset({overlay("e", 4097, True), overlay("p", 4098, False)}),
        peers=frozenset({peer("e", 2, B), peer("e", 3, C), peer("p", 4, C), peer("p", 5, B)}),
        vtep=me,
        ipsec=IpsecKeys(keys, primary),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_both_ends_derive_the_same_sa_and_each_direction_its_own() -> None:
    a_to_b = derive(K1, A, B)
    assert a_to_b == derive(K1, A, B)
    assert a_to_b != derive(K1, B, A) and a_to_b != derive(K2, A, B)
    spi, key = a_to_b
    assert spi >= 0x100 and len(key) == xfrmmsg.AEAD_KEY_BYTES
    sent_by_a = {s for s in wanted(desired(A))[0].sas if s.src == A}
    b_side = desired(B, peers=frozenset({peer("e", 1, A)}))
    received_by_b = {s for s in wanted(b_side)[0].sas if s.dst == B}
    assert {s for s in sent_by_a if s.dst == B} <= received_by_b


def test_sas_and_policies_only_towards_peers_of_encrypted_networks() -> None:
    want, problems = wanted(desired(A))
    assert problems == []
    # out to B and C with the primary key; in from each with both ring keys
    assert sorted((str(s.src), str(s.dst)) for s in want.sas) == [
        ("192.0.2.1", "192.0.2.2"), ("192.0.2.1", "192.0.2.3"),
        ("192.0.2.2", "192.0.2.1"), ("192.0.2.2", "192.0.2.1"),
        ("192.0.2.3", "192.0.2.1"), ("192.0.2.3", "192.0.2.1")]  # fmt: skip
    # two policies on the encrypted networks' port, whatever the number of peers
    assert {(str(p.local), p.dport, p.outbound) for p in want.policies} == {
        ("192.0.2.1", 4790, True), ("192.0.2.1", 4790, False)}  # fmt: skip
    # no encrypted overlay with a local endpoint: nothing at all
    plain = desired(A, overlays=frozenset({overlay("p", 4098, False)}))
    assert wanted(plain) == (wanted(plain)[0], []) and not wanted(plain)[0].sas


def test_no_keys_yet_is_a_problem_not_cleartext() -> None:
    want, problems = wanted(desired(A, ipsec=None))
    assert not want.sas and len(want.policies) == 2  # the policies alone: nothing passes
    assert problems and "no data-path keys" in problems[0]


def test_diff_is_minimal_and_key_rotation_is_make_before_break() -> None:
    d = desired(A)
    ops, _ = plan_xfrm(d, Observed().xfrm)
    (op,) = ops
    assert len(op.add_sas) == 6 and len(op.put_policies) == 2
    assert all(s.dst == A for s in op.add_sas[:4])  # receive before sending
    state = after(Observed(), op)
    assert plan_xfrm(d, state.xfrm) == ([], [])
    # rotation: K3 arrives (newest), K2 becomes primary, K1 stays for receiving
    rotated = desired(A, keys=(K1, K2, K3), primary=K2)
    (op,) = plan_xfrm(rotated, state.xfrm)[0]
    assert {s.src for s in op.add_sas} == {A, B, C} and len(op.add_sas) == 4
    assert {(s.src, s.dst) for s in op.del_sas} == {(A, B), (A, C)}  # old outbound only
    assert not op.put_policies and not op.del_policies
    # B leaves the encrypted network: its SAs go, the policies stay (C is still there)
    state = after(state, op)
    gone = replace(rotated, peers=frozenset(p for p in rotated.peers if p.vtep != B))
    (op,) = plan_xfrm(gone, state.xfrm)[0]
    assert not op.add_sas and not op.del_policies
    assert {B} == {s.dst for s in op.del_sas if s.src == A} == {s.src for s in op.del_sas
                                                                 if s.dst == A}  # fmt: skip
    # the last encrypted network goes: everything of ours goes
    state = after(state, op)
    (op,) = plan_xfrm(replace(gone, overlays=frozenset()), state.xfrm)[0]
    assert len(op.del_policies) == 2 and len(op.del_sas) == len(state.xfrm.sas)


def test_keys_never_reach_a_log_line() -> None:
    (op,) = plan_xfrm(desired(A), Observed().xfrm)[0]
    text = repr(op) + repr(op.add_sas)
    assert K1.hex() not in text and op.add_sas[0].key.hex() not in text
    assert repr(op).startswith("ProgramXfrm(SA +6")


def test_sa_message_layout_round_trips() -> None:
    spi, key = derive(K1, A, B)
    sa = xfrmmsg.SaEntry(A, B, spi, key, xfrmmsg.REQID)
    msg = xfrmmsg.new_sa(7, sa)
    assert len(msg) == 16 + xfrmmsg.SIZE_USERSA_INFO + 4 + 72 + 20
    # a dump reply has the request's layout: usersa_info, then the AEAD attribute
    (parsed,) = list(xfrmmsg.parse(msg))
    assert parsed == sa and parsed.key == key
    for outbound in (True, False):
        p = xfrmmsg.PolicyEntry(A, 4790, outbound, xfrmmsg.REQID, xfrmmsg.POLICY_PRIORITY)
        dump_like = bytearray(xfrmmsg.put_policy(8, p))
        dump_like[4:6] = xfrmmsg.XFRM_MSG_NEWPOLICY.to_bytes(2, "little")
        assert list(xfrmmsg.parse(bytes(dump_like))) == [p]
