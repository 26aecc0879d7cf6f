"""A Wing-Gong / Lowe linearizability checker for a key-value history.

The history splits per key (linearizability is P-compositional: a history is
linearizable iff each key's sub-history is). For one key the search walks a
linked list of call/return events ordered by time, trying to linearize each
pending call before the first return; a dead end backtracks. Like Lowe's
"just-in-time" checker and porcupine, it remembers every (linearized set,
state) already explored, which turns the exponential search into a
practical one. Ops without a response (timed out) return at +infinity: they
may take effect at any point after their call, or never.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Recorded(Protocol):
    """What the checker needs of one recorded operation."""

    @property
    def call(self) -> float: ...
    @property
    def ret(self) -> float | None: ...
    @property
    def result(self) -> Any: ...
    @property
    def op(self) -> Any: ...  # .kind, .key, .arg


State = Hashable
StepFn = Callable[[State, Recorded], tuple[bool, State]]


def register_step(state: State, h: Recorded) -> tuple[bool, State]:
    """Sequential spec of one key: put / get / compare-and-set."""
    kind, arg, pending = h.op.kind, h.op.arg, h.ret is None
    if kind == "put":
        return True, arg
    if kind == "get":
        return pending or state == h.result, state
    if kind == "cas":
        expected, new = arg
        hit = state == expected
        if pending:
            return True, new if hit else state
        return hit == bool(h.result), new if hit else state
    raise ValueError(f"unknown op kind {kind!r}")


class _Ev:
    __slots__ = ("call", "id", "match", "next", "prev")

    def __init__(self, id: int, call: bool) -> None:
        self.id = id
        self.call = call
        self.match: _Ev | None = None
        self.prev: _Ev | None = None
        self.next: _Ev | None = None


class BudgetExceeded(RuntimeError):
    """The search gave up; the history is neither proved nor refuted."""


@dataclass
class KeyResult:
    key: Any
    ok: bool
    ops: int
    steps: int


def _build(ops: Sequence[Recorded]) -> _Ev:
    order = []
    for i, h in enumerate(ops):
        order.append((h.call, 0, i))
        order.append((math.inf if h.ret is None else h.ret, 1, i))
    order.sort()  # at equal times calls come first: concurrent, the lenient reading
    head = _Ev(-1, False)
    calls: dict[int, _Ev] = {}
    prev = head
    for _, kind, i in order:
        ev = _Ev(i, kind == 0)
        if kind == 0:
            calls[i] = ev
        else:
            calls[i].match = ev
        prev.next, ev.prev = ev, prev
        prev = ev
    return head


def _lift(ev: _Ev) -> None:
    for e in (ev, ev.match):
        assert e is not None and e.prev is not None
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev


def _unlift(ev: _Ev) -> None:
    for e in (ev.match, ev):
        assert e is not None and e.prev is not None
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e


def check_ops(
    ops: Sequence[Recorded],
    step: StepFn = register_step,
    init: State = None,
    budget: int = 2_000_000,
) -> tuple[bool, int]:
    """(linearizable?, search steps) for one object's history."""
    if not ops:
        return True, 0
    head = _build(ops)
    cache: set[tuple[int, State]] = set()
    stack: list[tuple[_Ev, State]] = []
    linearized = 0
    state = init
    ev = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > budget:
            raise BudgetExceeded(f"{len(ops)} ops, {steps} steps")
        assert ev is not None
        if ev.call:
            ok, new_state = step(state, ops[ev.id])
            if ok:
                lin = linearized | (1 << ev.id)
                if (lin, new_state) not in cache:
                    cache.add((lin, new_state))
                    stack.append((ev, state))
                    state, linearized = new_state, lin
                    _lift(ev)
                    ev = head.next
                    continue
            ev = ev.next
        else:
            # A return we cannot pass: undo the last choice and try the next call.
            if not stack:
                return False, steps
            ev, state = stack.pop()
            linearized &= ~(1 << ev.id)
            _unlift(ev)
            ev = ev.next
    return True, steps


def check_kv(history: Sequence[Recorded], init: State = None) -> list[KeyResult]:
    """Check each key on its own; pending reads are dropped (they change nothing)."""
    per_key: dict[Any, list[Recorded]] = {}
    for h in history:
        if h.op.kind == "get" and h.ret is None:
            continue
        per_key.setdefault(h.op.key, []).append(h)
    out = []
    for key in sorted(per_key, key=repr):
        ok, steps = check_ops(per_key[key], init=init)
        out.append(KeyResult(key, ok, len(per_key[key]), steps))
    return out


def is_linearizable(history: Sequence[Recorded]) -> bool:
    return all(r.ok for r in check_kv(history))
