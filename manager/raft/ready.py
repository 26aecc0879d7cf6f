"""What the core hands the shell: persist, send, apply, then `advance`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .messages import NONE, Entry, HardState, Message, Snapshot


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile facts worth reporting (not persisted)."""

    lead: int = NONE
    role: Role = Role.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: serve the read for `context` once applied >= index."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work, in this order:

    1. persist `snapshot`, `entries`, `hard_state` (fsync when `must_sync`);
       `messages` may be sent before or while persisting;
    2. send `messages_after_persist` (they acknowledge what was just persisted);
    3. restore `snapshot` into the state machine, apply `committed_entries`,
       serve `read_states` once applied reaches their index;
    4. call `core.advance(ready)`.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    messages_after_persist: tuple[Message, ...]
    read_states: tuple[ReadState, ...]
    must_sync: bool
