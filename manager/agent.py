"""A node's session with the swarm's leader: heartbeats out, the cluster's state in.

Every node but the leader keeps one. A follower manager answers with the leader's
address; a dead manager makes the agent try the next one it knows, so a worker
follows the leader through failovers without being told. Workers learn the state
only this way; managers hold it themselves and ask for no state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

from manager import rpc
from manager.errors import Unavailable
from manager.manager import HEARTBEAT_PERIOD
from manager.state import SwarmState
from manager.transport import Connection, FrameError, connect

RETRY = 0.2


class SessionAgent:
    def __init__(
        self,
        node_id: str,
        addr: str,
        managers: list[str],
        ctx: ssl.SSLContext,
        *,
        want_state: bool = True,
        ipsec_epoch: str = "",
        on_state: Callable[[SwarmState], None] = lambda s: None,
        on_managers: Callable[[list[str]], None] = lambda a: None,
        on_removed: Callable[[], None] = lambda: None,
        on_connected: Callable[[], None] = lambda: None,
    ) -> None:
        self.node_id = node_id
        self.addr = addr
        self.managers = list(managers)
        self._ctx = ctx
        self._want_state = want_state
        self.ipsec_epoch = ipsec_epoch  # told to the leader at every session start
        self._on_state = on_state
        self._on_managers = on_managers
        self._on_removed = on_removed
        self._on_connected = on_connected
        self._task: asyncio.Task[None] | None = None
        self.connected_to: str | None = None
        self.state: SwarmState | None = None
        self.got_state = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="swarm-session")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def call(self, request: dict[str, Any], timeout: float = 10.0) -> Any:
        """A request to a manager: the one we are connected to first, then the others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Exception | None = None
        while loop.time() < deadline:
            order = [a for a in [self.connected_to, *self.managers] if a]
            for addr in dict.fromkeys(order):
                try:
                    return await rpc.call(addr, self._ctx, request,
                                          timeout=max(0.1, deadline - loop.time()))  # fmt: skip
                except Unavailable as exc:
                    last = exc
            await asyncio.sleep(RETRY)
        raise last or Unavailable("no manager reachable")

    async def _run(self) -> None:
        redirect: str | None = None
        while True:
            candidates = [a for a in [redirect, *self.managers] if a]
            redirect = None
            for addr in dict.fromkeys(candidates):
                try:
                    redirect = await self._session(addr)
                except (OSError, FrameError, ssl.SSLError, TimeoutError, ValueError, TypeError,
                        KeyError):  # a frame we cannot read: a new session, not a dead task
                    redirect = None
                finally:
                    self.connected_to = None
                if redirect:
                    break
            if not redirect:
                await asyncio.sleep(RETRY)

    async def _session(self, addr: str) -> str | None:
        """Serve one session; returns the leader's address when redirected."""
        host, _, port = addr.rpartition(":")
        conn = await connect(host, int(port), self._ctx, timeout=2.0)
        try:
            await conn.send(rpc.dump({"type": "session", "addr": self.addr,
                                      "want_state": self._want_state,
                                      "ipsec_epoch": self.ipsec_epoch}))  # fmt: skip
            async with asyncio.timeout(5.0):
                first = rpc.load(await conn.recv())
            if "redirect" in first:
                leader = first["redirect"]
                return str(leader) if leader and leader != addr else None
            if "error" in first:
                self._on_removed()
                await asyncio.sleep(1.0)  # no hammering while the managers say no
                return None
            self.connected_to = addr
            self._on_connected()
            beat = asyncio.create_task(self._heartbeats(conn))
            try:
                frame = first
                while True:
                    self._take(frame)
                    async with asyncio.timeout(3 * HEARTBEAT_PERIOD):
                        frame = rpc.load(await conn.recv())
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await beat
        finally:
            await conn.close()

    def _take(self, frame: dict[str, Any]) -> None:
        managers = frame.get("managers")
        if isinstance(managers, list) and managers and managers != self.managers:
            self.managers = [str(a) for a in managers]
            self._on_managers(self.managers)
        if "state" in frame:
            self.state = SwarmState.restore(str(frame["state"]).encode())
            self.got_state.set()
            self._on_state(self.state)

    async def _heartbeats(self, conn: Connection) -> None:
        while True:
            await conn.send(rpc.dump({"hb": 1}))
            await asyncio.sleep(HEARTBEAT_PERIOD)
