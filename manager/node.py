"""RaftNode: the asyncio shell around RaftCore — clock, disk, network and the state machine.

One task owns the core and does, for every Ready, what etcd's doc.go prescribes: persist
(one fsynced transaction), send, apply the committed entries to the SwarmState, then
advance. Everything else talks to it through a queue, so the core needs no lock.
Proposals carry a request ID; whoever proposed waits for that ID to be applied and gets
the state machine's result — the same result every manager computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from manager.errors import Unavailable
from manager.raft import messages as m
from manager.raft.config import RaftConfig
from manager.raft.core import RaftCore
from manager.raft.errors import NotLeader, RaftError
from manager.raft.ready import Ready, Role
from manager.state import SwarmState
from manager.storage import SqliteLog

TICK_SECONDS = 0.1  # RaftConfig's defaults assume it: failover in 1-2 s
SNAPSHOT_EVERY = 10_000  # entries between snapshots (swarmkit's SnapshotInterval)
KEEP_AFTER_SNAPSHOT = 500  # entries kept for slow followers (LogEntriesForSlowFollowers)

Send = Callable[[m.Message], None]


class RaftNode:
    def __init__(
        self,
        raft_id: int,
        storage: SqliteLog,
        send: Send,
        *,
        rng: random.Random | None = None,
        cfg: RaftConfig | None = None,
        bootstrap: Iterable[int] = (),
        tick_seconds: float = TICK_SECONDS,
        snapshot_every: int = SNAPSHOT_EVERY,
        on_apply: Callable[[int, dict[str, Any]], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.id = raft_id
        self.storage = storage
        self._send = send
        self._tick_seconds = tick_seconds
        self._snapshot_every = snapshot_every
        self._on_apply = on_apply
        self._on_change = on_change
        snap = storage.snapshot()
        self.state = SwarmState.restore(snap.data) if snap.data else SwarmState()
        self.applied = snap.meta.index
        self.core = RaftCore(raft_id, storage, rng or random.Random(), cfg, bootstrap)
        self._inbox: deque[Callable[[], None]] = deque()
        self._wake = asyncio.Event()
        # by request ID: a retry may overlap its original (through another manager)
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_points: list[tuple[int, asyncio.Future[int]]] = []
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"raft-{self.id}")
        self._task.add_done_callback(_report_death)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # a loop that died has been reported (_report_death); stopping still completes
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for fut in [*(f for fs in self._waiters.values() for f in fs), *self._reads.values()]:
            if not fut.done():
                fut.set_exception(Unavailable("the raft node is stopping"))

    @property
    def leader(self) -> int:
        return 0 if self._dead() else self.core.soft_state.lead

    @property
    def is_leader(self) -> bool:
        # a loop that died (disk full, an I/O error) leads nothing: its state is frozen, and
        # sessions must move on to a leader that commits
        return not self._dead() and self.core.soft_state.role == Role.LEADER

    def _dead(self) -> bool:
        task = self._task
        return task is not None and task.done() and not task.cancelled()

    # --- inputs -----------------------------------------------------------------------

    def _post(self, work: Callable[[], None]) -> None:
        self._inbox.append(work)
        self._wake.set()

    def deliver(self, msg: m.Message) -> None:
        """A message from a peer (called by the transport)."""
        self._post(lambda: self._step(msg))

    def _step(self, msg: m.Message) -> None:
        with contextlib.suppress(RaftError):
            self.core.step(msg)

    async def propose(
        self, command: dict[str, Any], timeout: float = 5.0, rid: str | None = None
    ) -> Any:
        """Replicate `command` and return what the state machine made of it.

        Raises NotLeader (with the leader's ID) on a follower, Unavailable when no
        quorum commits it in time, or the command's own error."""
        rid = rid or secrets.token_hex(8)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        data = json.dumps({"rid": rid, "cmd": command}, separators=(",", ":")).encode()

        def submit() -> None:
            try:
                self.core.propose(data)
            except RaftError as exc:
                if not fut.done():
                    fut.set_exception(exc)
                return
            self._waiters.setdefault(rid, []).append(fut)

        self._post(submit)
        try:
            async with asyncio.timeout(timeout):
                result = await fut
        except TimeoutError as exc:
            raise Unavailable(
                "The swarm does not have a leader. It's possible that too few managers are "
                "online. Make sure more than half of the managers are online."
            ) from exc
        finally:
            waiting = self._waiters.get(rid, [])
            if fut in waiting:
                waiting.remove(fut)
            if not waiting:
                self._waiters.pop(rid, None)
        if result.error is not None:
            raise result.error
        return result.value

    async def read_barrier(self, timeout: float = 5.0) -> None:
        """Return once this node has applied everything committed before the call:
        a linearizable read point (ReadIndex), served by followers too."""
        ctx = secrets.token_bytes(8)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = fut

        def ask() -> None:
            try:
                self.core.read_index(ctx)
            except RaftError as exc:
                if not fut.done():
                    fut.set_exception(exc)

        self._post(ask)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError as exc:
            raise Unavailable("no quorum to confirm a consistent read") from exc
        finally:
            self._reads.pop(ctx, None)

    def add_voter(self, raft_id: int, context: bytes = b"") -> None:
        cc = m.ConfChange(m.ConfChangeKind.ADD_VOTER, raft_id, context)
        self._post(lambda: self._conf_change(cc))

    def remove_voter(self, raft_id: int) -> None:
        cc = m.ConfChange(m.ConfChangeKind.REMOVE_VOTER, raft_id)
        self._post(lambda: self._conf_change(cc))

    def _conf_change(self, cc: m.ConfChange) -> None:
        with contextlib.suppress(RaftError):
            self.core.propose_conf_change(cc)

    def campaign(self) -> None:
        """Stand for election now: a new one-member cluster need not wait a timeout."""
        self._post(lambda: self.core.campaign())

    def report_unreachable(self, raft_id: int) -> None:
        self._post(lambda: self.core.report_unreachable(raft_id))

    def transfer_leadership(self, to: int) -> None:
        def transfer() -> None:
            # Not leader any more, or `to` unknown: a graceful leave then just goes.
            with contextlib.suppress(RaftError, ValueError):
                self.core.transfer_leadership(to)

        self._post(transfer)

    # --- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._tick_seconds
        while True:
            if not self._inbox:
                self._wake.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                # that races with the wake-up, and stop() would then wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                        await self._wake.wait()
            now = loop.time()
            if now >= next_tick:
                self.core.tick()
                # A stalled loop ticks once, not in a burst: a busy machine must not
                # look like a silent leader (no spurious elections).
                next_tick += self._tick_seconds
                if next_tick <= now:
                    next_tick = now + self._tick_seconds
            while self._inbox:
                self._inbox.popleft()()
            self._handle_ready()

    def _handle_ready(self) -> None:
        lead_before, applied_before = self.leader, self.applied
        while self.core.has_ready():
            rd = self.core.ready()
            self.storage.save(rd.hard_state, rd.entries, rd.snapshot)  # fsync
            for msg in (*rd.messages, *rd.messages_after_persist):
                if msg.to != self.id:
                    self._send(msg)
            self._apply(rd)
            self.core.advance(rd)
            # after advance: the batch's membership changes are in conf_state only then,
            # and a snapshot covering them must record them
            self._maybe_snapshot()
        if self.leader != lead_before:
            self._fail_waiters_on_leader_change()
        if self._on_change is not None and (
            self.leader != lead_before or self.applied != applied_before
        ):
            self._on_change()

    def _apply(self, rd: Ready) -> None:
        if rd.snapshot is not None and rd.snapshot.meta.index > self.applied:
            self.state = SwarmState.restore(rd.snapshot.data)
            self.applied = rd.snapshot.meta.index
        for entry in rd.committed_entries:
            if entry.index <= self.applied:
                continue
            self.applied = entry.index
            if entry.kind != m.EntryKind.NORMAL or not entry.data:
                continue
            doc = json.loads(entry.data)
            result = self.state.apply(entry.index, doc["cmd"], rid=doc.get("rid"))
            for fut in self._waiters.pop(doc["rid"], []):
                if not fut.done():
                    fut.set_result(result)
            if self._on_apply is not None:
                self._on_apply(entry.index, doc["cmd"])
        for rs in rd.read_states:
            fut = self._reads.get(rs.context)
            if fut is not None:
                self._read_points.append((rs.index, fut))
        ready = [(i, f) for i, f in self._read_points if i <= self.applied]
        self._read_points = [(i, f) for i, f in self._read_points if i > self.applied]
        for index, fut in ready:
            if not fut.done():
                fut.set_result(index)

    def _maybe_snapshot(self) -> None:
        last = self.storage.snapshot().meta.index
        if self.applied - last < self._snapshot_every:
            return
        self.storage.create_snapshot(self.applied, self.core.conf_state, self.state.snapshot())
        keep_from = self.applied - KEEP_AFTER_SNAPSHOT
        if keep_from > self.storage.first_index():
            self.storage.compact(keep_from)

    def _fail_waiters_on_leader_change(self) -> None:
        """A proposal made to a deposed leader may never commit; its caller retries.
        (One that did commit under the new leader is answered when it is applied —
        the state machine dedups by request ID only within one proposer, so callers
        retry with commands that are idempotent, as the swarm's are.)"""
        if self.is_leader:
            return
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(NotLeader(self.leader))
        self._waiters.clear()


def _report_death(task: asyncio.Task[None]) -> None:
    """The raft loop never ends on its own: if it does, say so loudly at once."""
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("overlayd.raft").critical(
            "raft loop died: %r; this manager no longer takes part in the swarm",
            task.exception(),
        )
