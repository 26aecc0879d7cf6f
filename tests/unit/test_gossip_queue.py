"""TransmitLimitedQueue: ordering, packing, retransmit limits, invalidation (memberlist queue_test.go)."""

from __future__ import annotations

from gossip.queue import TransmitLimitedQueue


def test_order_fewest_transmits_then_longest_then_newest() -> None:
    q = TransmitLimitedQueue()
    q.queue(b"a" * 3, "x")
    q.queue(b"b" * 5, "y")
    q.queue(b"c" * 3, "z")
    assert q.get_broadcasts(0, 100, 10) == [b"b" * 5, b"c" * 3, b"a" * 3]
    q.queue(b"d", "w")  # never sent: goes first
    assert q.get_broadcasts(0, 1, 10) == [b"d"]


def test_packing_respects_limit_and_overhead() -> None:
    q = TransmitLimitedQueue()
    for i in range(10):
        q.queue(bytes([i]) * 10)
    out = q.get_broadcasts(2, 50, 10)
    assert len(out) == 4  # 4 * (10 + 2) = 48 <= 50
    assert q.get_broadcasts(2, 11, 10) == []


def test_retransmit_limit_drops() -> None:
    q = TransmitLimitedQueue()
    q.queue(b"m", "k")
    for _ in range(3):
        assert q.get_broadcasts(0, 10, 3) == [b"m"]
    assert q.get_broadcasts(0, 10, 3) == []
    assert len(q) == 0 and not q.has_key("k")


def test_invalidation_replaces_same_key() -> None:
    q = TransmitLimitedQueue()
    q.queue(b"suspect n1", "n1")
    q.queue(b"other", "n2")
    q.queue(b"alive n1", "n1")
    assert len(q) == 2
    assert sorted(q.get_broadcasts(0, 100, 5)) == [b"alive n1", b"other"]


def test_invalidation_after_transmits() -> None:
    q = TransmitLimitedQueue()
    q.queue(b"old", "k")
    q.get_broadcasts(0, 10, 5)
    q.queue(b"new", "k")
    assert q.get_broadcasts(0, 100, 5) == [b"new"]


def test_bounded_length_drops_most_sent() -> None:
    q = TransmitLimitedQueue(max_len=3)
    q.queue(b"a")
    q.get_broadcasts(0, 1, 10)  # "a" now has 1 transmit
    for m in (b"b", b"c", b"d"):
        q.queue(m)
    assert len(q) == 3
    assert b"a" not in q.get_broadcasts(0, 100, 10)
