"""The FDB/neigh wire format against pyroute2's own codec, the batch protocol (chunks, one
ACK each, errors mapped back to their entry) against a fake kernel, and the filter that
decides which dumped entries are overlayd's. No root needed."""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Address

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELNEIGH, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from dataplane import neighmsg, nlbatch
from dataplane.neighmsg import NeighRecord, Reply
from dataplane.nlbatch import NeighSocket
from dataplane.overlay_netlink import _managed_fdb, _managed_neigh

MAC = "02:42:0a:00:01:05"
VTEP = IPv4Address("192.0.2.7")
IP = IPv4Address("10.0.1.5")


def _decode(data: bytes) -> ndmsg:
    msg = ndmsg(data)
    msg.decode()
    return msg


def test_fdb_replace_is_what_pyroute2_reads() -> None:
    msg = _decode(neighmsg.fdb_replace(77, 12, MAC, VTEP, ack=True))
    head = msg["header"]
    assert (head["type"], head["sequence_number"]) == (RTM_NEWNEIGH, 77)
    assert head["flags"] == NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK
    assert (msg["family"], msg["ifindex"], msg["flags"]) == (7, 12, neighmsg.NTF_SELF)
    assert msg["state"] == neighmsg.NUD_PERMANENT | neighmsg.NUD_NOARP
    assert msg.get_attr("NDA_LLADDR") == MAC and msg.get_attr("NDA_DST") == str(VTEP)
    assert head["length"] == len(neighmsg.fdb_replace(77, 12, MAC, VTEP)) == 48


