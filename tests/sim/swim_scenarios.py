"""Measured scenarios over SimNet, shared by the sim tests (small n) and the bench (n = 1000)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from swim_net import SimNet

from gossip.events import EndpointEvent, Event, MemberAlive, MemberDead
from gossip.messages import EndpointRecord

NET = "net-a"


def percentile_time(times: list[float], total: int, frac: float) -> float | None:
    """Time by which `frac` of `total` nodes had it (None if never)."""
    need = math.ceil(frac * total)
    if len(times) < need:
        return None
    return sorted(times)[need - 1]


def cluster(n: int, seed: int, loss: float = 0.0, networks: tuple[str, ...] = ()) -> SimNet:
    net = SimNet(seed, loss=loss, keep_events=False)
    net.bootstrap(n, networks=networks)
    net.run_for(2.0)  # let probing settle into its rhythm
    return net


def _run_until_all(
    net: SimNet, seen: dict[str, float], end: float, include_self: bool = False
) -> None:
    want = len(net.up_nodes()) - (0 if include_self else 1)
    while net.now < end and len(seen) < want:
        net.run_for(0.02)


@dataclass
class Spread:
    p999: float | None
    p100: float | None
    reached: int


def swim_dissemination(net: SimNet, origin: str = "n0", window: float = 5.0) -> Spread:
    """A metadata update (fresh incarnation) from `origin`: when did each node see it?"""
    seen: dict[str, float] = {}
    core = net.nodes[origin].core
    inc = core.incarnation + 1

    def listen(t: float, node: str, ev: Event) -> None:
        if isinstance(ev, MemberAlive) and ev.name == origin and ev.incarnation >= inc:
            seen.setdefault(node, t)

    net.listeners.append(listen)
    t0 = net.now
    net._apply(net.nodes[origin], core.update_meta(b"v2", t0))
    _run_until_all(net, seen, t0 + window)
    net.listeners.remove(listen)
    others = len(net.up_nodes()) - 1
    times = [t - t0 for t in seen.values()]
    return Spread(
        percentile_time(times, others, 0.999), percentile_time(times, others, 1.0), len(times)
    )


def table_dissemination(net: SimNet, origin: str = "n0", window: float = 5.0) -> Spread:
    """A new endpoint published on `origin` in NET: when did each node get its event?"""
    seen: dict[str, float] = {}

    def listen(t: float, node: str, ev: Event) -> None:
        if isinstance(ev, EndpointEvent) and ev.endpoint_id == "ep-new":
            seen.setdefault(node, t)

    net.listeners.append(listen)
    t0 = net.now
    node = net.nodes[origin]
    node.tables.publish(
        NET, EndpointRecord("ep-new", "10.9.0.2", "02:42:0a:09:00:02", node.addr[0]), t0
    )
    net._apply(node, node.core.tick(t0))
    _run_until_all(net, seen, t0 + window, include_self=True)
    net.listeners.remove(listen)
    others = len(net.up_nodes()) - 1
    times = [t - t0 for n, t in seen.items() if n != origin]
    return Spread(
        percentile_time(times, others, 0.999), percentile_time(times, others, 1.0), len(times)
    )


@dataclass
class Detection:
    first: float | None
    full: float | None
    detected_by: int


def detection(net: SimNet, victim: str, window: float = 10.0) -> Detection:
    """Crash `victim`; when did the first and the last live node declare it dead?"""
    dead_at: dict[str, float] = {}

    def listen(t: float, node: str, ev: Event) -> None:
        if isinstance(ev, MemberDead) and ev.name == victim:
            dead_at.setdefault(node, t)

    net.listeners.append(listen)
    t0 = net.now
    net.crash(victim)
    live = len(net.up_nodes())
    deadline = t0 + window
    while net.now < deadline and len(dead_at) < live:
        net.run_for(0.05)
    net.listeners.remove(listen)
    times = sorted(t - t0 for t in dead_at.values())
    return Detection(
        times[0] if times else None, times[-1] if len(times) == live else None, len(times)
    )


def false_positives(
    net: SimNet, duration: float, exclude: set[str] = frozenset()
) -> list[tuple[float, str, str]]:  # type: ignore[assignment]
    """Run `duration` s and list every (time, observer, victim) where a live node was declared dead."""
    bad: list[tuple[float, str, str]] = []

    def listen(t: float, node: str, ev: Event) -> None:
        if isinstance(ev, MemberDead) and ev.name not in exclude and net.nodes[ev.name].up:
            bad.append((t, node, ev.name))

    net.listeners.append(listen)
    net.run_for(duration)
    net.listeners.remove(listen)
    return bad


def idle_bandwidth(net: SimNet, duration: float) -> float:
    """Mean bytes per node per second sent (datagrams + streams) over `duration` s."""
    before = sum(net.bytes_sent.values())
    net.run_for(duration)
    sent = sum(net.bytes_sent.values()) - before
    return sent / len(net.up_nodes()) / duration
