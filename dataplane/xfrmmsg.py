"""NETLINK_XFRM messages for ESP transport-mode SAs and their policies, with struct. Pure.

Requests carry no ACK flag: nlbatch.BatchSocket asks for one on the last of a batch.
pyroute2 has no xfrm family, so the few fixed layouts overlayd needs are packed here, as
neighmsg.py does for neighbours; the tests check them against iproute2's `ip xfrm` on a
real kernel. Layouts from include/uapi/linux/xfrm.h (x86_64, no 32-bit compat):

  xfrm_selector      56  daddr[16] saddr[16] dport sport (+masks, big-endian) family
                         prefixlen_d prefixlen_s proto, ifindex, user
  xfrm_id            24  daddr[16] spi(be32) proto
  xfrm_usersa_info  224  sel id saddr[16] lft(8 x u64) curlft(4 x u64) stats(3 x u32)
                         seq reqid family mode replay_window flags
  xfrm_usersa_id     24  daddr[16] spi(be32) family proto
  xfrm_userpolicy_info 168  sel lft curlft priority index dir action flags share
  xfrm_userpolicy_id  64  sel index dir
  xfrm_user_tmpl      64  id family saddr[16] reqid mode share optional aalgos ealgos calgos
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from .neighmsg import (
    INTERRUPTED,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    Reply,
    control_reply,
)

NETLINK_XFRM = 6

XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_UPDPOLICY = 0x19  # create or replace (NEWPOLICY refuses an existing one)

XFRMA_TMPL = 5
XFRMA_ALG_AEAD = 18
XFRMA_MARK = 21

IPPROTO_UDP = 17
IPPROTO_ESP = 50
XFRM_MODE_TRANSPORT = 0
XFRM_POLICY_IN = 0
XFRM_POLICY_OUT = 1
XFRM_INF = (1 << 64) - 1

AEAD_NAME = "rfc4106(gcm(aes))"  # AES-GCM-128 as in RFC 4106: 16-byte key + 4-byte salt
AEAD_KEY_BYTES = 20
AEAD_ICV_BITS = 128  # dataplane.mtu counts these 16 bytes
# Extended (64-bit) sequence numbers: a 32-bit counter would stop an SA after 2**32
# packets (80 min at 10 Gbit/s); the IV (seqiv: sequence XOR a per-SA salt) never repeats.
# ESN needs its replay state in an attribute and usersa_info.replay_window = 0.
XFRM_STATE_ESN = 128
REPLAY_WINDOW = 64
XFRMA_REPLAY_ESN_VAL = 23

# overlayd's tag: the reqid ties our policies' templates to our SAs, and tells our SAs and
# policies from anybody else's (strongSwan, libreswan) in dumps.
REQID = 0x6F7664  # "ovd"
POLICY_PRIORITY = 0x2000

_HDR = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_LFT_INF = struct.pack("=8Q", XFRM_INF, XFRM_INF, XFRM_INF, XFRM_INF, 0, 0, 0, 0)
_CURLFT = bytes(32)
_STATS = bytes(12)
_AEAD = struct.Struct("=64sII")
_REPLAY_ESN = struct.pack("=6I2I", 2, 0, 0, 0, 0, REPLAY_WINDOW, 0, 0)  # bmp_len 2: 64 bits

SIZE_USERSA_INFO = 224
SIZE_USERPOLICY_INFO = 168


@dataclass(frozen=True)
class SaEntry:
    """An ESP transport-mode SA for VXLAN (UDP to `dport`) from one VTEP to another. Its
    selector holds exactly that, so an inbound SA only ever vouches for its own sender."""

    src: IPv4Address
    dst: IPv4Address
    spi: int
    # AEAD_KEY_BYTES; never in a log line, and not part of the identity: the SPI comes from
    # the same derivation, and a kernel in lockdown redacts keys in dumps
    key: bytes = field(repr=False, compare=False)
    reqid: int = 0
    dport: int = 0


@dataclass(frozen=True)
class PolicyEntry:
    """Every UDP packet to port `dport` must go through ESP: `outbound` (the kernel encrypts
    with the SA for the destination, or drops the packet while there is none), or inbound
    (what was not decrypted by one of our SAs is dropped), whatever the addresses: the
    vxlan socket listens on all of them. Transport-mode templates take their addresses
    from each packet."""

    dport: int
    outbound: bool
    reqid: int
    priority: int


def _addr(a: IPv4Address | None) -> bytes:
    return (a.packed if a is not None else b"") + bytes(16 - (4 if a is not None else 0))


def _selector(src: IPv4Address | None, dst: IPv4Address | None, dport: int) -> bytes:
    """UDP to dport, from src/32 (or anywhere) to dst/32 (or anywhere)."""
    ports = struct.pack("!HHHH", dport, 0xFFFF, 0, 0)
    return _addr(dst) + _addr(src) + ports + struct.pack(
        "=HBBBxxxiI", socket.AF_INET, 32 if dst else 0, 32 if src else 0, IPPROTO_UDP, 0, 0
    )


def _attr(kind: int, value: bytes) -> bytes:
    pad = (4 - len(value) % 4) % 4
    return _ATTR.pack(4 + len(value), kind) + value + bytes(pad)


def _msg(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(16 + len(body), kind, flags, seq, 0) + body


def new_sa(seq: int, sa: SaEntry) -> bytes:
    xid = _addr(sa.dst) + struct.pack("!I", sa.spi) + struct.pack("=Bxxx", IPPROTO_ESP)
    info = (
        _selector(sa.src, sa.dst, sa.dport)
        + xid
        + _addr(sa.src)
        + _LFT_INF
        + _CURLFT
        + _STATS
        + struct.pack("=IIHBBB7x", 0, sa.reqid, socket.AF_INET, XFRM_MODE_TRANSPORT, 0,
                      XFRM_STATE_ESN)
    )
    assert len(info) == SIZE_USERSA_INFO
    aead = _AEAD.pack(AEAD_NAME.encode(), len(sa.key) * 8, AEAD_ICV_BITS) + sa.key
    body = info + _attr(XFRMA_ALG_AEAD, aead) + _attr(XFRMA_REPLAY_ESN_VAL, _REPLAY_ESN)
    return _msg(XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_CREATE, seq, body)


def del_sa(seq: int, sa: SaEntry) -> bytes:
    body = _addr(sa.dst) + struct.pack("!I", sa.spi) + struct.pack("=HBx", socket.AF_INET,
                                                                     IPPROTO_ESP)  # fmt: skip
    return _msg(XFRM_MSG_DELSA, NLM_F_REQUEST, seq, body)


def _direction(p: PolicyEntry) -> int:
    return XFRM_POLICY_OUT if p.outbound else XFRM_POLICY_IN


def put_policy(seq: int, p: PolicyEntry) -> bytes:
    info = (
        _selector(None, None, p.dport)
        + _LFT_INF
        + _CURLFT
        + struct.pack("=IIBBBB4x", p.priority, 0, _direction(p), 0, 0, 0)
    )
    assert len(info) == SIZE_USERPOLICY_INFO
    tmpl = (
        _addr(None)
        + struct.pack("!I", 0)
        + struct.pack("=Bxxx", IPPROTO_ESP)
        + struct.pack("=Hxx", socket.AF_INET)
        + _addr(None)
        + struct.pack("=IBBBxIII", p.reqid, XFRM_MODE_TRANSPORT, 0, 0,
                      0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    )
    body = info + _attr(XFRMA_TMPL, tmpl)
    return _msg(XFRM_MSG_UPDPOLICY, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE, seq, body)


def del_policy(seq: int, p: PolicyEntry) -> bytes:
    body = _selector(None, None, p.dport) + struct.pack("=IBxxx", 0, _direction(p))
    return _msg(XFRM_MSG_DELPOLICY, NLM_F_REQUEST, seq, body)


def dump_request(seq: int, kind: int) -> bytes:
    """XFRM_MSG_GETSA or XFRM_MSG_GETPOLICY, every entry (a bare header, like iproute2)."""
    return _msg(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, b"")


# --- parsing ----------------------------------------------------------------------------------


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        length, kind = _ATTR.unpack_from(data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _ipv4(raw: bytes) -> IPv4Address:
    return IPv4Address(raw[:4])


def _sa(data: bytes, off: int, end: int) -> SaEntry | None:
    if end - off < SIZE_USERSA_INFO:
        return None
    id_daddr = data[off + 56 : off + 72]
    (spi,) = struct.unpack_from("!I", data, off + 72)
    proto = data[off + 76]
    saddr = data[off + 80 : off + 96]
    (reqid,) = struct.unpack_from("=I", data, off + 208)
    family, mode = struct.unpack_from("=HB", data, off + 212)
    if proto != IPPROTO_ESP or family != socket.AF_INET or mode != XFRM_MODE_TRANSPORT:
        return None
    if spi == 0:
        return None  # a larval SA a key manager's acquire made: not one of ours
    (dport,) = struct.unpack_from("!H", data, off + 32)
    attrs = _attrs(data, off + SIZE_USERSA_INFO, end)
    aead = attrs.get(XFRMA_ALG_AEAD)
    key = b""
    if aead is not None and len(aead) >= _AEAD.size:
        name, key_bits, _icv = _AEAD.unpack_from(aead)
        if name.rstrip(b"\0").decode(errors="replace") == AEAD_NAME:
            key = aead[_AEAD.size : _AEAD.size + key_bits // 8]
    return SaEntry(_ipv4(saddr), _ipv4(id_daddr), spi, key, reqid, dport)


def _policy(data: bytes, off: int, end: int) -> PolicyEntry | None:
    if end - off < SIZE_USERPOLICY_INFO:
        return None
    (dport,) = struct.unpack_from("!H", data, off + 32)
    family, plen_d, plen_s, proto = struct.unpack_from("=HBBB", data, off + 40)
    priority, _index, direction = struct.unpack_from("=IIB", data, off + 152)
    if family != socket.AF_INET or proto != IPPROTO_UDP:
        return None
    outbound = direction == XFRM_POLICY_OUT
    if direction not in (XFRM_POLICY_IN, XFRM_POLICY_OUT):
        return None
    if (plen_s, plen_d) != (0, 0):
        return None  # overlayd's policies hold for every address
    attrs = _attrs(data, off + SIZE_USERPOLICY_INFO, end)
    if XFRMA_MARK in attrs:
        return None  # overlayd's policies carry no mark
    tmpl = attrs.get(XFRMA_TMPL, b"")
    reqid = struct.unpack_from("=I", tmpl, 44)[0] if len(tmpl) >= 64 else 0
    return PolicyEntry(dport, outbound, reqid, priority)


def parse(data: bytes) -> Iterator[SaEntry | PolicyEntry | Reply]:
    """SAs and policies of a dump (others skipped) and error/ACK/done replies."""
    off = 0
    while off + 16 <= len(data):
        length, kind, flags, seq, _pid = _HDR.unpack_from(data, off)
        if length < 16 or off + length > len(data):
            return  # a truncated datagram: nothing more in it can be trusted
        body, end = off + 16, off + length
        if kind in (XFRM_MSG_NEWSA, XFRM_MSG_NEWPOLICY) and flags & NLM_F_DUMP_INTR:
            yield Reply(seq, INTERRUPTED, "interrupted")
        if kind == XFRM_MSG_NEWSA:
            sa = _sa(data, body, end)
            if sa is not None:
                yield sa
        elif kind == XFRM_MSG_NEWPOLICY:
            p = _policy(data, body, end)
            if p is not None:
                yield p
        else:
            reply = control_reply(data, kind, flags, seq, body, end)
            if reply is not None:
                yield reply
        off += (length + 3) & ~3
