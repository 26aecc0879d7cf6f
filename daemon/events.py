"""Docker-style events: a bounded history for `since`, live fan-out for streams.

Subscribers get their own bounded queue; a subscriber that stops reading is dropped
rather than slowing the daemon down (dockerd does the same).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from daemon.errors import InvalidParameter
from daemon.filters import Filters

HISTORY = 1024
QUEUE_LIMIT = 1024


@dataclass(frozen=True)
class Event:
    type: str
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    scope: str = "local"
    time_nano: int = field(default_factory=time.time_ns)

    def to_docker(self) -> dict[str, object]:
        return {
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
            "scope": self.scope,
            "time": self.time_nano // 1_000_000_000,
            "timeNano": self.time_nano,
        }


def _fuzzy(filters: Filters, key: str, *sources: str) -> bool:
    """moby's FuzzyMatch over several sources: exact or prefix match of any value."""
    values = filters.get(key)
    if not values:
        return True
    return any(src == v or src.startswith(v) for v in values for src in sources if src)


def event_matches(ev: Event, filters: Filters) -> bool:
    name = ev.attributes.get("name", "")
    return (
        filters.exact_match("type", ev.type)
        and filters.exact_match("event", ev.action)
        and filters.exact_match("scope", ev.scope)
        and filters.match_kv_list("label", ev.attributes)
        and all(
            _fuzzy(filters, key, ev.actor_id, name)
            for key in (
                "config",
                "container",
                "image",
                "network",
                "node",
                "plugin",
                "secret",
                "service",
                "volume",
                "daemon",
            )
        )
    )


_DURATION = re.compile(r"^(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", re.ASCII)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


_INT64 = (1 << 63) - 1


def parse_timestamp(value: str, now: float) -> int:
    """moby's GetTimestamp: unix seconds[.nanos], RFC 3339 (or a date), or a Go duration
    meaning `now - d` (a negative one lies ahead). Returns nanoseconds since the epoch,
    within Go's int64 like dockerd's, else InvalidParameter."""
    value = value.strip()
    try:
        ns = _parse_timestamp(value, now)
    except (ValueError, OverflowError):
        ns = None
    if ns is None or not -_INT64 <= ns <= _INT64:
        raise InvalidParameter(f'failed to parse value as time or duration: "{value}"')
    return ns


def _parse_timestamp(value: str, now: float) -> int | None:
    m = _DURATION.match(value)
    if m:
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(m.group(2)))
        if m.group(1) == "-":
            seconds = -seconds
        return int((now - seconds) * 1e9)
    if re.fullmatch(r"[0-9]{1,20}(\.[0-9]{1,9})?", value):
        sec, _, frac = value.partition(".")
        return int(sec) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    try:
        text = value.replace("Z", "+00:00")
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int((parsed - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000


class EventBus:
    def __init__(self) -> None:
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def publish(self, ev: Event) -> None:
        self._history.append(ev)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(ev)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)

    def subscribe(self, since_ns: int | None) -> tuple[list[Event], asyncio.Queue[Event]]:
        """Past events at or after `since_ns` (none when None) and a queue for new ones."""
        past = [] if since_ns is None else [e for e in self._history if e.time_nano >= since_ns]
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        return past, queue

    def close(self) -> None:
        """End every stream (daemon shutdown): each subscriber reads None and stops."""
        for queue in list(self._subscribers):
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)  # type: ignore[arg-type]
        self._subscribers.clear()

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    def is_subscribed(self, queue: asyncio.Queue[Event]) -> bool:
        return queue in self._subscribers
