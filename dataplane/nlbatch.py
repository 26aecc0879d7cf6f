"""Plain netlink sockets for batches and dumps: many messages per sendmsg (FDB/neigh on
NETLINK_ROUTE here, xfrm SAs and policies in xfrm.py).

Programming 10 000 remote endpoints one request at a time is 20 000 round trips; here a
batch is one sendmsg of concatenated messages. Only the last message of a chunk asks for
an ACK: rtnetlink handles the messages of one sendmsg in order, sends an error for each
one that fails (ACK flag or not), and the final ACK therefore says that everything before
it is done. Errors name their message by sequence number. NETLINK_CAP_ACK keeps error
replies small and the receive buffer is raised (as root: SO_RCVBUFFORCE) so that even a
chunk that fails entirely fits; should it still overflow (ENOBUFS) the batch's outcome is
unknown and the caller dumps again.

Blocking calls: run them in a worker thread (asyncio.to_thread); one caller at a time.
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from typing import Any

from . import neighmsg
from .neighmsg import NeighRecord, Reply

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_RCVBUFFORCE = 33

CHUNK_MESSAGES = 4096  # per sendmsg: ~200 KiB of neighbour requests
CHUNK_BYTES = 200 << 10  # and never more: the default send buffer takes 208 KiB - 32
RCVBUF = 8 << 20  # room for CHUNK_MESSAGES error replies
TIMEOUT = 5.0  # rtnetlink answers within the sendmsg; this only catches lost replies
_DUMP_ATTEMPTS = 5
_RECV = 1 << 16  # netlink dump datagrams are at most 32 KiB


class NetlinkOverflow(RuntimeError):
    """Replies were dropped (ENOBUFS) or never came: the batch's outcome is unknown."""


class BatchSocket:
    """The batching and dump logic for any netlink family; `parse` decodes one datagram
    into records and Replies (neighmsg.parse, xfrmmsg.parse)."""

    def __init__(self, sock: socket.socket, parse: Callable[[bytes], Iterable[Any]]) -> None:
        self._parse = parse
        self._sock = sock
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            with suppress(OSError):  # older kernels: bigger error replies, no message text
                sock.setsockopt(SOL_NETLINK, opt, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.settimeout(TIMEOUT)
        self._seq = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    def seqs(self, n: int) -> int:
        """Reserve n consecutive sequence numbers; returns the first."""
        first = next(self._seq)
        self._seq = itertools.count(first + n)
        return first

    def exchange(self, messages: Sequence[bytes]) -> list[tuple[int, Reply]]:
        """Send messages (built with consecutive sequence numbers from seqs()) in chunks of
        CHUNK_MESSAGES or CHUNK_BYTES, one sendmsg and one ACK each. Returns (index, reply)
        of every message that failed; an empty list means all were applied."""
        failed: list[tuple[int, Reply]] = []
        self._drain()
        for start, end in _chunks(messages):
            chunk = list(messages[start:end])
            chunk[-1] = neighmsg.with_ack(chunk[-1])
            first = _seq_of(chunk[0])
            last = _seq_of(chunk[-1])
            self._sock.send(b"".join(chunk))
            for reply in self._replies(last):
                if reply.error and first <= reply.seq <= last:
                    failed.append((start + reply.seq - first, reply))
        return failed

    def _replies(self, last: int) -> list[Reply]:
        """Replies up to and including the one for sequence number `last`."""
        out: list[Reply] = []
        while True:
            for item in self._parse(self._recv()):
                if isinstance(item, Reply):
                    out.append(item)
                    if item.seq == last:
                        return out

    def dump_records(self, request: Callable[[int], bytes], what: str) -> list[Any]:
        """Every record of a dump (request(seq) builds it); a dump that the kernel marks as
        interrupted by a concurrent change is redone."""
        for _ in range(_DUMP_ATTEMPTS):
            self._drain()
            seq = self.seqs(1)
            self._sock.send(request(seq))
            records: list[Any] = []
            interrupted = False
            done = False
            while not done:
                for item in self._parse(self._recv()):
                    if not isinstance(item, Reply):
                        records.append(item)
                    elif item.seq != seq:
                        continue  # a late reply of an earlier, abandoned exchange
                    elif item.error == neighmsg.INTERRUPTED:
                        interrupted = True
                    elif item.error:
                        raise OSError(item.error, f"{what} dump: {item.message}")
                    else:
                        done = True
            if not interrupted:
                return records
        raise NetlinkOverflow(f"{what} dump interrupted {_DUMP_ATTEMPTS} times")

    def _drain(self) -> None:
        """Drop late replies of an earlier exchange that gave up (timeout, overflow)."""
        self._sock.setblocking(False)  # MSG_DONTWAIT alone would still wait for the timeout
        try:
            while True:
                try:
                    self._sock.recv(_RECV)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    if e.errno != errno.ENOBUFS:  # reported once, then the queue reads on
                        raise
        finally:
            self._sock.settimeout(TIMEOUT)

    def _recv(self) -> bytes:
        try:
            return self._sock.recv(_RECV)
        except TimeoutError as e:
            raise NetlinkOverflow(f"no netlink reply within {TIMEOUT} s") from e
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                raise NetlinkOverflow("netlink replies dropped (ENOBUFS)") from e
            raise


def _chunks(messages: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    """[start, end) ranges of at most CHUNK_MESSAGES messages and CHUNK_BYTES bytes."""
    start, size = 0, 0
    for i, msg in enumerate(messages):
        if i > start and (i - start >= CHUNK_MESSAGES or size + len(msg) > CHUNK_BYTES):
            yield start, i
            start, size = i, 0
        size += len(msg)
    if start < len(messages):
        yield start, len(messages)


def _seq_of(msg: bytes) -> int:
    return struct.unpack_from("=I", msg, 8)[0]


class NeighSocket(BatchSocket):
    """A NETLINK_ROUTE socket for FDB/neigh batches and dumps."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, neighmsg.parse)

    def dump(self, family: int) -> list[NeighRecord]:
        """All neighbour (AF_INET) or FDB (AF_BRIDGE) entries of the namespace."""
        return self.dump_records(lambda seq: neighmsg.dump_request(seq, family), "neighbour")
