"""ForceNewCluster: turn a surviving node's log into a one-voter cluster.

For a cluster that lost quorum for good (swarmkit's `--force-new-cluster`):
keep every committed entry, drop the uncommitted tail (it may disagree with
what other survivors hold), and append committed conf changes that remove
every other member. Run it on the stopped node's log, then start the node
normally: it applies the changes, elects itself and accepts new members.
"""

from __future__ import annotations

from .log import LogWriter
from .messages import ConfChange, ConfChangeKind, Entry, EntryKind, HardState


def membership_at_commit(log: LogWriter) -> tuple[set[int], set[int]]:
    """(voters, learners) after applying every committed conf change."""
    hs, cs = log.initial_state()
    voters, learners = set(cs.voters), set(cs.learners)
    first = log.first_index()
    commit = min(max(hs.commit, first - 1), log.last_index())
    if commit >= first:
        for e in log.entries(first, commit + 1):
            if e.kind != EntryKind.CONF_CHANGE:
                continue
            cc = ConfChange.decode(e.data)
            voters.discard(cc.node_id)
            learners.discard(cc.node_id)
            if cc.kind == ConfChangeKind.ADD_VOTER:
                voters.add(cc.node_id)
            elif cc.kind == ConfChangeKind.ADD_LEARNER:
                learners.add(cc.node_id)
    return voters, learners


def force_new_cluster(log: LogWriter, node_id: int) -> list[int]:
    """Rewrite `log` so `node_id` is the only voter; returns the removed ids."""
    hs, _ = log.initial_state()
    voters, learners = membership_at_commit(log)
    first = log.first_index()
    commit = min(max(hs.commit, first - 1), log.last_index())
    term = max(hs.term, log.term(commit))
    removed = sorted((voters | learners) - {node_id})
    changes = [ConfChange(ConfChangeKind.REMOVE_NODE, n) for n in removed]
    changes.append(ConfChange(ConfChangeKind.ADD_VOTER, node_id))  # no-op if already one
    ents = [
        Entry(term, commit + 1 + i, EntryKind.CONF_CHANGE, cc.encode())
        for i, cc in enumerate(changes)
    ]
    log.append(ents)  # replaces the uncommitted tail
    log.set_hard_state(HardState(term=term, vote=hs.vote, commit=ents[-1].index))
    return removed
