"""What the gossip cores report to the layer above (frozen dataclasses, like h11's events).

Membership events come from `SwimCore` on every state change of a member;
endpoint events come from `Tables`, exactly one per visible change of a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gossip.messages import Addr, EndpointRecord


@dataclass(frozen=True, slots=True)
class MemberAlive:
    """New member, a member back from dead/suspect, or a refreshed address/meta."""

    name: str
    addr: Addr
    incarnation: int
    meta: bytes = b""


@dataclass(frozen=True, slots=True)
class MemberSuspect:
    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class MemberDead:
    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    name: str
    incarnation: int


class Change(Enum):
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class EndpointEvent:
    """A remote (or local) endpoint became visible, changed, or went away on `network`."""

    change: Change
    network: str
    endpoint_id: str
    owner: str
    record: EndpointRecord


MemberEvent = MemberAlive | MemberSuspect | MemberDead | MemberLeft
Event = MemberEvent | EndpointEvent
