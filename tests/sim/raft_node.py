"""SimNode: drives one RaftCore the way the asyncio shell will (etcd's doc.go).

tick/step -> ready() -> [send `messages`] -> persist (after a simulated fsync
delay, during which the node keeps stepping) -> send `messages_after_persist`
-> apply -> advance. A crash loses everything but the MemoryLog, i.e. what a
persist step wrote; a restart rebuilds the core and the state machine from it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raft_kv import KV, ClientReq, ClientResp, encode_write
from raft_net import Addr, SimNet

from manager.raft import (
    EntryKind,
    MemoryLog,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
)
from manager.raft.messages import Entry, Message


@dataclass
class NodeOptions:
    tick_ms: float = 100.0
    fsync_ms: tuple[float, float] = (0.5, 4.0)
    early_send: bool = True  # send `messages` before the fsync completes
    snapshot_every: int = 40  # applied entries between snapshots
    keep_entries: int = 10  # kept behind a snapshot for slow followers
    drift: float = 0.0  # relative clock-rate error of this node's ticker


@dataclass
class Hooks:
    """Observers the invariant checker plugs in."""

    on_apply: Callable[[int, Entry], None] = lambda node, e: None
    on_event: Callable[[SimNode], None] = lambda node: None
    on_ack: Callable[[str, int, int], None] = lambda client, seq, index: None


@dataclass
class SimNode:
    id: int
    net: SimNet
    cfg: RaftConfig
    opts: NodeOptions
    hooks: Hooks
    peers: list[int] = field(default_factory=list)
    log: MemoryLog = field(default_factory=MemoryLog)
    core: RaftCore | None = None
    kv: KV = field(default_factory=KV)
    incarnation: int = 0
    _busy: Ready | None = None
    _writes: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    _read_ctx: dict[bytes, tuple[str, int, str]] = field(default_factory=dict)
    _reads_waiting: list[tuple[int, str, int, str]] = field(default_factory=list)
    _nctx: int = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self.incarnation += 1
        rng = random.Random(self.net.rng.getrandbits(64))
        self.core = RaftCore(self.id, self.log, rng, self.cfg, self.peers)
        self.kv = KV()
        self.kv.restore(self.log.snapshot().data)
        self._busy = None
        self._writes, self._read_ctx, self._reads_waiting = {}, {}, []
        self.net.register(self.id, self._on_message)
        self.net.trace("start", self.id, self.incarnation)
        phase = self.net.rng.uniform(0, self.opts.tick_ms)
        self.net.at(phase, self._tick, self.incarnation)
        self.pump()

    def crash(self) -> None:
        self.net.trace("crash", self.id)
        self.core = None
        self.incarnation += 1  # pending timers and fsyncs of the old life are void
        self.net.unregister(self.id)

    @property
    def alive(self) -> bool:
        return self.core is not None

    @property
    def busy(self) -> bool:
        """A Ready is being persisted (a crash now loses it)."""
        return self._busy is not None

    # -- inputs ----------------------------------------------------------------

    def _tick(self, inc: int) -> None:
        if inc != self.incarnation or self.core is None:
            return
        self.core.tick()
        self._after_input()
        self.net.at(self.opts.tick_ms * (1.0 + self.opts.drift), self._tick, inc)

    def _on_message(self, frm: Addr, msg: Any) -> None:
        core = self.core
        if core is None:
            return
        if isinstance(msg, ClientReq):
            self._client(frm, msg)
        else:
            core.step(msg)
        self._after_input()

    def _after_input(self) -> None:
        self.hooks.on_event(self)
        self.pump()

    def _reply(self, client: Addr, resp: ClientResp) -> None:
        self.net.send(self.id, client, resp)

    def _client(self, frm: Addr, req: ClientReq) -> None:
        core = self.core
        assert core is not None
        op = req.op
        try:
            if op.kind == "get":
                self._nctx += 1
                ctx = b"%d.%d.%d" % (self.id, self.incarnation, self._nctx)
                core.read_index(ctx)
                self._read_ctx[ctx] = (req.client, req.seq, op.key)
                return
            if core.role != Role.LEADER:
                raise NotLeader(core.lead)
            index = core.propose(encode_write(req.client, req.seq, op))
            self._writes[index] = (req.client, req.seq, core.term)
        except NotLeader as e:
            self._reply(frm, ClientResp(req.seq, False, leader_hint=e.leader))
        except ProposalDropped:
            self._reply(frm, ClientResp(req.seq, False))

    # -- the Ready loop --------------------------------------------------------

    def pump(self) -> None:
        """Take the next Ready, if any and none is being persisted."""
        core = self.core
        if core is None or self._busy is not None or not core.has_ready():
            return
        rd = core.ready()
        if self.opts.early_send:
            self._send_all(rd.messages)
        needs_fsync = rd.must_sync or rd.snapshot is not None
        if needs_fsync:
            self._busy = rd
            self.net.at(
                self.net.rng.uniform(*self.opts.fsync_ms), self._persisted, self.incarnation
            )
        else:
            self._finish(rd)

    def _persisted(self, inc: int) -> None:
        if inc != self.incarnation or self._busy is None:
            return
        rd, self._busy = self._busy, None
        self._finish(rd)

    def _finish(self, rd: Ready) -> None:
        core = self.core
        assert core is not None
        log = self.log
        if rd.snapshot is not None:
            log.apply_snapshot(rd.snapshot)
        log.append(rd.entries)
        if rd.hard_state is not None:
            log.set_hard_state(rd.hard_state)
        self.net.trace("persist", self.id, len(rd.entries), rd.hard_state)
        if not self.opts.early_send:
            self._send_all(rd.messages)
        self._send_all(rd.messages_after_persist)
        if rd.snapshot is not None:
            self.kv.restore(rd.snapshot.data)
            self._writes = {i: w for i, w in self._writes.items() if i > rd.snapshot.meta.index}
        for e in rd.committed_entries:
            self._apply(e)
        self._serve_reads(rd)
        core.advance(rd)
        assert self.kv.applied <= core.applied_index
        self._maybe_snapshot()
        self.hooks.on_event(self)
        self.pump()

    def _send_all(self, msgs: tuple[Message, ...]) -> None:
        for m in msgs:
            self.net.send(self.id, m.to, m)

    def _apply(self, e: Entry) -> None:
        self.hooks.on_apply(self.id, e)
        self.kv.applied = e.index
        if e.kind != EntryKind.NORMAL:
            self._writes.pop(e.index, None)
            return
        client, seq, result = self.kv.apply(e.index, e.data)
        pending = self._writes.pop(e.index, None)
        if pending is not None and pending[:2] == (client, seq):
            self.hooks.on_ack(client, seq, e.index)
            self._reply(client, ClientResp(seq, True, result))
        elif pending is not None:
            self._reply(pending[0], ClientResp(pending[1], False))

    def _serve_reads(self, rd: Ready) -> None:
        for rs in rd.read_states:
            req = self._read_ctx.pop(rs.context, None)
            if req is not None:
                self._reads_waiting.append((rs.index, *req))
        still = []
        for index, client, seq, key in self._reads_waiting:
            if self.kv.applied >= index:
                self._reply(client, ClientResp(seq, True, self.kv.data.get(key)))
            else:
                still.append((index, client, seq, key))
        self._reads_waiting = still

    def _maybe_snapshot(self) -> None:
        core = self.core
        assert core is not None
        applied = core.applied_index
        snap_index = self.log.snapshot().meta.index
        if applied - snap_index < self.opts.snapshot_every:
            return
        assert self.kv.applied == applied, (self.kv.applied, applied)
        self.log.create_snapshot(applied, core.conf_state, self.kv.snapshot())
        self.log.compact(max(self.log.first_index() - 1, applied - self.opts.keep_entries))
        self.net.trace("snapshot", self.id, applied)
