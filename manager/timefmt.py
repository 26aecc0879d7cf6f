"""Time as the swarm's records carry it (kept apart so light importers need no TLS stack)."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp(now: dt.datetime | None = None) -> str:
    """Docker's timestamp format: RFC 3339 with nanoseconds, UTC."""
    now = now or utcnow()
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
