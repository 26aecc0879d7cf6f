"""Raft's safety properties, checked while a simulation runs and at its end.

Election safety (one leader per term), leader completeness (a new leader's
log holds every entry anyone applied), state machine safety (one entry per
index, cluster-wide), log matching (same (index, term) => same prefix), and
no acknowledged write lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raft_node import SimNode

from manager.raft import Role
from manager.raft.messages import Entry


class Violation(AssertionError):
    pass


@dataclass
class SafetyChecker:
    leaders: dict[int, int] = field(default_factory=dict)  # term -> leader
    applied: dict[int, Entry] = field(default_factory=dict)  # index -> entry
    acked: dict[tuple[str, int], int] = field(default_factory=dict)  # write -> index
    _seen_leader: dict[int, tuple[int, int]] = field(default_factory=dict)

    def on_apply(self, node: int, e: Entry) -> None:
        prev = self.applied.setdefault(e.index, e)
        if prev != e:
            raise Violation(f"state machine safety: node {node} applied {e} where {prev} was")

    def on_ack(self, client: str, seq: int, index: int) -> None:
        self.acked[(client, seq)] = index

    def on_event(self, node: SimNode) -> None:
        core = node.core
        if core is None or core.role != Role.LEADER:
            return
        other = self.leaders.setdefault(core.term, node.id)
        if other != node.id:
            raise Violation(f"election safety: {other} and {node.id} both lead term {core.term}")
        key = (core.term, node.incarnation)
        if self._seen_leader.get(node.id) != key:
            self._seen_leader[node.id] = key
            self._check_completeness(node)

    def _check_completeness(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        first = core.first_index
        for index, e in self.applied.items():
            if index < first:
                continue  # inside this leader's snapshot
            if core.log_term(index) != e.term:
                raise Violation(
                    f"leader completeness: leader {node.id} term {core.term} lacks {e} "
                    f"(has term {core.log_term(index)})"
                )

    def check_log_matching(self, nodes: list[SimNode]) -> None:
        views = []
        for n in nodes:
            if n.core is not None:
                c = n.core
                views.append((n.id, c.first_index, c.log_entries(c.first_index, c.last_index + 1)))
        for i, (a, fa, ea) in enumerate(views):
            for b, fb, eb in views[i + 1 :]:
                lo = max(fa, fb)
                hi = min(fa + len(ea), fb + len(eb))  # exclusive
                last_same = 0
                for idx in range(lo, hi):
                    if ea[idx - fa].term == eb[idx - fb].term:
                        last_same = idx
                for idx in range(lo, last_same + 1):
                    if ea[idx - fa] != eb[idx - fb]:
                        raise Violation(f"log matching: nodes {a},{b} differ at {idx}")

    def check_acked_durable(self) -> None:
        """Every acknowledged write sits, as applied, at the index it was acked at."""
        for (client, seq), index in self.acked.items():
            e = self.applied.get(index)
            if e is None or f'["{client}", {seq},'.encode() not in e.data:
                raise Violation(f"acknowledged write {client}#{seq} at {index} lost: {e}")

    def check_converged(self, nodes: list[SimNode]) -> None:
        live = [n for n in nodes if n.core is not None]
        states = {(n.core.applied_index, repr(sorted(n.kv.data.items()))) for n in live}  # type: ignore[union-attr]
        if len(states) != 1:
            detail = {n.id: (n.core.applied_index, n.core.commit_index) for n in live}  # type: ignore[union-attr]
            raise Violation(f"members did not converge: {detail}")
