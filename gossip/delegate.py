"""How a layer above SWIM (the network tables) plugs in: memberlist's `delegate.go`, sans-I/O.

SWIM owns addresses, encryption and packet assembly; the delegate only
speaks in member names and message objects. Everything is called from the
core's `receive`/`tick`/stream handlers, so the delegate needs no locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gossip.events import Event
from gossip.messages import TableMessage


@dataclass(slots=True)
class DelegateOutput:
    """Direct sends (to named members) and stream requests the delegate wants made."""

    sends: list[tuple[str, list[bytes]]] = field(default_factory=list)
    streams: list[tuple[str, bytes]] = field(default_factory=list)


class Delegate(Protocol):
    def broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Encoded cluster-wide messages to piggyback, each costing `overhead` + its size."""
        ...

    def has_broadcasts(self) -> bool:
        """Whether `broadcasts` would return anything (lets idle gossip rounds be skipped)."""
        ...

    def local_state(self, join: bool, peer: str | None) -> bytes:
        """Blob for a push-pull with `peer` (None: not yet known, e.g. a join to a seed)."""
        ...

    def merge_remote(self, state: bytes, join: bool, now: float) -> None:
        """Merge a peer's push-pull blob (untrusted: must drop garbage silently)."""
        ...

    def notify(self, msg: TableMessage, now: float) -> bytes | None:
        """A table message arrived by datagram or stream; a returned blob is the stream reply."""
        ...

    def member_changed(self, name: str, alive: bool, now: float) -> None:
        """SWIM's verdict on `name` changed (suspect counts as alive)."""
        ...

    def tick(self, now: float, budget: int) -> DelegateOutput:
        """Timers due; `budget` is the payload room of one packet."""
        ...

    def next_deadline(self) -> float | None: ...

    def take_events(self) -> list[Event]:
        """Events produced since the last call."""
        ...
