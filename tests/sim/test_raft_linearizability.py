"""The linearizability checker on small histories whose answer is known."""

from __future__ import annotations

import random

import pytest
from linearizability import BudgetExceeded, check_kv, check_ops, is_linearizable
from raft_kv import HistoryOp, Op

INF = None  # no response: indeterminate


def h(
    call: float,
    ret: float | None,
    kind: str,
    arg: object = None,
    result: object = None,
    key: str = "k",
) -> HistoryOp:
    return HistoryOp("c", 0, Op(kind, key, arg), call, ret, result)


def test_empty_and_sequential() -> None:
    assert is_linearizable([])
    assert is_linearizable(
        [h(0, 1, "put", "x", "ok"), h(2, 3, "get", result="x"), h(4, 5, "cas", ["x", "y"], True)]
    )


def test_read_of_initial_value() -> None:
    assert is_linearizable([h(0, 1, "get", result=None)])
    assert not is_linearizable([h(0, 1, "get", result="x")])


def test_stale_read_after_completed_write_is_not_linearizable() -> None:
    hist = [h(0, 1, "put", "x", "ok"), h(2, 3, "put", "y", "ok"), h(4, 5, "get", result="x")]
    assert not is_linearizable(hist)


def test_concurrent_write_may_be_seen_or_not() -> None:
    for seen in ("x", "y"):
        hist = [h(0, 1, "put", "x", "ok"), h(2, 6, "put", "y", "ok"), h(3, 4, "get", result=seen)]
        assert is_linearizable(hist)


def test_reads_must_agree_on_order_of_concurrent_writes() -> None:
    # Two overlapping writes; one reader sees y then x, another x then y: impossible.
    hist = [
        h(0, 10, "put", "x", "ok"),
        h(0, 10, "put", "y", "ok"),
        h(11, 12, "get", result="x"),
        h(13, 14, "get", result="y"),
    ]
    assert not is_linearizable(hist)


def test_cas_semantics() -> None:
    assert is_linearizable([h(0, 1, "cas", [None, "a"], True), h(2, 3, "get", result="a")])
    assert not is_linearizable([h(0, 1, "put", "b", "ok"), h(2, 3, "cas", ["a", "c"], True)])
    assert is_linearizable([h(0, 1, "put", "b", "ok"), h(2, 3, "cas", ["a", "c"], False)])
    assert not is_linearizable([h(0, 1, "put", "a", "ok"), h(2, 3, "cas", ["a", "c"], False)])


def test_pending_write_may_take_effect_late() -> None:
    hist = [h(0, INF, "put", "x"), h(5, 6, "get", result=None), h(7, 8, "get", result="x")]
    assert is_linearizable(hist)


def test_pending_write_may_never_take_effect() -> None:
    assert is_linearizable([h(0, INF, "put", "x"), h(5, 6, "get", result=None)])


def test_pending_write_cannot_take_effect_before_its_call() -> None:
    hist = [h(0, 1, "get", result="x"), h(2, INF, "put", "x")]
    assert not is_linearizable(hist)


def test_pending_write_takes_effect_once() -> None:
    # x seen, then overwritten by z, then x again: a single pending put can't explain both.
    hist = [
        h(0, INF, "put", "x"),
        h(1, 2, "get", result="x"),
        h(3, 4, "put", "z", "ok"),
        h(5, 6, "get", result="x"),
    ]
    assert not is_linearizable(hist)


def test_pending_cas_applies_only_when_it_matches() -> None:
    assert is_linearizable(
        [h(0, 1, "put", "a", "ok"), h(2, INF, "cas", ["a", "b"]), h(3, 4, "get", result="b")]
    )
    assert not is_linearizable(
        [h(0, 1, "put", "q", "ok"), h(2, INF, "cas", ["a", "b"]), h(3, 4, "get", result="b")]
    )


def test_pending_reads_are_ignored() -> None:
    assert is_linearizable([h(0, INF, "get", result="nonsense")])


def test_keys_are_checked_independently() -> None:
    hist = [
        h(0, 1, "put", "x", "ok", key="a"),
        h(2, 3, "get", result="x", key="a"),
        h(0, 1, "put", "y", "ok", key="b"),
        h(2, 3, "get", result="x", key="b"),
    ]
    results = {r.key: r.ok for r in check_kv(hist)}
    assert results == {"a": True, "b": False}


def _random_linearizable_history(rng: random.Random, n: int) -> list[HistoryOp]:
    """Run a real register; each op's call/return brackets its linearization point."""
    state = None
    out = []
    t = 0.0
    for i in range(n):
        t += rng.uniform(0.1, 1.0)
        point = t
        kind = rng.choice(["put", "get", "cas"])
        if kind == "put":
            arg, result = f"v{i}", "ok"
            state = arg
        elif kind == "get":
            arg, result = None, state
        else:
            arg = [rng.choice([state, "zzz"]), f"v{i}"]
            result = state == arg[0]
            if result:
                state = arg[1]
        call = point - rng.uniform(0, 3)
        ret = None if kind != "get" and rng.random() < 0.05 else point + rng.uniform(0, 3)
        out.append(h(call, ret, kind, arg, result))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_generated_linearizable_histories_pass(seed: int) -> None:
    hist = _random_linearizable_history(random.Random(seed), 120)
    assert is_linearizable(hist)


@pytest.mark.parametrize("seed", range(20))
def test_corrupted_read_is_caught(seed: int) -> None:
    rng = random.Random(seed)
    hist = _random_linearizable_history(rng, 60)
    # Replay it sequentially in linearization order, then corrupt one read.
    seq = [HistoryOp("c", i, o.op, 2 * i, 2 * i + 1, o.result) for i, o in enumerate(hist)]
    assert is_linearizable(seq)
    reads = [o for o in seq if o.op.kind == "get"]
    victim = rng.choice(reads)
    victim.result = "never-written"
    assert not is_linearizable(seq)


def test_budget_guards_pathological_search() -> None:
    hist = [h(0, INF, "put", f"v{i}") for i in range(18)] + [h(1, 2, "get", result="nope")]
    with pytest.raises(BudgetExceeded):
        check_ops(hist, budget=1000)
