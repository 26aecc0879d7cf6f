"""Core settings, in ticks and sizes; the shell picks the tick length."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Defaults assume a 100 ms tick: heartbeat every 100 ms, elections after
    1-2 s of silence, so a dead leader is replaced in under 2 s on a LAN
    (swarmkit's 1 s tick takes 10-20 s)."""

    heartbeat_tick: int = 1
    election_tick: int = 10
    pre_vote: bool = True
    check_quorum: bool = True
    max_append_entries: int = 256
    max_append_bytes: int = 1 << 20
    max_inflight: int = 64
    max_committed_bytes: int = 8 << 20  # per Ready
    max_uncommitted_entries: int = 10_000  # proposals refused beyond this backlog

    def __post_init__(self) -> None:
        if self.heartbeat_tick < 1 or self.election_tick <= self.heartbeat_tick:
            raise ValueError("need 1 <= heartbeat_tick < election_tick")
        if self.max_inflight < 1 or self.max_append_entries < 1:
            raise ValueError("max_inflight and max_append_entries must be >= 1")
