"""A key-value state machine on the raft log, and clients that record a history.

Writes (put, cas) are log entries carrying (client, seq) so a retried request
applies at most once; reads go through ReadIndex. Clients retry against
whoever they believe leads and give up after a deadline, which leaves the op
indeterminate (it may or may not have happened) in the recorded history.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from raft_net import Addr, SimNet


@dataclass(frozen=True, slots=True)
class Op:
    """A client operation; `arg` is the put value or (expected, new) for cas."""

    kind: str  # "put" | "get" | "cas"
    key: str
    arg: Any = None


@dataclass(frozen=True, slots=True)
class ClientReq:
    client: str
    seq: int
    op: Op


@dataclass(frozen=True, slots=True)
class ClientResp:
    seq: int
    ok: bool
    result: Any = None
    leader_hint: int = 0


@dataclass
class HistoryOp:
    """One op as the client saw it; `ret` None means it never got an answer."""

    client: str
    seq: int
    op: Op
    call: float
    ret: float | None = None
    result: Any = None


def encode_write(client: str, seq: int, op: Op) -> bytes:
    return json.dumps([client, seq, op.kind, op.key, op.arg]).encode()


class KV:
    """Deterministic state machine; the dedup table is part of its state."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.last: dict[str, tuple[int, Any]] = {}  # client -> (seq, result)
        self.applied = 0

    def apply(self, index: int, payload: bytes) -> tuple[str, int, Any]:
        """Apply a write entry; returns (client, seq, result)."""
        client, seq, kind, key, arg = json.loads(payload)
        self.applied = index
        prev = self.last.get(client)
        if prev is not None and seq <= prev[0]:
            return client, seq, prev[1] if seq == prev[0] else None
        if kind == "put":
            self.data[key] = arg
            result: Any = "ok"
        else:
            expected, new = arg
            result = self.data.get(key) == expected
            if result:
                self.data[key] = new
        self.last[client] = (seq, result)
        return client, seq, result

    def snapshot(self) -> bytes:
        return json.dumps(
            {"d": self.data, "l": self.last, "a": self.applied}, sort_keys=True
        ).encode()

    def restore(self, blob: bytes) -> None:
        """Load a snapshot (empty: the initial state)."""
        s = json.loads(blob) if blob else {"d": {}, "l": {}, "a": 0}
        self.data = s["d"]
        self.last = {k: (v[0], v[1]) for k, v in s["l"].items()}
        self.applied = s["a"]


@dataclass
class ClientConfig:
    keys: tuple[str, ...] = ("a", "b", "c", "d")
    think_ms: tuple[float, float] = (5.0, 40.0)
    attempt_timeout_ms: float = 250.0
    give_up_ms: float = 2500.0
    mix: tuple[float, float] = (0.45, 0.35)  # put, get; the rest are cas
    pinned: int = 0  # a node id: read only, always from that node (leader or not)


@dataclass
class SimClient:
    """Issues one op at a time to its guess of the leader, retrying."""

    name: str
    net: SimNet
    nodes: list[int]
    rng: random.Random
    cfg: ClientConfig = field(default_factory=ClientConfig)
    history: list[HistoryOp] = field(default_factory=list)
    stop_at: float = float("inf")
    target: int = 0
    _seq: int = 0
    _cur: HistoryOp | None = None
    _attempt: int = 0
    _values: int = 0

    def start(self) -> None:
        self.net.register(self.name, self._on_message)
        self.target = self.cfg.pinned or self.rng.choice(self.nodes)
        self.net.at(self.rng.uniform(*self.cfg.think_ms), self._next)

    def _new_op(self) -> Op:
        key = self.rng.choice(self.cfg.keys)
        if self.cfg.pinned:
            return Op("get", key)
        r = self.rng.random()
        put, get = self.cfg.mix
        if r < put:
            self._values += 1
            return Op("put", key, f"{self.name}.{self._values}")
        if r < put + get:
            return Op("get", key)
        self._values += 1
        expected = None
        for h in reversed(self.history):  # usually a value it saw: cas may succeed
            if h.op.key == key and h.ret is not None and h.op.kind in ("get", "put"):
                expected = h.result if h.op.kind == "get" else h.op.arg
                break
        return Op("cas", key, [expected, f"{self.name}.{self._values}"])

    def issue(self, op: Op) -> None:
        self._seq += 1
        self._cur = HistoryOp(self.name, self._seq, op, self.net.now)
        self.history.append(self._cur)
        self._send()

    def _next(self) -> None:
        if self.net.now >= self.stop_at:
            return
        self.issue(self._new_op())

    def _send(self) -> None:
        cur = self._cur
        assert cur is not None
        self._attempt += 1
        self.net.send(self.name, self.target, ClientReq(self.name, cur.seq, cur.op))
        self.net.at(self.cfg.attempt_timeout_ms, self._timeout, cur.seq, self._attempt)

    def _timeout(self, seq: int, attempt: int) -> None:
        cur = self._cur
        if cur is None or cur.seq != seq or attempt != self._attempt:
            return
        if not self.cfg.pinned:
            others = [n for n in self.nodes if n != self.target]
            self.target = self.rng.choice(others or self.nodes)
        self._retry_or_give_up()

    def _retry_or_give_up(self) -> None:
        cur = self._cur
        assert cur is not None
        if self.net.now - cur.call >= self.cfg.give_up_ms:
            self._cur = None  # indeterminate: stays in history with ret None
            self.net.at(self.rng.uniform(*self.cfg.think_ms), self._next)
        else:
            self._send()

    def _on_message(self, frm: Addr, msg: object) -> None:
        cur = self._cur
        if not isinstance(msg, ClientResp) or cur is None or msg.seq != cur.seq:
            return
        if msg.ok:
            cur.ret, cur.result = self.net.now, msg.result
            self._cur = None
            self._attempt += 1
            self.net.at(self.rng.uniform(*self.cfg.think_ms), self._next)
            return
        self._attempt += 1
        if self.cfg.pinned:
            pass
        elif msg.leader_hint and msg.leader_hint in self.nodes:
            self.target = msg.leader_hint
        else:
            self.target = self.rng.choice(self.nodes)
        self.net.at(self.rng.uniform(5.0, 20.0), self._backoff, cur.seq, self._attempt)

    def _backoff(self, seq: int, attempt: int) -> None:
        if self._cur is not None and self._cur.seq == seq and attempt == self._attempt:
            self._retry_or_give_up()

    @property
    def busy(self) -> bool:
        return self._cur is not None
