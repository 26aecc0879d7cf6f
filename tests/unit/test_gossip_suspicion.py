"""Lifeguard suspicion timer: memberlist's tables, in simulated time."""

from __future__ import annotations

import pytest

from gossip.awareness import Awareness
from gossip.config import GossipConfig
from gossip.suspicion import Suspicion, remaining_suspicion_time


@pytest.mark.parametrize(
    ("n", "k", "elapsed", "lo", "hi", "expected"),
    [  # memberlist suspicion_test.go TestSuspicion_remainingSuspicionTime
        (0, 3, 0.0, 2.0, 30.0, 30.0),
        (1, 3, 2.0, 2.0, 30.0, 14.0),
        (2, 3, 3.0, 2.0, 30.0, 4.810),
        (3, 3, 4.0, 2.0, 30.0, -2.0),
        (4, 3, 5.0, 2.0, 30.0, -3.0),
        (5, 3, 10.0, 2.0, 30.0, -8.0),
    ],
)
def test_remaining_suspicion_time(
    n: int, k: int, elapsed: float, lo: float, hi: float, expected: float
) -> None:
    assert remaining_suspicion_time(n, k, elapsed, lo, hi) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("confirmations", "expected_n", "expected_timeout"),
    [  # memberlist TestSuspicion_Timer: k=3, min 0.5 s, max 2 s, confirmations 25 ms apart
        ([], 0, 2.0),
        ([("me", False), ("foo", True)], 1, 1.25),
        ([("me", False), ("foo", True), ("foo", False), ("foo", False)], 1, 1.25),
        ([("me", False), ("foo", True), ("bar", True)], 2, 0.811),  # memberlist: ~810 ms
        ([("me", False), ("foo", True), ("bar", True), ("baz", True)], 3, 0.5),
        ([("me", False), ("foo", True), ("bar", True), ("baz", True), ("zoo", False)], 3, 0.5),
    ],
)
def test_suspicion_timer(
    confirmations: list[tuple[str, bool]], expected_n: int, expected_timeout: float
) -> None:
    s = Suspicion("me", 3, 0.5, 2.0, started=100.0)
    now = 100.0
    for frm, new in confirmations:
        now += 0.025
        assert s.confirm(frm, now) is new
    assert s.n == expected_n
    assert s.deadline - 100.0 == pytest.approx(expected_timeout, abs=1e-9)


def test_no_confirmations_expected_starts_at_min() -> None:
    assert Suspicion("me", 0, 0.6, 2.4, started=0.0).deadline == 0.6


def test_late_confirmation_makes_it_overdue() -> None:
    s = Suspicion("me", 1, 0.1, 30.0, started=0.0)
    assert s.confirm("foo", 0.2)
    assert s.deadline <= 0.2  # the caller fires it at once


def test_awareness_clamps_and_scales() -> None:
    a = Awareness(8)
    a.apply(-1)
    assert a.score == 0 and a.scale(0.2) == 0.2
    a.apply(3)
    assert a.scale(0.2) == pytest.approx(0.8)
    a.apply(100)
    assert a.score == 7


def test_lan_config_timings() -> None:
    cfg = GossipConfig.lan()
    assert cfg.suspicion_min(5) == pytest.approx(0.6)
    assert cfg.suspicion_min(1000) == pytest.approx(1.8)
    assert cfg.retransmit_limit(1000) == 16
    assert cfg.push_pull_period(10) == 30.0
    assert cfg.push_pull_period(1000) == 180.0
    # full detection at <= 10 nodes: probe period + min suspicion + a gossip hop < 1.5 s
    assert cfg.probe_interval * 2 + cfg.suspicion_min(5) + cfg.gossip_interval < 1.5
