import asyncio

import pytest

from daemon.errors import InvalidParameter
from daemon.events import Event, EventBus, event_matches, parse_timestamp
from daemon.filters import Filters

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000", 1_700_000_000_000_000_000),
        ("1700000000.5", 1_700_000_000_500_000_000),
        ("1700000000.000000001", 1_700_000_000_000_000_001),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
        ("2023-11-14T22:13:20.25Z", 1_700_000_000_250_000_000),
        ("10m", int((NOW - 600) * 1e9)),
        ("1h30m", int((NOW - 5400) * 1e9)),
        ("-1h", int((NOW + 3600) * 1e9)),  # Go: reference.Add(-d), so ahead
    ],
)
def test_parse_timestamp(value: str, expected: int) -> None:
    assert parse_timestamp(value, NOW) == expected


@pytest.mark.parametrize(
    "value",
    ["yesterday", "9" * 5000, "9" * 400 + "h", "9" * 25, "٣", "²", "99999999999999999999"],
)
def test_parse_timestamp_rejects_garbage_and_what_int64_cannot_hold(value: str) -> None:
    with pytest.raises(InvalidParameter, match="failed to parse value as time or duration"):
        parse_timestamp(value, NOW)


def _ev(action: str = "create", name: str = "n1", actor: str = "abc123") -> Event:
    return Event("network", action, actor, {"name": name, "type": "bridge"}, time_nano=1)


def test_docker_shape() -> None:
    doc = Event("network", "connect", "id", {"container": "c"}, time_nano=1_500_000_000).to_docker()
    assert doc == {
        "Type": "network",
        "Action": "connect",
        "Actor": {"ID": "id", "Attributes": {"container": "c"}},
        "scope": "local",
        "time": 1,
        "timeNano": 1_500_000_000,
    }


def test_filters() -> None:
    assert event_matches(_ev(), Filters())
    assert event_matches(_ev(), Filters({"type": ["network"]}))
    assert not event_matches(_ev(), Filters({"type": ["container"]}))
    assert event_matches(_ev(), Filters({"event": ["create"]}))
    assert not event_matches(_ev(), Filters({"event": ["destroy"]}))
    assert event_matches(_ev(), Filters({"network": ["n1"]}))
    assert event_matches(_ev(), Filters({"network": ["abc"]}))  # ID prefix
    assert not event_matches(_ev(), Filters({"network": ["other"]}))


async def test_bus_history_and_live() -> None:
    bus = EventBus()
    old = Event("network", "create", "a", time_nano=10)
    bus.publish(old)
    past, queue = bus.subscribe(since_ns=5)
    assert past == [old]
    new = Event("network", "destroy", "a", time_nano=20)
    bus.publish(new)
    assert await asyncio.wait_for(queue.get(), 1) == new
    bus.unsubscribe(queue)
    assert bus.listeners == 0
