"""Errors the raft core and its log raise; the shell maps them to API answers."""

from __future__ import annotations


class RaftError(Exception):
    """Base of every raft error."""


class NotLeader(RaftError):
    """This node cannot serve the request; `leader` is its best guess (0: none)."""

    def __init__(self, leader: int) -> None:
        super().__init__(f"not the leader (leader hint: {leader or 'unknown'})")
        self.leader = leader


class ProposalDropped(RaftError):
    """The leader refuses proposals right now (transfer in progress, removed)."""


class ConfChangePending(RaftError):
    """A membership change is still unapplied; only one may be in flight."""


class Compacted(RaftError):
    """The requested index is below the log's first index (in a snapshot)."""


class Unavailable(RaftError):
    """The requested index is beyond the log's last index."""


class SnapshotOutOfDate(RaftError):
    """A snapshot older than the one held was offered."""


class InvalidMessage(RaftError):
    """A peer's message is structurally impossible (bad decoder or fuzzing)."""
