"""Binary codec for gossip messages: a fixed struct layout, big-endian.

Why a struct layout and not msgpack: no extra dependency; every field has a
known width, so a SWIM ping is ~30 bytes instead of msgpack's keyed maps; and
the decoder is a short hand-written reader whose every length is checked
against the bytes actually present, which makes the untrusted-input
guarantees easy to see: `decode` raises only `DecodeError`, and never
allocates more than a small multiple of the input (nothing is pre-sized from
a count field; lengths are checked before slicing).

Layout: 1 type byte, then the fields of the dataclass in order. Strings are
u8 length + UTF-8, blobs u16 (meta) or u32 (stream user state) length + bytes,
addresses u8 family length (4/16) + IP + u16 port, MACs 6 bytes, tombstone
TTLs u32 milliseconds. A compound is type, u8 count, count x u16 lengths, then
the parts (memberlist's compoundMsg); compounds do not nest.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from gossip.messages import (
    Ack,
    Addr,
    Alive,
    Compound,
    Dead,
    EndpointRecord,
    IndirectPing,
    Message,
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


class DecodeError(Exception):
    """The bytes are not a well-formed message. The only exception `decode` raises."""


PING, INDIRECT, ACK, NACK, ALIVE, SUSPECT, DEAD, COMPOUND = 1, 2, 3, 4, 5, 6, 7, 8
PUSH_PULL, TABLE_ENTRY, NETWORK_EVENT, TABLE_DIGEST, TABLE_STATE = 9, 10, 11, 12, 13

COMPOUND_HEADER = 2  # type + count
COMPOUND_PER_PART = 2  # u16 length
MAX_COMPOUND_PARTS = 255

_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_TYPE_U32 = struct.Struct("!BI")


# --- encoding -------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _pack_ip(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


@lru_cache(maxsize=65536)
def _unpack_ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _s(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"string longer than 255 bytes: {text[:40]!r}...")
    return _U8.pack(len(raw)) + raw


def _ip(ip: str) -> bytes:
    raw = _pack_ip(ip)
    return _U8.pack(len(raw)) + raw


def _addr(addr: Addr) -> bytes:
    return _ip(addr[0]) + _U16.pack(addr[1])


def _blob16(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("blob longer than 65535 bytes")
    return _U16.pack(len(data)) + data


def _mac(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"bad MAC {mac!r}")
    return raw


def _record(r: EndpointRecord) -> bytes:
    if len(r.aliases) > 255:
        raise ValueError("more than 255 aliases")
    parts = [_ip(r.ip), _mac(r.mac), _ip(r.vtep), _s(r.name), _U8.pack(len(r.aliases))]
    parts.extend(_s(a) for a in r.aliases)
    return b"".join(parts)


def _entry_body(e: TableEntry) -> bytes:
    ttl_ms = min(max(round(e.ttl * 1000), 0), 0xFFFFFFFF)
    head = [_s(e.network), _s(e.endpoint_id), _s(e.owner), _U64.pack(e.clock), _U32.pack(ttl_ms)]
    if e.record is None:
        return b"".join([*head, b"\x00"])
    return b"".join([*head, b"\x01", _record(e.record)])


def _net_event_body(e: NetworkEvent) -> bytes:
    return _s(e.node) + _s(e.network) + _U64.pack(e.clock) + (b"\x01" if e.joined else b"\x00")


def _digest_body(d: NetDigest) -> bytes:
    return _s(d.network) + _U32.pack(d.count) + _U64.pack(d.digest)


def _node_state(n: NodeState) -> bytes:
    return (
        _s(n.name) + _addr(n.addr) + _U32.pack(n.incarnation) + bytes((n.state,)) + _blob16(n.meta)
    )


def _enc_ping(m: Ping) -> bytes:
    return _TYPE_U32.pack(PING, m.seq) + _s(m.target) + _s(m.source) + _addr(m.source_addr)


def _enc_indirect(m: IndirectPing) -> bytes:
    return b"".join(
        [
            _TYPE_U32.pack(INDIRECT, m.seq),
            _s(m.target),
            _addr(m.target_addr),
            _s(m.source),
            _addr(m.source_addr),
            b"\x01" if m.nack else b"\x00",
        ]
    )


def _enc_alive(m: Alive) -> bytes:
    return _TYPE_U32.pack(ALIVE, m.incarnation) + _s(m.node) + _addr(m.addr) + _blob16(m.meta)


def _enc_push_pull(m: PushPull) -> bytes:
    flags = (1 if m.join else 0) | (2 if m.reply else 0)
    parts = [_U8.pack(PUSH_PULL), _s(m.sender), _U8.pack(flags), _U32.pack(len(m.nodes))]
    parts.extend(_node_state(n) for n in m.nodes)
    parts += [_U32.pack(len(m.user_state)), m.user_state]
    return b"".join(parts)


def _enc_digest(m: TableDigest) -> bytes:
    parts = [_U8.pack(TABLE_DIGEST), _s(m.sender), _U16.pack(len(m.digests))]
    parts.extend(_digest_body(d) for d in m.digests)
    return b"".join(parts)


def _enc_state(m: TableState) -> bytes:
    parts = [_U8.pack(TABLE_STATE), _s(m.sender), b"\x01" if m.request else b"\x00"]
    parts.append(_U16.pack(len(m.networks)))
    parts.extend(_s(n) for n in m.networks)
    parts.append(_U32.pack(len(m.events)))
    parts.extend(_net_event_body(e) for e in m.events)
    parts.append(_U32.pack(len(m.entries)))
    parts.extend(_entry_body(e) for e in m.entries)
    parts.append(_U16.pack(len(m.digests)))
    parts.extend(_digest_body(d) for d in m.digests)
    return b"".join(parts)


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Ping: _enc_ping,
    IndirectPing: _enc_indirect,
    Ack: lambda m: _TYPE_U32.pack(ACK, m.seq),
    Nack: lambda m: _TYPE_U32.pack(NACK, m.seq),
    Alive: _enc_alive,
    Suspect: lambda m: _TYPE_U32.pack(SUSPECT, m.incarnation) + _s(m.node) + _s(m.accuser),
    Dead: lambda m: _TYPE_U32.pack(DEAD, m.incarnation) + _s(m.node) + _s(m.accuser),
    PushPull: _enc_push_pull,
    TableEntry: lambda m: _U8.pack(TABLE_ENTRY) + _entry_body(m),
    NetworkEvent: lambda m: _U8.pack(NETWORK_EVENT) + _net_event_body(m),
    TableDigest: _enc_digest,
    TableState: _enc_state,
    Compound: lambda m: encode_compound([encode(p) for p in m.parts]),
}


def encode(msg: Message) -> bytes:
    """Bytes for one message (a `Compound` encodes its parts)."""
    return _ENCODERS[type(msg)](msg)


def encode_compound(parts: Sequence[bytes]) -> bytes:
    """Pack already-encoded messages into one compound (a single part is sent bare)."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) > MAX_COMPOUND_PARTS:
        raise ValueError("too many parts for one compound")
    head = [bytes((COMPOUND, len(parts)))]
    head.extend(_U16.pack(len(p)) for p in parts)
    return b"".join(head) + b"".join(parts)


