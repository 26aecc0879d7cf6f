"""Requests between swarm members on 2377: one JSON frame in, one JSON frame out.

The first frame of a member connection says what the connection is for:
`{"type": "raft"}` (a one-way stream of raft messages), `{"type": "session"}` (a
node's heartbeat session with the leader, which streams it the state), or
`{"type": "call", ...}` (one request, one answer). Errors cross the wire as their
class name and message, so a forwarded write fails on the caller exactly as it
would have on the leader.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import weakref
from typing import Any

from manager import errors
from manager.raft.errors import NotLeader
from manager.transport import Connection, FrameError, connect

CALL_TIMEOUT = 10.0
_ERRORS: dict[str, type[errors.OverlaydError]] = {
    cls.__name__: cls
    for cls in (
        errors.InvalidParameter, errors.Unauthorized, errors.Forbidden, errors.NotFound,
        errors.Conflict, errors.Unavailable, errors.SystemError_,
    )
}  # fmt: skip


def dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def load(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise FrameError("frame is not JSON") from exc
    if not isinstance(doc, dict):
        raise FrameError("frame is not a JSON object")
    return doc


def error_doc(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, NotLeader):
        return {"error": {"kind": "NotLeader", "leader": exc.leader, "message": str(exc)}}
    kind = type(exc).__name__ if type(exc).__name__ in _ERRORS else "SystemError_"
    return {"error": {"kind": kind, "message": str(exc)}}


def raise_error(doc: dict[str, Any]) -> None:
    err = doc.get("error")
    if err is None:
        return
    if not isinstance(err, dict):
        raise errors.SystemError_(str(err))
    if err.get("kind") == "NotLeader":
        raise NotLeader(int(err.get("leader") or 0))
    raise _ERRORS.get(str(err.get("kind")), errors.SystemError_)(str(err.get("message", "")))


# Open connections by TLS context (the identity they were made with), then address. A
# context dropped after a certificate change takes its connections with it.
_idle: weakref.WeakKeyDictionary[ssl.SSLContext, dict[str, list[Connection]]] = (
    weakref.WeakKeyDictionary()
)
MAX_IDLE = 4


def _pool(addr: str, ctx: ssl.SSLContext) -> list[Connection]:
    return _idle.setdefault(ctx, {}).setdefault(addr, [])


async def _open(addr: str, ctx: ssl.SSLContext, timeout: float) -> Connection:
    pool = _pool(addr, ctx)
    if pool:
        return pool.pop()
    host, _, port = addr.rpartition(":")
    return await connect(host, int(port), ctx, timeout=min(timeout, 3.0))


def _keep(addr: str, ctx: ssl.SSLContext, conn: Connection) -> bool:
    pool = _pool(addr, ctx)
    if len(pool) >= MAX_IDLE:
        return False
    pool.append(conn)
    return True


async def call(addr: str, ctx: ssl.SSLContext, request: dict[str, Any],
               timeout: float = CALL_TIMEOUT) -> Any:  # fmt: skip
    """One request to the member at `addr` ("ip:port"); its value or its error.

    Connections are kept open for the next call; a kept one that turns out closed
    (the peer restarted) is replaced once, transparently."""
    for attempt in (0, 1):
        reused = bool(_pool(addr, ctx))
        conn: Connection | None = None
        try:
            conn = await _open(addr, ctx, timeout)
            await conn.send(dump({"type": "call", **request}))
            async with asyncio.timeout(timeout):
                reply = load(await conn.recv())
        except asyncio.CancelledError:
            if conn is not None:
                await conn.close()
            raise
        except (OSError, FrameError, ssl.SSLError, TimeoutError) as exc:
            if conn is not None:
                await conn.close()
            if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                continue  # a stale pooled connection: try a fresh one
            raise errors.Unavailable(
                f"manager {addr} unreachable: {exc or type(exc).__name__}"
            ) from exc
        if not _keep(addr, ctx, conn):
            await conn.close()
        raise_error(reply)
        return reply.get("value")
    raise AssertionError("unreachable")
