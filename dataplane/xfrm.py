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
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from . import nsenter, sysctl, xfrmmsg
from .model import ProgramXfrm, XfrmObserved
from .neighmsg import Reply
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
        """Ours only. A kernel without NETLINK_XFRM has nothing of ours: an empty answer
        (bridge networks must not fail for it; an encrypted one fails at its first SA)."""
        with self._lock:
            try:
                sock = self._socket()
            except OSError as e:
                if e.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
                    return XfrmObserved()
                raise
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
        """Additions first (receive SAs before anything sends with them, policies once
        their SAs exist), removals only after every addition was acknowledged: a failed
        new SA never leaves a peer without the old one. Raises OSError naming the first
        entry that failed."""
        with self._lock:
            sock = self._socket()
            adds = [("add SA", sa, xfrmmsg.new_sa) for sa in op.add_sas]
            adds += [("add policy", p, xfrmmsg.put_policy) for p in op.put_policies]
            dels = [("delete policy", p, xfrmmsg.del_policy) for p in op.del_policies]
            dels += [("delete SA", sa, xfrmmsg.del_sa) for sa in op.del_sas]
            try:
                for batch in (adds, dels):
                    if batch:
                        _exchange(sock, batch)
            finally:
                if op.put_policies or op.del_policies:  # some may be in even if others failed
                    sysctl.flush_routes()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _exchange(sock: BatchSocket, batch: list[tuple[str, Any, Callable[[int, Any], bytes]]]) -> None:
    first = sock.seqs(len(batch))
    failed = sock.exchange([build(first + i, entry) for i, (_, entry, build) in enumerate(batch)])
    for index, reply in failed:
        what, entry, _ = batch[index]
        if what.startswith("delete") and reply.error in (errno.ENOENT, errno.ESRCH):
            continue  # already gone: what a delete wanted
        raise OSError(reply.error, f"xfrm {what} {_describe(entry)}: {_reason(reply)}")


def sends_esp_from(local: IPv4Address) -> bool:
    """The kernel holds an outbound SA of ours from this VTEP (blocking)."""
    x = Xfrm()
    try:
        return any(sa.src == local for sa in x.observe().sas)
    finally:
        x.close()


_PROBE_SA = SaEntry(
    IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), 0x1000,
    bytes(xfrmmsg.AEAD_KEY_BYTES), REQID, 4790,
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
        return _reason(failed[0][1])

    return nsenter.in_scratch_netns(probe)  # OSError: no verdict (e.g. no memory for a netns)


def _reason(reply: Reply) -> str:
    """The kernel's words for a refusal (extended ack), else the errno's name."""
    return reply.message or errno.errorcode.get(reply.error, str(reply.error))


def _describe(entry: object) -> str:
    if isinstance(entry, SaEntry):
        return f"{entry.src} -> {entry.dst} spi 0x{entry.spi:08x}"
    if isinstance(entry, PolicyEntry):
        return f"udp dport {entry.dport} dir {'out' if entry.outbound else 'in'}"
    return repr(entry)