def compound_overhead(n_parts: int) -> int:
    """Bytes a compound of `n_parts` adds on top of its parts."""
    return 0 if n_parts <= 1 else COMPOUND_HEADER + COMPOUND_PER_PART * n_parts


# --- decoding -------------------------------------------------------------------------


# Refuting an accusation takes its incarnation + 1, and each Lamport tick the clock + 1:
# a value this close to its field's top can only come from a bug or a hostile key holder,
# and adopting it would leave this node unable to encode its own next message.
MAX_INCARNATION = (1 << 32) - (1 << 20)
MAX_CLOCK = (1 << 64) - (1 << 32)


class _Reader:
    """Cursor over untrusted bytes; every read is bounds-checked."""

    __slots__ = ("b", "o")

    def __init__(self, b: bytes, o: int = 0) -> None:
        self.b = b
        self.o = o

    def take(self, n: int) -> bytes:
        end = self.o + n
        if end > len(self.b):
            raise DecodeError("truncated")
        out = self.b[self.o : end]
        self.o = end
        return out

    def u8(self) -> int:
        if self.o >= len(self.b):
            raise DecodeError("truncated")
        v = self.b[self.o]
        self.o += 1
        return v

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def incarnation(self) -> int:
        v = self.u32()
        if v > MAX_INCARNATION:
            raise DecodeError("incarnation too close to its limit")
        return v

    def clock(self) -> int:
        v = self.u64()
        if v > MAX_CLOCK:
            raise DecodeError("clock too close to its limit")
        return v

    def flag(self) -> bool:
        v = self.u8()
        if v > 1:
            raise DecodeError("bad flag")
        return v == 1

    def str(self) -> str:
        return self.take(self.u8()).decode()

    def ip(self) -> str:
        n = self.u8()
        if n not in (4, 16):
            raise DecodeError("bad address length")
        return _unpack_ip(self.take(n))

    def addr(self) -> Addr:
        return (self.ip(), self.u16())

    def mac(self) -> str:
        return self.take(6).hex(":")

    def count(self, n: int, min_size: int) -> int:
        """A count field, refused if the rest of the input cannot hold that many items."""
        if n * min_size > len(self.b) - self.o:
            raise DecodeError("count exceeds input")
        return n


