"""GET /events: a stream of JSON objects, one per line, as dockerd sends them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from api.keys import ENGINE
from daemon.errors import InvalidParameter
from daemon.events import event_matches, parse_timestamp
from daemon.filters import Filters, parse_filters
from daemon.logs import get_logger

log = get_logger("overlayd.api")


async def events(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    now = time.time()
    filters = parse_filters(request.query.get("filters"))  # unknown keys: ignored, as dockerd
    since = request.query.get("since")
    until = request.query.get("until")
    since_ns = parse_timestamp(since, now) if since else None
    until_ns = parse_timestamp(until, now) if until else None
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise InvalidParameter(f"`since` time ({since}) cannot be after `until` time ({until})")

    # dockerd replays its buffer when either bound is given.
    replay_from = since_ns if since_ns is not None else (0 if until_ns is not None else None)
    past, queue = engine.events.subscribe(replay_from)
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        await _stream(response, engine.events, past, queue, filters, until_ns)
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client went away: nothing more to send
    except Exception:
        # the 200 and part of the stream are out: an error response now would land inside
        # the chunked body; end the stream cleanly instead
        log.exception("event stream ended by an error")
    finally:
        engine.events.unsubscribe(queue)
    await response.write_eof()
    return response


async def _stream(response: web.StreamResponse, bus: Any, past: list[Any], queue: Any,
                  filters: Filters, until_ns: int | None) -> None:  # fmt: skip
    """The replayed events, then live ones until `until` or the bus lets go."""

    async def emit(ev: Any) -> bool:
        if until_ns is not None and ev.time_nano > until_ns:
            return False
        if event_matches(ev, filters):
            await response.write(json.dumps(ev.to_docker()).encode() + b"\n")
        return True

    for ev in past:
        if not await emit(ev):
            return
    while bus.is_subscribed(queue):
        timeout = None
        if until_ns is not None:
            timeout = until_ns / 1e9 - time.time()
            if timeout <= 0:
                return
        try:
            async with asyncio.timeout(timeout):
                ev = await queue.get()
        except TimeoutError:
            return
        if ev is None or not await emit(ev):
            return
