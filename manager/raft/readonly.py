"""ReadIndex bookkeeping on the leader (etcd-io/raft's read_only.go, safe mode).

A read records the commit index when it arrives; once a quorum has answered a
heartbeat carrying its context, this leader was still the leader at that
moment, so reading at that index (after applying up to it) is linearizable.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReadRequest:
    frm: int  # requesting node (the leader itself for local reads)
    context: bytes
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        self.pending: dict[bytes, ReadRequest] = {}
        self.queue: list[bytes] = []

    def add(self, index: int, frm: int, context: bytes) -> None:
        if context in self.pending:
            return
        self.pending[context] = ReadRequest(frm, context, index)
        self.queue.append(context)

    def ack(self, frm: int, context: bytes) -> set[int] | None:
        req = self.pending.get(context)
        if req is None:
            return None
        req.acks.add(frm)
        return req.acks

    def release(self, context: bytes) -> list[ReadRequest]:
        """Requests up to and including `context`, in arrival order."""
        if context not in self.pending:
            return []
        pos = self.queue.index(context) + 1
        done, self.queue = self.queue[:pos], self.queue[pos:]
        return [self.pending.pop(c) for c in done]

    def last_context(self) -> bytes:
        return self.queue[-1] if self.queue else b""