def _r_record(r: _Reader, endpoint_id: str) -> EndpointRecord:
    ip, mac, vtep, name = r.ip(), r.mac(), r.ip(), r.str()
    n = r.count(r.u8(), 1)
    return EndpointRecord(endpoint_id, ip, mac, vtep, name, tuple(r.str() for _ in range(n)))


def _r_entry(r: _Reader) -> TableEntry:
    network, eid, owner, clock, ttl_ms = r.str(), r.str(), r.str(), r.clock(), r.u32()
    record = _r_record(r, eid) if r.flag() else None
    return TableEntry(network, eid, owner, clock, record, ttl_ms / 1000.0)


def _r_net_event(r: _Reader) -> NetworkEvent:
    return NetworkEvent(r.str(), r.str(), r.clock(), r.flag())


def _r_digest(r: _Reader) -> NetDigest:
    return NetDigest(r.str(), r.u32(), r.u64())


def _r_node_state(r: _Reader) -> NodeState:
    name, addr, inc, st = r.str(), r.addr(), r.incarnation(), r.u8()
    if st > State.LEFT:
        raise DecodeError("bad state")
    return NodeState(name, addr, inc, State(st), r.take(r.u16()))


def _r_push_pull(r: _Reader) -> PushPull:
    sender, flags = r.str(), r.u8()
    if flags > 3:
        raise DecodeError("bad flags")
    n = r.count(r.u32(), 13)
    nodes = tuple(_r_node_state(r) for _ in range(n))
    user = r.take(r.u32())
    return PushPull(sender, bool(flags & 1), bool(flags & 2), nodes, user)


def _r_table_digest(r: _Reader) -> TableDigest:
    sender = r.str()
    n = r.count(r.u16(), 13)
    return TableDigest(sender, tuple(_r_digest(r) for _ in range(n)))


def _r_table_state(r: _Reader) -> TableState:
    sender, request = r.str(), r.flag()
    networks = tuple(r.str() for _ in range(r.count(r.u16(), 1)))
    events = tuple(_r_net_event(r) for _ in range(r.count(r.u32(), 11)))
    entries = tuple(_r_entry(r) for _ in range(r.count(r.u32(), 16)))
    digests = tuple(_r_digest(r) for _ in range(r.count(r.u16(), 13)))
    return TableState(sender, request, networks, events, entries, digests)


_DECODERS: dict[int, Callable[[_Reader], Message]] = {
    PING: lambda r: Ping(r.u32(), r.str(), r.str(), r.addr()),
    INDIRECT: lambda r: IndirectPing(r.u32(), r.str(), r.addr(), r.str(), r.addr(), r.flag()),
    ACK: lambda r: Ack(r.u32()),
    NACK: lambda r: Nack(r.u32()),
    ALIVE: lambda r: Alive(r.incarnation(), r.str(), r.addr(), r.take(r.u16())),
    SUSPECT: lambda r: Suspect(r.incarnation(), r.str(), r.str()),
    DEAD: lambda r: Dead(r.incarnation(), r.str(), r.str()),
    PUSH_PULL: _r_push_pull,
    TABLE_ENTRY: _r_entry,
    NETWORK_EVENT: _r_net_event,
    TABLE_DIGEST: _r_table_digest,
    TABLE_STATE: _r_table_state,
}


def _decode_one(data: bytes, allow_compound: bool) -> Message:
    r = _Reader(data)
    kind = r.u8()
    if kind == COMPOUND:
        if not allow_compound:
            raise DecodeError("nested compound")
        n = r.count(r.u8(), 2)
        lengths = [r.u16() for _ in range(n)]
        parts = tuple(_decode_one(r.take(length), False) for length in lengths)
        msg: Message = Compound(parts)
    else:
        fn = _DECODERS.get(kind)
        if fn is None:
            raise DecodeError(f"unknown message type {kind}")
        msg = fn(r)
    if r.o != len(data):
        raise DecodeError("trailing bytes")
    return msg


def decode(data: bytes, max_size: int = 1 << 25) -> Message:
    """Parse one message (possibly a compound) from untrusted bytes.

    Raises only `DecodeError`, also for input longer than `max_size`.
    """
    if len(data) > max_size:
        raise DecodeError("oversize")
    try:
        return _decode_one(bytes(data), True)
    except DecodeError:
        raise
    except (struct.error, ValueError, UnicodeDecodeError, IndexError, OverflowError) as exc:
        raise DecodeError(str(exc)) from None
