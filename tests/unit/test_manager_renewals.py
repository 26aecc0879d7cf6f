"""A member that asks for certificates in a loop gets a few, then one per refill period,
and never two at once; other nodes are not affected."""

from __future__ import annotations

from manager.renewals import RenewalLimiter


def test_burst_then_one_per_refill_period() -> None:
    lim = RenewalLimiter(burst=3, refill_s=10.0)
    for _ in range(3):
        assert lim.begin("n1", 100.0) is None
        lim.end("n1")
    why = lim.begin("n1", 100.0)
    assert why is not None and "too many" in why and "retry in 10.0 s" in why
    assert lim.begin("n1", 105.0) is not None  # half a token
    assert lim.begin("n1", 110.0) is None  # 10 s after the burst: one more
    lim.end("n1")
    assert lim.begin("n1", 111.0) is not None
    assert lim.begin("n2", 111.0) is None  # a bucket per node


def test_one_renewal_at_a_time_per_node() -> None:
    lim = RenewalLimiter()
    assert lim.begin("n1", 0.0) is None
    why = lim.begin("n1", 0.0)
    assert why is not None and "in progress" in why
    assert lim.begin("n2", 0.0) is None
    lim.end("n1")
    assert lim.begin("n1", 0.0) is None


def test_refill_never_exceeds_the_burst() -> None:
    lim = RenewalLimiter(burst=2, refill_s=1.0)
    assert lim.begin("n1", 0.0) is None
    lim.end("n1")
    granted = 0
    while lim.begin("n1", 1e6) is None:  # a long quiet spell refills to the burst only
        lim.end("n1")
        granted += 1
    assert granted == 2


def test_removed_nodes_are_forgotten() -> None:
    lim = RenewalLimiter(burst=1, refill_s=60.0)
    assert lim.begin("gone", 0.0) is None
    lim.end("gone")
    assert lim.begin("gone", 0.0) is not None
    lim.forget({"other"})
    assert lim.begin("gone", 0.0) is None  # nothing is kept for nodes that left
