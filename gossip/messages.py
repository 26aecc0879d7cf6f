"""Wire messages as frozen dataclasses: what `codec` encodes and the cores consume.

SWIM messages follow memberlist's (`net.go`); table messages follow
NetworkDB's roles (table event, network event, bulk sync) with digests added
for anti-entropy. An address is `(ip, port)`; the IP is a text IPv4/IPv6.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

Addr = tuple[str, int]


class State(IntEnum):
    """A member's state, as carried in push-pull."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe; `target` lets a node ignore pings meant for a previous owner of its address."""

    seq: int
    target: str
    source: str
    source_addr: Addr


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """Ask a helper to probe `target` for us and relay the ack (or a nack)."""

    seq: int
    target: str
    target_addr: Addr
    source: str
    source_addr: Addr
    nack: bool


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """A helper could not reach the target: evidence that *we* are healthy (Lifeguard)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    incarnation: int
    node: str
    addr: Addr
    meta: bytes = b""


@dataclass(frozen=True, slots=True)
class Suspect:
    incarnation: int
    node: str
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    """Declared dead by `accuser`; `accuser == node` means a graceful leave."""

    incarnation: int
    node: str
    accuser: str


@dataclass(frozen=True, slots=True)
class NodeState:
    """One member in a push-pull exchange."""

    name: str
    addr: Addr
    incarnation: int
    state: State
    meta: bytes = b""


@dataclass(frozen=True, slots=True)
class PushPull:
    """Full membership exchange over a stream; `user_state` is the delegate's (tables) blob."""

    sender: str
    join: bool
    reply: bool
    nodes: tuple[NodeState, ...]
    user_state: bytes = b""


# --- network tables ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """What a peer needs to reach an endpoint: NetworkDB's overlay_peer_table row plus DNS names."""

    endpoint_id: str
    ip: str
    mac: str
    vtep: str
    name: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TableEntry:
    """A versioned row; `record is None` is a tombstone whose reap is `ttl` seconds away."""

    network: str
    endpoint_id: str
    owner: str
    clock: int
    record: EndpointRecord | None
    ttl: float = 0.0


@dataclass(frozen=True, slots=True)
class NetworkEvent:
    """Node `node` joined (or left) network `network` at its Lamport time `clock`."""

    node: str
    network: str
    clock: int
    joined: bool


@dataclass(frozen=True, slots=True)
class NetDigest:
    """Order-independent summary of one network's rows (count + XOR of row hashes)."""

    network: str
    count: int
    digest: int


@dataclass(frozen=True, slots=True)
class TableDigest:
    """Anti-entropy probe: `sender`'s digests for networks it shares with the receiver."""

    sender: str
    digests: tuple[NetDigest, ...]


@dataclass(frozen=True, slots=True)
class TableState:
    """Bulk sync body: participation, rows and/or digests. `request` asks for a reply."""

    sender: str
    request: bool
    networks: tuple[str, ...]
    events: tuple[NetworkEvent, ...]
    entries: tuple[TableEntry, ...]
    digests: tuple[NetDigest, ...] = ()


@dataclass(frozen=True, slots=True)
class Compound:
    """Several messages in one datagram (memberlist's compoundMsg)."""

    parts: tuple[Message, ...]


Message = (
    Ping
    | IndirectPing
    | Ack
    | Nack
    | Alive
    | Suspect
    | Dead
    | PushPull
    | TableEntry
    | NetworkEvent
    | TableDigest
    | TableState
    | Compound
)
TableMessage = TableEntry | NetworkEvent | TableDigest | TableState
