"""Carrying raft messages to the other managers over mutual TLS.

One queue and one task per peer: a slow or dead manager delays only its own
messages. Raft tolerates loss, so a full queue or a broken connection drops
messages and tells the core the peer is unreachable; the core retries on its own
schedule. Addresses come from the replicated node list, looked up at each dial.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from manager import wire
from manager.raft import messages as m
from manager.rpc import dump
from manager.transport import Connection, FrameError, connect

QUEUE_LIMIT = 4096
DIAL_TIMEOUT = 1.0
BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)


class RaftPeers:
    def __init__(
        self,
        self_id: int,
        self_addr: str,
        ctx: ssl.SSLContext,
        address_of: Callable[[int], str | None],
        unreachable: Callable[[int], None],
    ) -> None:
        self._self_id = self_id
        self._self_addr = self_addr
        self._ctx = ctx
        self._address_of = address_of
        self._unreachable = unreachable
        self._queues: dict[int, asyncio.Queue[m.Message]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def send(self, msg: m.Message) -> None:
        queue = self._queues.get(msg.to)
        if queue is None:
            queue = self._queues[msg.to] = asyncio.Queue(QUEUE_LIMIT)
            self._tasks[msg.to] = asyncio.create_task(self._pump(msg.to, queue))
        try:
            queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._unreachable(msg.to)

    def forget(self, raft_id: int) -> None:
        """A removed member: stop dialling it."""
        task = self._tasks.pop(raft_id, None)
        self._queues.pop(raft_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()

    async def _pump(self, peer: int, queue: asyncio.Queue[m.Message]) -> None:
        failures = 0
        while True:
            msg = await queue.get()
            addr = self._address_of(peer)
            if addr is None:
                self._unreachable(peer)
                continue
            conn: Connection | None = None
            try:
                host, _, port = addr.rpartition(":")
                conn = await connect(host, int(port), self._ctx, timeout=DIAL_TIMEOUT)
                await conn.send(dump({"type": "raft", "addr": self._self_addr}))
                failures = 0
                while True:
                    await conn.send(wire.encode(msg))
                    msg = await queue.get()
            except (OSError, FrameError, ssl.SSLError, TimeoutError, ValueError):
                self._unreachable(peer)
                # Drop what queued up while the peer was away: raft resends what matters.
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1
            finally:
                if conn is not None:
                    await conn.close()
