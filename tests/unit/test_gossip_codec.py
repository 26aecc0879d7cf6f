"""Codec: every message round-trips; untrusted bytes only ever raise DecodeError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import codec
from gossip.codec import MAX_CLOCK, MAX_INCARNATION, DecodeError, decode, encode, encode_compound
from gossip.messages import (
    Ack,
    Alive,
    Compound,
    Dead,
    EndpointRecord,
    IndirectPing,
    Nack,
    NetDigest,
    NetworkEvent,
    NodeState,
    Ping,
    PushPull,
    State,
    Suspect,
    TableDigest,
    TableEntry,
    TableState,
)

names = st.text(max_size=20)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
incarnations = st.integers(0, MAX_INCARNATION)  # higher ones are refused (below)
clocks = st.integers(0, MAX_CLOCK)
ipv4 = st.ip_addresses(v=4).map(str)
ips = st.ip_addresses().map(str)
addrs = st.tuples(ips, st.integers(0, 65535))
macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
records = st.builds(
    EndpointRecord,
    endpoint_id=names,
    ip=ips,
    mac=macs,
    vtep=ipv4,
    name=names,
    aliases=st.lists(names, max_size=4).map(tuple),
)


@st.composite
def entries(draw: st.DrawFn) -> TableEntry:
    rec = draw(st.none() | records)
    eid = draw(names)
    if rec is not None:
        rec = EndpointRecord(eid, rec.ip, rec.mac, rec.vtep, rec.name, rec.aliases)
    ttl = 0.0 if rec is not None else draw(st.integers(0, 10**6)) / 1000
    return TableEntry(draw(names), eid, draw(names), draw(clocks), rec, ttl)


net_events = st.builds(NetworkEvent, names, names, clocks, st.booleans())
digests = st.builds(NetDigest, names, u32, u64)
node_states = st.builds(
    NodeState, names, addrs, incarnations, st.sampled_from(list(State)), st.binary(max_size=40)
)
simple = st.one_of(
    st.builds(Ping, u32, names, names, addrs),
    st.builds(IndirectPing, u32, names, addrs, names, addrs, st.booleans()),
    st.builds(Ack, u32),
    st.builds(Nack, u32),
    st.builds(Alive, incarnations, names, addrs, st.binary(max_size=64)),
    st.builds(Suspect, incarnations, names, names),
    st.builds(Dead, incarnations, names, names),
    entries(),
    net_events,
    st.builds(TableDigest, names, st.lists(digests, max_size=5).map(tuple)),
)
streams = st.one_of(
    st.builds(
        PushPull,
        names,
        st.booleans(),
        st.booleans(),
        st.lists(node_states, max_size=5).map(tuple),
        st.binary(max_size=100),
    ),
    st.builds(
        TableState,
        names,
        st.booleans(),
        st.lists(names, max_size=4).map(tuple),
        st.lists(net_events, max_size=4).map(tuple),
        st.lists(entries(), max_size=4).map(tuple),
        st.lists(digests, max_size=4).map(tuple),
    ),
)


@given(simple | streams)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg)) == msg  # type: ignore[arg-type]


@given(st.lists(simple, min_size=2, max_size=20))
def test_compound_round_trip(msgs: list[object]) -> None:
    data = encode_compound([encode(m) for m in msgs])  # type: ignore[arg-type]
    assert decode(data) == Compound(tuple(msgs))  # type: ignore[arg-type]


def test_sizes_are_compact() -> None:
    ping = Ping(7, "node-17", "node-3", ("10.0.0.3", 7946))
    assert len(encode(ping)) == 1 + 4 + 8 + 7 + 7
    assert len(encode(Ack(1))) == 5
    assert codec.compound_overhead(1) == 0
    assert codec.compound_overhead(3) == 8


def test_single_part_compound_is_bare() -> None:
    raw = encode(Ack(3))
    assert encode_compound([raw]) == raw


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\xff",
        bytes([codec.ACK]),
        bytes([codec.ACK, 0, 0, 0, 1, 0]),  # trailing byte
        bytes([codec.COMPOUND, 2, 0, 5, 0, 5]) + encode(Ack(1)),  # second part missing
        bytes([codec.COMPOUND, 1, 0, 2]) + bytes([codec.COMPOUND, 0]),  # nested
        bytes([codec.PUSH_PULL, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]),  # huge count, no bytes
        bytes([codec.ALIVE, 0, 0, 0, 1, 1, 65, 5, 1, 2, 3, 4, 5, 0, 0, 0, 0]),  # bad ip len
        bytes([codec.SUSPECT, 0, 0, 0, 1, 2, 0xC3, 0x28, 0]),  # bad utf-8
        bytes([codec.INDIRECT, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4, 0, 1, 0, 4, 1, 2, 3, 4, 0, 1, 7]),
    ],
)
def test_malformed_is_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_oversize_refused_unread() -> None:
    with pytest.raises(DecodeError):
        decode(encode(Ack(1)), max_size=3)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(simple | streams, st.data())
def test_fuzz_forged_frames(msg: object, data: st.DataObject) -> None:
    """Valid frames with bytes flipped, cut or inserted: decoded or DecodeError, nothing else."""
    raw = bytearray(encode(msg))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i:]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    with contextlib.suppress(DecodeError):
        decode(bytes(raw))


def test_decoding_allocates_at_most_the_input() -> None:
    """A count field promising 2**32 items in a 12-byte input is refused before any loop."""
    data = bytes([codec.TABLE_STATE, 0, 0, 0, 0]) + b"\xff\xff\xff\xff" + b"\x00" * 3
    with pytest.raises(DecodeError, match="count"):
        decode(data)


@pytest.mark.parametrize(
    "msg",
    [
        Suspect(0xFFFFFFFF, "me", "p"),  # refuting it would need incarnation 2**32
        Alive(MAX_INCARNATION + 1, "p", ("10.0.0.2", 7946), b""),
        Dead(0xFFFFFFFF, "me", "p"),
    ],
)
def test_incarnations_at_the_top_of_the_field_are_refused(msg: object) -> None:
    with pytest.raises(DecodeError):
        decode(encode(msg))  # type: ignore[arg-type]


def test_clocks_at_the_top_of_the_field_are_refused() -> None:
    ev = NetworkEvent("n", "net", 2**64 - 1, True)
    with pytest.raises(DecodeError):
        decode(encode(TableState("s", False, ("net",), (ev,), ())))
