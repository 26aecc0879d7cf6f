"""ESP SAs and policies in this process's network namespace (the host's, where the vxlan
devices' UDP sockets live), through one NETLINK_XFRM socket.

Only entries carrying overlayd's reqid (SAs, policy templates) are ever reported or
touched: other IPsec users of the host (strongSwan, libreswan) keep theirs.
Blocking calls: the reconciler runs them in a worker thread.
"""

from __future__ import annotations

import errno
import socket
import threading
from ipaddress import IPv4Address

from . import nsenter, xfrmmsg
from .model import ProgramXfrm, XfrmObserved
from .nlbatch import BatchSocket
from .xfrmmsg import REQID, PolicyEntry, SaEntry


def _open() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, xfrmmsg.NETLINK_XFRM)


class Xfrm:
    def __init__(self) -> None:
        self._sock: BatchSocket | None = None
        self._lock = threading.Lock()

    def _socket(self) -> BatchSocket:
        if self._sock is None:
            self._sock = BatchSocket(_open(), xfrmmsg.parse)
        return self._sock

    def observe(self) -> XfrmObserved:
        with self._lock:
            sock = self._socket()
            sas = sock.dump_records(
                lambda seq: xfrmmsg.dump_request(seq, xfrmmsg.XFRM_MSG_GETSA), "xfrm SA"
            )
            policies = sock.dump_records(
                lambda seq: xfrmmsg.dump_request(seq, xfrmmsg.XFRM_MSG_GETPOLICY), "xfrm policy"
            )
        return XfrmObserved(
            sas=frozenset(s for s in sas if isinstance(s, SaEntry) and s.reqid == REQID),
            policies=frozenset(
                p for p in policies if isinstance(p, PolicyEntry) and p.reqid == REQID
            ),
        )

    def apply(self, op: ProgramXfrm) -> None:
        """In order: receive SAs before anything sends with them, policies only once their
        SAs exist, removals last. Raises OSError naming the first failed entry."""
        with self._lock:
            sock = self._socket()
            steps: list[tuple[str, object, bytes]] = []
            first = sock.seqs(len(op.add_sas) + len(op.put_policies) + len(op.del_policies)
                              + len(op.del_sas))  # fmt: skip
            seq = first
            for sa in op.add_sas:
                steps.append(("add SA", sa, xfrmmsg.new_sa(seq, sa)))
                seq += 1
            for p in op.put_policies:
                steps.append(("add policy", p, xfrmmsg.put_policy(seq, p)))
                seq += 1
            for p in op.del_policies:
                steps.append(("delete policy", p, xfrmmsg.del_policy(seq, p)))
                seq += 1
            for sa in op.del_sas:
                steps.append(("delete SA", sa, xfrmmsg.del_sa(seq, sa)))
                seq += 1
            if not steps:
                return
            failed = sock.exchange([m for _, _, m in steps])
        gone_ok = {"delete policy", "delete SA"}
        for index, reply in failed:
            what, entry, _ = steps[index]
            if what in gone_ok and reply.error in (errno.ENOENT, errno.ESRCH):
                continue  # already gone: what a delete wanted
            raise OSError(reply.error, f"xfrm {what} {_describe(entry)}: "
                          f"{reply.message or errno.errorcode.get(reply.error, reply.error)}")  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


_PROBE_SA = SaEntry(
    IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), 0x1000,
    bytes(xfrmmsg.AEAD_KEY_BYTES), REQID,
)  # fmt: skip


def esp_support() -> str | None:
    """None if this kernel takes an ESP SA with our AEAD, else why not (the kernel's
    words). Tried in a scratch namespace, so nothing is left behind anywhere."""

    def probe() -> str | None:
        sock = BatchSocket(_open(), xfrmmsg.parse)
        try:
            failed = sock.exchange([xfrmmsg.new_sa(sock.seqs(1), _PROBE_SA)])
        finally:
            sock.close()
        if not failed:
            return None
        reply = failed[0][1]
        return reply.message or errno.errorcode.get(reply.error, str(reply.error))

    try:
        return nsenter.in_scratch_netns(probe)
    except OSError as e:
        return str(e)


def _describe(entry: object) -> str:
    if isinstance(entry, SaEntry):
        return f"{entry.src} -> {entry.dst} spi 0x{entry.spi:08x}"
    if isinstance(entry, PolicyEntry):
        way = "out from" if entry.outbound else "in to"
        return f"udp dport {entry.dport} {way} {entry.local}"
    return repr(entry)