def test_neigh_messages_are_what_pyroute2_reads() -> None:
    msg = _decode(neighmsg.neigh_replace(5, 3, IP, MAC))
    assert (msg["family"], msg["ifindex"], msg["state"]) == (2, 3, neighmsg.NUD_PERMANENT)
    assert (msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")) == (str(IP), MAC)
    assert not msg["header"]["flags"] & NLM_F_ACK
    gone = _decode(neighmsg.neigh_delete(6, 3, IP))
    assert gone["header"]["type"] == RTM_DELNEIGH and gone.get_attr("NDA_DST") == str(IP)
    fdb_gone = _decode(neighmsg.fdb_delete(7, 3, MAC, VTEP))
    assert (fdb_gone["family"], fdb_gone.get_attr("NDA_DST")) == (7, str(VTEP))
    assert _decode(neighmsg.with_ack(neighmsg.neigh_delete(6, 3, IP)))["header"]["flags"] & 4


def _pyroute2_entry(**kw: object) -> bytes:
    msg = ndmsg()
    msg["header"]["type"] = RTM_NEWNEIGH
    msg["header"]["flags"] = 2  # NLM_F_MULTI, as in a dump
    msg["header"]["sequence_number"] = 9
    msg["header"]["pid"] = 0
    for key in ("family", "ifindex", "state", "flags"):
        msg[key] = kw.pop(key)
    msg["attrs"] = list(kw.items())
    msg.encode()
    return bytes(msg.data)


def test_parse_reads_what_pyroute2_writes() -> None:
    data = _pyroute2_entry(
        family=7, ifindex=4, state=0xC0, flags=2,
        NDA_LLADDR=MAC, NDA_DST=str(VTEP), NDA_CACHEINFO={"ndm_used": 1, "ndm_confirmed": 2,
                                                           "ndm_updated": 3, "ndm_refcnt": 0},
    ) + _pyroute2_entry(family=2, ifindex=4, state=0x80, flags=0, NDA_DST=str(IP),
                        NDA_LLADDR=MAC, NDA_PORT=4790)  # fmt: skip
    first, second = neighmsg.parse(data)
    assert first == NeighRecord(7, 4, 0xC0, 2, VTEP.packed, neighmsg.mac_bytes(MAC), False)
    assert isinstance(second, NeighRecord) and second.extra and second.dst == IP.packed


def _nlmsgerr(seq: int, error: int, text: str = "") -> bytes:
    echoed = struct.pack("=IHHII", 48, RTM_NEWNEIGH, 0, seq, 0)
    attrs = b""
    if text:
        raw = text.encode() + b"\0"
        attrs = struct.pack("=HH", 4 + len(raw), 1) + raw + b"\0" * (-len(raw) % 4)
    body = struct.pack("=i", -error) + echoed + attrs
    flags = neighmsg.NLM_F_CAPPED | (neighmsg.NLM_F_ACK_TLVS if text else 0)
    return struct.pack("=IHHII", 16 + len(body), 2, flags, seq, 0) + body


def test_parse_errors_acks_and_done() -> None:
    done = struct.pack("=IHHIIi", 20, 3, 2, 11, 0, 0)
    replies = list(neighmsg.parse(_nlmsgerr(10, 95, "FDB entry is not permanent") + done))
    assert replies == [Reply(10, 95, "FDB entry is not permanent"), Reply(11, 0, "done")]
    assert list(neighmsg.parse(_nlmsgerr(12, 0))) == [Reply(12, 0, "")]


def test_bad_mac_is_refused() -> None:
    with pytest.raises(ValueError):
        neighmsg.mac_bytes("02:42:0a")


# --- the batch protocol against a fake kernel ------------------------------------------


class FakeRtnl:
    """Processes a sendmsg like rtnetlink: every message in order, an error reply for each
    failure, an ACK where asked. Fails RTM_NEWNEIGH for MACs ending in ':ff' (EINVAL) and
    deletes of anything (ENOENT), to exercise both."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []
        self.sends: list[int] = []  # messages per sendmsg
        self.acks = 0
        self.blocking = True

    def setsockopt(self, *_: object) -> None:
        pass

    def settimeout(self, _: float) -> None:
        self.blocking = True

    def setblocking(self, flag: bool) -> None:
        self.blocking = flag

    def close(self) -> None:
        pass

    def send(self, data: bytes) -> int:
        pos = count = 0
        while pos < len(data):
            length, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, pos)
            lladdr = data[pos + 32 : pos + 38] if kind == RTM_NEWNEIGH else b""
            fail = errno.ENOENT if kind == RTM_DELNEIGH else 0
            if lladdr.endswith(b"\xff"):
                fail = errno.EINVAL
            if fail or flags & NLM_F_ACK:
                self.acks += not fail
                self.queue.append(_nlmsgerr(seq, fail))
            pos += length
            count += 1
        self.sends.append(count)
        return len(data)

    def recv(self, _n: int, _flags: int = 0) -> bytes:
        if self.queue:
            return self.queue.pop(0)
        if not self.blocking:
            raise BlockingIOError
        raise TimeoutError


def test_exchange_chunks_acks_once_per_chunk_and_maps_errors(monkeypatch) -> None:
    monkeypatch.setattr(nlbatch, "CHUNK_MESSAGES", 100)
    kernel = FakeRtnl()
    sock = NeighSocket(kernel)  # type: ignore[arg-type]
    macs = [f"02:42:0a:00:{i >> 8:02x}:{i & 255:02x}" for i in range(520)]
    seq = sock.seqs(len(macs) + 1)
    msgs = [neighmsg.fdb_replace(seq + i, 3, m, VTEP) for i, m in enumerate(macs)]
    msgs.append(neighmsg.neigh_delete(seq + len(macs), 3, IP))
    failed = sock.exchange(msgs)
    assert kernel.sends == [100] * 5 + [21] and kernel.acks == 5  # the last one failed
    assert [i for i, _ in failed] == [255, 511, 520]
    assert {r.error for _, r in failed} == {errno.EINVAL, errno.ENOENT}


def test_exchange_drops_late_replies_and_reports_lost_ones() -> None:
    kernel = FakeRtnl()
    sock = NeighSocket(kernel)  # type: ignore[arg-type]
    kernel.queue.append(_nlmsgerr(999, errno.EINVAL))  # of an earlier exchange that gave up
    seq = sock.seqs(1)
    assert sock.exchange([neighmsg.fdb_replace(seq, 3, MAC, VTEP)]) == []
    kernel.send = lambda data: len(data)  # type: ignore[method-assign]  # replies lost
    with pytest.raises(nlbatch.NetlinkOverflow):
        sock.exchange([neighmsg.fdb_replace(sock.seqs(1), 3, MAC, VTEP)])


# --- which dumped entries are overlayd's ---------------------------------------------------


def _rec(state: int, flags: int, extra: bool = False, dst: bytes = VTEP.packed) -> NeighRecord:
    return NeighRecord(7, 4, state, flags, dst, neighmsg.mac_bytes(MAC), extra)


def test_only_permanent_self_entries_are_managed() -> None:
    perm = neighmsg.NUD_PERMANENT | neighmsg.NUD_NOARP
    assert _managed_fdb(_rec(perm, neighmsg.NTF_SELF))
    assert not _managed_fdb(_rec(perm, neighmsg.NTF_MASTER))  # br0's, kernel-made
    assert not _managed_fdb(_rec(perm, neighmsg.NTF_SELF | neighmsg.NTF_MASTER))
    assert not _managed_fdb(_rec(0x02, neighmsg.NTF_SELF))  # learned (reachable)
    assert not _managed_fdb(_rec(perm, neighmsg.NTF_SELF, extra=True))  # port/vni: not ours
    assert not _managed_fdb(_rec(perm, neighmsg.NTF_SELF, dst=b"\0" * 16))  # IPv6 remote
    assert _managed_neigh(NeighRecord(2, 4, 0x80, 0, IP.packed, neighmsg.mac_bytes(MAC), False))
    assert not _managed_neigh(NeighRecord(2, 4, 0x04, 0, IP.packed, b"\1" * 6, False))  # stale
