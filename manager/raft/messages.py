"""Raft data: log entries, persistent state, snapshots and every message kind.

All are frozen dataclasses so a core never mutates what it handed out and a
simulator can hash and replay them. Messages carry `frm`/`to`/`term`; local
messages (Hup, Beat, CheckQuorum, Propose, TransferLeader) never leave a node.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

NONE = 0  # "no node": node ids are positive integers


class EntryKind(enum.IntEnum):
    """What an entry's data means to the application."""

    NORMAL = 0
    CONF_CHANGE = 1
    NOOP = 2


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry; (index, term) identifies it across the cluster."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def size(self) -> int:
        """Approximate wire size, for batching limits."""
        return len(self.data) + 24


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before a vote or an append is acknowledged."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """Cluster membership: voters decide, learners only receive the log."""

    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()

    @classmethod
    def of(cls, voters: Iterable[int] = (), learners: Iterable[int] = ()) -> ConfState:
        return cls(frozenset(voters), frozenset(learners))


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Application state as of `meta.index`, with the membership at that point."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    @property
    def is_empty(self) -> bool:
        return self.meta.index == 0


class ConfChangeKind(enum.IntEnum):
    ADD_VOTER = 0  # also promotes a learner
    REMOVE_NODE = 1  # a voter or a learner
    REMOVE_VOTER = 1  # alias of REMOVE_NODE
    ADD_LEARNER = 2  # also demotes a voter


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-server membership change, carried in a CONF_CHANGE entry."""

    kind: ConfChangeKind
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        return b"%d:%d:" % (self.kind, self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        kind, node, ctx = data.split(b":", 2)
        return cls(ConfChangeKind(int(kind)), int(node), ctx)


# --- messages -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message; `term` 0 marks a local message."""

    frm: int = NONE
    to: int = NONE
    term: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Hup(Message):
    """Local: start an election (election timeout, or campaign())."""

    transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Beat(Message):
    """Local: the leader's heartbeat timer fired."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckQuorum(Message):
    """Local: the leader checks it heard from a quorum within an election timeout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Propose(Message):
    """Local: append entries (leader only)."""

    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferLeader(Message):
    """Local: ask the leader to hand over to `transferee`."""

    transferee: int = NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVote(Message):
    """Would you vote for me at `term` (not yet mine)? Changes no state."""

    last_index: int = 0
    last_term: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PreVoteResp(Message):
    reject: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote(Message):
    """RequestVote; `transfer` bypasses leader stickiness (TimeoutNow)."""

    last_index: int = 0
    last_term: int = 0
    transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteResp(Message):
    reject: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class App(Message):
    """AppendEntries anchored at (index, log_term), the entry before `entries`."""

    index: int = 0
    log_term: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AppResp(Message):
    """Ack up to `index`, or a rejection with a hint (reject_hint, log_term)."""

    index: int = 0
    reject: bool = False
    reject_hint: int = 0
    log_term: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Message):
    commit: int = 0
    context: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResp(Message):
    context: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot(Message):
    snapshot: Snapshot = field(default_factory=Snapshot)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshotResp(Message):
    """The follower's last index after (or instead of) restoring."""

    index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow(Message):
    """Leadership transfer: campaign now, skipping PreVote and stickiness."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndex(Message):
    """Linearizable read request; a follower forwards it to the leader."""

    context: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadIndexResp(Message):
    index: int = 0
    context: bytes = b""


LOCAL_MESSAGES = (Hup, Beat, CheckQuorum, Propose, TransferLeader)
# Sent only once the sender's state they describe is durable (Raft thesis 3.8).
AFTER_PERSIST = (Vote, PreVote, VoteResp, PreVoteResp, AppResp, InstallSnapshotResp)
