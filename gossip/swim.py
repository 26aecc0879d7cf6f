"""SWIM membership with Lifeguard, as a sans-I/O state machine (memberlist `state.go` + `net.go`).

Inputs: datagrams (`receive`), stream requests/replies (`handle_stream`,
`stream_reply`, `stream_failed`), timers (`tick`), and the caller's `now`.
Outputs: an `Output` of datagrams to send, stream requests to make and events.
The shell arms one timer at `next_deadline()`. All randomness comes from the
`random.Random` passed in; there is no clock, socket or task in here.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from gossip import codec
from gossip.awareness import Awareness
from gossip.codec import DecodeError
from gossip.config import GossipConfig
from gossip.crypto import OVERHEAD, Channel
from gossip.delegate import Delegate
from gossip.events import Event, MemberAlive, MemberDead, MemberLeft, MemberSuspect
from gossip.messages import (
    Ack,
    Addr,
    Alive,
    Compound,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NetworkEvent,
    NodeState,
    Ping,
    PushPull,
    State,
    Suspect,
    TableDigest,
    TableEntry,
    TableState,
)
from gossip.queue import TransmitLimitedQueue
from gossip.suspicion import Suspicion

_UDP_MAX = 65535
_PART_OVERHEAD = codec.COMPOUND_PER_PART
_TABLE_TYPES = (TableEntry, NetworkEvent, TableDigest, TableState)


@dataclass(slots=True)
class Member:
    """Our view of one node (ourselves included)."""

    name: str
    addr: Addr
    incarnation: int
    state: State
    state_change: float
    meta: bytes = b""


@dataclass(slots=True)
class Output:
    """What one call produced: datagrams, stream requests (shell: TCP round trip), events."""

    sends: list[tuple[Addr, bytes]] = field(default_factory=list)
    streams: list[tuple[Addr, bytes]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class SwimStats:
    packets_sent: int = 0
    bytes_sent: int = 0
    streams_sent: int = 0
    stream_bytes_sent: int = 0
    packets_received: int = 0
    decode_errors: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Probe:
    target: str
    deadline: float
    indirect: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    seq: int
    source_addr: Addr
    nack: bool


class SwimCore:
    """One node's SWIM + Lifeguard protocol state."""

    def __init__(
        self,
        name: str,
        addr: Addr,
        config: GossipConfig,
        rng: random.Random,
        now: float,
        *,
        channel: Channel | None = None,
        delegate: Delegate | None = None,
        meta: bytes = b"",
    ) -> None:
        self.name = name
        self.addr = addr
        self.cfg = config
        self.rng = rng
        self.channel = channel
        self.delegate = delegate
        self.stats = SwimStats()
        self.awareness = Awareness(config.awareness_max)
        self.queue = TransmitLimitedQueue()
        self.me = Member(name, addr, 0, State.ALIVE, now, meta)
        self.members: dict[str, Member] = {name: self.me}
        self.suspicions: dict[str, Suspicion] = {}
        self.leaving = False
        self._live = 1
        self._down: set[str] = set()
        self._probe_list: list[str] = []
        self._probe_index = 0
        self._seq = 0
        self._probes: dict[int, _Probe] = {}
        self._relays: dict[int, _Relay] = {}
        self._reconnects: dict[int, str] = {}
        self._timers: list[tuple[float, int, str, object]] = []
        self._timer_id = 0
        self._budget = config.packet_size - (OVERHEAD if channel else 0)
        self._out = Output()
        self._next_probe = now + rng.uniform(0, config.probe_interval)
        self._next_gossip = now + rng.uniform(0, config.gossip_interval)
        self._next_push_pull = now + rng.uniform(0.5, 1.0) * config.push_pull_interval
        self._next_maint = now + rng.uniform(0, config.reconnect_interval)
        self._broadcast(name, Alive(0, name, addr, meta))

    # --- public API ----------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        return self.me.incarnation

    @property
    def num_live(self) -> int:
        """Members alive or suspect, ourselves included."""
        return self._live

    def join(self, seeds: list[Addr], now: float) -> Output:
        """Push-pull (join=True) with each seed; the replies bring the whole cluster."""
        state = self._push_pull_msg(join=True, reply=False, peer=None)
        for addr in seeds:
            self._stream(addr, state)
        return self._flush()

    def leave(self, now: float) -> Output:
        """Graceful leave: gossip our own Dead; the shell keeps ticking briefly to flush it."""
        self.leaving = True
        self.me.state = State.LEFT
        dead = Dead(self.me.incarnation, self.name, self.name)
        self._broadcast(self.name, dead)
        for m in self._random_members(self.cfg.gossip_nodes, self._is_alive):
            self._send(m.addr, [codec.encode(dead)])
        return self._flush()

    def update_meta(self, meta: bytes, now: float) -> Output:
        """Publish new metadata under a fresh incarnation (memberlist UpdateNode)."""
        self.me.meta = meta
        self.me.incarnation += 1
        self._broadcast(self.name, Alive(self.me.incarnation, self.name, self.addr, meta))
        return self._flush()

    def receive(self, data: bytes | Message, addr: Addr, now: float) -> Output:
        """One datagram (or an already-decoded message, for tests) from `addr`."""
        msg = data if not isinstance(data, bytes | bytearray | memoryview) else self._open(data)
        if msg is not None:
            self.stats.packets_received += 1
            for part in msg.parts if isinstance(msg, Compound) else (msg,):
                self._handle(part, addr, now)
        return self._flush()

    def handle_stream(self, data: bytes, addr: Addr, now: float) -> tuple[bytes | None, Output]:
        """Serve a stream request from `addr`; returns the reply to write back (or None)."""
        msg = self._open(data, self.cfg.max_stream_size)
        reply: bytes | None = None
        if isinstance(msg, PushPull) and not msg.reply:
            self._merge(msg, now)
            out = self._push_pull_msg(join=msg.join, reply=True, peer=msg.sender)
            reply = self._seal(out)
        elif isinstance(msg, _TABLE_TYPES) and self.delegate is not None:
            blob = self.delegate.notify(msg, now)
            reply = self._seal(blob) if blob is not None else None
        if reply is not None:
            self.stats.stream_bytes_sent += len(reply)
        return reply, self._flush()

    def stream_reply(self, data: bytes | Message, addr: Addr, now: float) -> Output:
        """The reply to a stream request we made (or a decoded one, for tests and bootstraps)."""
        msg = self._open(data, self.cfg.max_stream_size) if isinstance(data, bytes) else data
        if isinstance(msg, PushPull) and msg.reply:
            self._merge(msg, now)
        elif isinstance(msg, _TABLE_TYPES) and self.delegate is not None:
            self.delegate.notify(msg, now)
        return self._flush()

    def stream_failed(self, addr: Addr, now: float) -> Output:
        """A stream request could not be completed (the next rounds retry by themselves)."""
        return self._flush()

    def next_deadline(self) -> float:
        t = self._next_push_pull if self._live > 1 else math.inf
        t = min(t, self._next_maint)
        if not self.leaving:
            t = min(t, self._next_probe)
        if self.queue or self.suspicions or (self.delegate and self.delegate.has_broadcasts()):
            t = min(t, self._next_gossip)
        if self._timers:
            t = min(t, self._timers[0][0])
        if self.delegate is not None:
            d = self.delegate.next_deadline()
            if d is not None:
                t = min(t, d)
        return t

    def tick(self, now: float) -> Output:
        """Run every timer due at `now`."""
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, arg = heapq.heappop(self._timers)
            self._on_timer(kind, arg, now)
        if now >= self._next_probe and not self.leaving:
            self._probe(now)
        if now >= self._next_gossip:
            self._gossip(now)
            g = self.cfg.gossip_interval
            self._next_gossip += g * (math.floor((now - self._next_gossip) / g) + 1)
        if now >= self._next_push_pull:
            self._next_push_pull = now + self.cfg.push_pull_period(self._live)
            self._push_pull(now)
        if now >= self._next_maint:
            self._next_maint = now + self.cfg.reconnect_interval
            self._maintain(now)
        if self.delegate is not None:
            d = self.delegate.next_deadline()
            if d is not None and d <= now:
                self._delegate_tick(now)
        return self._flush()

    # --- message handling ------------------------------------------------------------

    def _handle(self, msg: Message, addr: Addr, now: float) -> None:
        if isinstance(msg, Ping):
            self._on_ping(msg, now)
        elif isinstance(msg, Ack):
            self._on_ack(msg, now)
        elif isinstance(msg, Alive):
            self._alive(msg, now)
        elif isinstance(msg, Suspect):
            self._suspect(msg, now, addr)
        elif isinstance(msg, Dead):
            self._dead(msg, now, addr)
        elif isinstance(msg, IndirectPing):
            self._on_indirect(msg, now)
        elif isinstance(msg, Nack):
            probe = self._probes.get(msg.seq)
            if probe is not None:
                probe.nacks += 1
        elif isinstance(msg, TableEntry | NetworkEvent | TableDigest):
            if self.delegate is not None:
                self.delegate.notify(msg, now)
        else:  # push-pull and bulk state only travel over streams
            self.stats.decode_errors += 1

    def _on_ping(self, ping: Ping, now: float) -> None:
        if ping.target != self.name:
            return
        parts = [codec.encode(Ack(ping.seq))]
        m = self.members.get(ping.source)
        if m is not None and m.state in (State.DEAD, State.SUSPECT):
            # It talks to us while we think it's gone: tell it, so it refutes.
            news: Message = (
                Dead(m.incarnation, m.name, self.name)
                if m.state == State.DEAD
                else Suspect(m.incarnation, m.name, self.name)
            )
            parts.append(codec.encode(news))
        self._send(ping.source_addr, parts)

    def _on_ack(self, ack: Ack, now: float) -> None:
        probe = self._probes.pop(ack.seq, None)
        if probe is not None:
            if not probe.indirect:
                self.awareness.apply(-1)
            return
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            self._send(relay.source_addr, [codec.encode(Ack(relay.seq))])
            return
        name = self._reconnects.pop(ack.seq, None)
        if name is not None and name in self.members:
            # A member we hold dead answered: resync fully with it.
            self._stream(self.members[name].addr, self._push_pull_msg(False, False, name))

    def _on_indirect(self, req: IndirectPing, now: float) -> None:
        seq = self._next_seq()
        self._relays[seq] = _Relay(req.seq, req.source_addr, req.nack)
        if req.nack:
            self._timer(now + self.cfg.indirect_nack_after, "relay_nack", seq)
        self._timer(now + self.cfg.probe_timeout, "relay", seq)  # a later ack still goes on
        self._send(req.target_addr, [codec.encode(Ping(seq, req.target, self.name, self.addr))])

    def _alive(self, a: Alive, now: float) -> None:
        if a.node == self.name:
            me = self.me
            newer = a.incarnation > me.incarnation
            if not self.leaving and (
                newer or (a.incarnation == me.incarnation and a.meta != me.meta)
            ):
                self._refute(a.incarnation, None, now)
            return
        m = self.members.get(a.node)
        if m is None:
            m = Member(a.node, a.addr, a.incarnation, State.ALIVE, now, a.meta)
            self.members[a.node] = m
            self._live += 1
            self._probe_list.insert(self.rng.randint(0, len(self._probe_list)), a.node)
            self._broadcast(a.node, a)
            self._out.events.append(MemberAlive(a.node, a.addr, a.incarnation, a.meta))
            if self.delegate is not None:
                self.delegate.member_changed(a.node, True, now)
            return
        if a.incarnation <= m.incarnation:
            return
        self.suspicions.pop(a.node, None)
        info_changed = a.addr != m.addr or a.meta != m.meta
        m.incarnation, m.addr, m.meta = a.incarnation, a.addr, a.meta
        self._broadcast(a.node, a)
        old = m.state
        if old != State.ALIVE:
            self._set_state(m, State.ALIVE, now)
            if old in (State.DEAD, State.LEFT) and self.delegate is not None:
                self.delegate.member_changed(a.node, True, now)
        if old != State.ALIVE or info_changed:
            self._out.events.append(MemberAlive(a.node, a.addr, a.incarnation, a.meta))

    def _suspect(self, s: Suspect, now: float, src: Addr | None = None) -> None:
        m = self.members.get(s.node)
        if m is None:
            return
        if s.incarnation < m.incarnation:
            self._correct(m, src)
            return
        if s.node == self.name:
            if not self.leaving:
                self._refute(s.incarnation, s.accuser, now)
            return
        if m.state == State.SUSPECT:
            susp = self.suspicions.get(s.node)
            if susp is not None and susp.confirm(s.accuser, now):
                self._broadcast(s.node, s)
                self._timer(susp.deadline, "suspicion", s.node)
            return
        if m.state != State.ALIVE:
            return
        self._broadcast(s.node, s)
        m.incarnation = s.incarnation
        self._set_state(m, State.SUSPECT, now)
        n = self._live
        k = self.cfg.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        lo = self.cfg.suspicion_min(n)
        susp = Suspicion(s.accuser, k, lo, lo * self.cfg.suspicion_max_mult, now)
        self.suspicions[s.node] = susp
        self._timer(susp.deadline, "suspicion", s.node)
        self._out.events.append(MemberSuspect(s.node, s.incarnation, s.accuser))
        if s.accuser != self.name and not self.leaving:
            p = self.cfg.confirm_probes / max(1, n - 2)
            if p >= 1 or self.rng.random() < p:
                self._probe_member(m, now)

    def _dead(self, d: Dead, now: float, src: Addr | None = None) -> None:
        m = self.members.get(d.node)
        if m is None:
            return
        if d.incarnation < m.incarnation:
            if d.accuser != d.node:
                self._correct(m, src)
            return
        if d.node == self.name:
            if not self.leaving:
                self._refute(d.incarnation, d.accuser, now)
            return
        if m.state in (State.DEAD, State.LEFT):
            return
        self.suspicions.pop(d.node, None)
        self._broadcast(d.node, d)
        m.incarnation = d.incarnation
        left = d.accuser == d.node
        self._set_state(m, State.LEFT if left else State.DEAD, now)
        event = (
            MemberLeft(d.node, d.incarnation)
            if left
            else MemberDead(d.node, d.incarnation, d.accuser)
        )
        self._out.events.append(event)
        if self.delegate is not None:
            self.delegate.member_changed(d.node, False, now)

    def _correct(self, m: Member, src: Addr | None) -> None:
        """A stale accusation reached us: show whoever passed it on the newer Alive it missed.

        Without this, a node that missed one refutation declares a live node
        dead on its own after the max timeout: nobody confirms or refutes a
        stale suspicion (everyone else, the accused included, ignores it).
        """
        if src is None or m.state != State.ALIVE or src == self.addr:
            return
        self._send(src, [codec.encode(Alive(m.incarnation, m.name, m.addr, m.meta))])

    def _refute(self, accused: int, accuser: str | None, now: float) -> None:
        """Someone thinks we are suspect/dead/older: outbid them and say so loudly."""
        inc = max(self.me.incarnation + 1, accused + 1)
        self.me.incarnation = inc
        self.awareness.apply(1)
        alive = Alive(inc, self.name, self.addr, self.me.meta)
        enc = codec.encode(alive)
        self.queue.drop(self.name)  # older news about us must not ride along
        targets = self._random_members(self.cfg.gossip_nodes, self._is_alive)
        acc = self.members.get(accuser) if accuser else None
        if acc is not None and acc is not self.me and acc not in targets:
            targets.append(acc)
        for m in targets:  # Lifeguard: don't wait for the next gossip round
            self._send(m.addr, [enc])
        self.queue.queue(enc, self.name)

    def _merge(self, pp: PushPull, now: float) -> None:
        for n in pp.nodes:
            if n.state == State.ALIVE:
                self._alive(Alive(n.incarnation, n.name, n.addr, n.meta), now)
            elif n.state == State.LEFT:
                self._dead(Dead(n.incarnation, n.name, n.name), now)
            else:  # memberlist: a remote "dead" only makes us suspect
                self._suspect(Suspect(n.incarnation, n.name, self.name), now)
        if pp.user_state and self.delegate is not None:
            self.delegate.merge_remote(pp.user_state, pp.join, now)

    # --- timers ----------------------------------------------------------------------

    def _on_timer(self, kind: str, arg: object, now: float) -> None:
        if kind == "probe_timeout":
            self._probe_timeout(arg, now)  # type: ignore[arg-type]
        elif kind == "probe_deadline":
            self._probe_deadline(arg, now)  # type: ignore[arg-type]
        elif kind == "relay_nack":
            relay = self._relays.get(arg)  # type: ignore[call-overload]
            if relay is not None:  # no ack from the target yet (an ack pops the relay)
                self._send(relay.source_addr, [codec.encode(Nack(relay.seq))])
        elif kind == "relay":
            self._relays.pop(arg, None)  # type: ignore[call-overload]
        elif kind == "suspicion":
            self._suspicion_timeout(arg, now)  # type: ignore[arg-type]
        elif kind == "reconnect":
            self._reconnects.pop(arg, None)  # type: ignore[call-overload]

    def _probe(self, now: float) -> None:
        self._next_probe = now + self.awareness.scale(self.cfg.probe_interval)
        target = self._next_probe_target()
        if target is not None:
            self._probe_member(target, now)

    def _probe_member(self, target: Member, now: float) -> None:
        period = self.awareness.scale(self.cfg.probe_interval)
        seq = self._next_seq()
        self._probes[seq] = _Probe(target.name, now + period)
        self._timer(now + self.cfg.probe_timeout, "probe_timeout", seq)
        self._timer(now + period, "probe_deadline", seq)
        parts = [codec.encode(Ping(seq, target.name, self.name, self.addr))]
        if target.state == State.SUSPECT:  # give it the chance to refute at once
            parts.append(codec.encode(Suspect(target.incarnation, target.name, self.name)))
        self._send(target.addr, parts)

    def _next_probe_target(self) -> Member | None:
        for _ in range(len(self._probe_list) + 1):
            if self._probe_index >= len(self._probe_list):
                self._probe_list = [n for n in self._probe_list if n in self.members]
                self.rng.shuffle(self._probe_list)
                self._probe_index = 0
                if not self._probe_list:
                    return None
            m = self.members.get(self._probe_list[self._probe_index])
            self._probe_index += 1
            if m is not None and m.state in (State.ALIVE, State.SUSPECT):
                return m
        return None

    def _probe_timeout(self, seq: int, now: float) -> None:
        probe = self._probes.get(seq)
        target = self.members.get(probe.target) if probe else None
        if probe is None or target is None:
            return
        probe.indirect = True
        ping = codec.encode(Ping(seq, target.name, self.name, self.addr))
        self._send(target.addr, [ping])  # one more direct try: UDP loss is the usual cause
        req = codec.encode(IndirectPing(seq, target.name, target.addr, self.name, self.addr, True))
        helpers = self._random_members(
            self.cfg.indirect_checks,
            lambda m: m.state == State.ALIVE and m.name != target.name,
        )
        for helper in helpers:
            self._send(helper.addr, [req])
        probe.expected_nacks = len(helpers)

    def _probe_deadline(self, seq: int, now: float) -> None:
        probe = self._probes.pop(seq, None)
        if probe is None:
            return
        if probe.expected_nacks > 0:
            self.awareness.apply(max(probe.expected_nacks - probe.nacks, 0))
        else:
            self.awareness.apply(1)
        m = self.members.get(probe.target)
        if m is None or m.state not in (State.ALIVE, State.SUSPECT):
            return
        s = Suspect(m.incarnation, m.name, self.name)
        self._suspect(s, now)
        self._send(m.addr, [codec.encode(s)], False)  # Lifeguard: tell the suspect first

    def _suspicion_timeout(self, name: str, now: float) -> None:
        susp = self.suspicions.get(name)
        m = self.members.get(name)
        if susp is None or m is None or m.state != State.SUSPECT:
            return
        if now < susp.deadline:
            return  # a stale heap entry; the live one is queued
        self._dead(Dead(m.incarnation, name, self.name), now)

    def _gossip(self, now: float) -> None:
        for name, susp in self.suspicions.items():
            m = self.members[name]
            if susp.accuser == self.name and m.state == State.SUSPECT:
                # Until it refutes or dies, keep telling the suspect: if our first
                # word was lost, nobody else may ever tell it (Lifeguard's buddy).
                self._send(m.addr, [codec.encode(Suspect(m.incarnation, name, self.name))], False)
        has_user = self.delegate is not None and self.delegate.has_broadcasts()
        if not self.queue and not has_user:
            return
        limit = self.cfg.retransmit_limit(self._live)
        for target in self._random_members(
            self.cfg.gossip_nodes, lambda m: self._gossipable(m, now)
        ):
            parts = self._fill([], self._budget - codec.COMPOUND_HEADER, limit)
            if not parts:
                break
            self._emit(target.addr, parts)

    def _push_pull(self, now: float) -> None:
        peers = self._random_members(1, self._is_alive)
        if peers:
            self._stream(peers[0].addr, self._push_pull_msg(False, False, peers[0].name))

    def _maintain(self, now: float) -> None:
        """Reconnect to one dead member (partition heal) and reap long-gone ones."""
        dead: list[Member] = []
        for name in list(self._down):
            m = self.members[name]
            age = now - m.state_change
            if (m.state == State.DEAD and age > self.cfg.dead_reap) or (
                m.state == State.LEFT and age > self.cfg.left_reap
            ):
                del self.members[name]
                self._down.discard(name)
            elif m.state == State.DEAD:
                dead.append(m)
        if dead and not self.leaving:
            m = dead[self.rng.randrange(len(dead))]
            seq = self._next_seq()
            self._reconnects[seq] = m.name
            self._timer(now + self.cfg.probe_interval, "reconnect", seq)
            self._send(m.addr, [codec.encode(Ping(seq, m.name, self.name, self.addr))])

    def _delegate_tick(self, now: float) -> None:
        assert self.delegate is not None
        out = self.delegate.tick(now, self._budget - codec.COMPOUND_HEADER)
        for name, parts in out.sends:
            m = self.members.get(name)
            if m is not None:
                self._send(m.addr, parts)
        for name, blob in out.streams:
            m = self.members.get(name)
            if m is not None:
                self._stream_raw(m.addr, blob)

    # --- helpers ---------------------------------------------------------------------

    def _set_state(self, m: Member, state: State, now: float) -> None:
        live_before = m.state in (State.ALIVE, State.SUSPECT)
        live_after = state in (State.ALIVE, State.SUSPECT)
        self._live += live_after - live_before
        m.state = state
        m.state_change = now
        if live_after:
            self._down.discard(m.name)
        else:
            self._down.add(m.name)

    def _is_alive(self, m: Member) -> bool:
        return m.state == State.ALIVE

    def _gossipable(self, m: Member, now: float) -> bool:
        if m.state in (State.ALIVE, State.SUSPECT):
            return True
        return m.state == State.DEAD and now - m.state_change < self.cfg.gossip_to_dead

    def _random_members(self, k: int, pred: object) -> list[Member]:
        """Up to k distinct random members (never ourselves) satisfying `pred`."""
        names = self._probe_list
        out: list[Member] = []
        if len(names) <= 4 * k:  # small cluster: an exact draw without replacement
            cands = [m for n in names if (m := self.members.get(n)) is not None and pred(m)]  # type: ignore[operator]
            self.rng.shuffle(cands)
            return cands[:k]
        seen: set[str] = set()
        for _ in range(3 * k + 3):
            name = names[self.rng.randrange(len(names))]
            if name in seen:
                continue
            seen.add(name)
            m = self.members.get(name)
            if m is not None and pred(m):  # type: ignore[operator]
                out.append(m)
                if len(out) == k:
                    break
        return out

    def _broadcast(self, key: str, msg: Message) -> None:
        self.queue.queue(codec.encode(msg), key)

    def _fill(self, parts: list[bytes], room: int, limit: int) -> list[bytes]:
        """Append queued broadcasts (SWIM first, then the delegate's) that fit in `room`."""
        room -= sum(len(p) + _PART_OVERHEAD for p in parts)
        extra = [
            e for e in self.queue.get_broadcasts(_PART_OVERHEAD, room, limit) if e not in parts
        ]
        room -= sum(len(p) + _PART_OVERHEAD for p in extra)
        if self.delegate is not None and room > _PART_OVERHEAD:
            extra += self.delegate.broadcasts(_PART_OVERHEAD, room)
        return parts + extra

    def _send(self, addr: Addr, parts: list[bytes], piggyback: bool = True) -> None:
        """Send `parts` (split into packets if needed), piggybacking broadcasts on the last."""
        room = self._budget - codec.COMPOUND_HEADER
        batch: list[bytes] = []
        used = 0
        for p in parts:
            cost = len(p) + _PART_OVERHEAD
            if batch and used + cost > room:
                self._emit(addr, batch)
                batch, used = [], 0
            batch.append(p)
            used += cost
        if piggyback:
            batch = self._fill(batch, room, self.cfg.retransmit_limit(self._live))
        self._emit(addr, batch)

    def _emit(self, addr: Addr, parts: list[bytes]) -> None:
        data = self._seal(codec.encode_compound(parts))
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(data)
        self._out.sends.append((addr, data))

    def _stream(self, addr: Addr, msg: Message) -> None:
        self._stream_raw(addr, codec.encode(msg))

    def _stream_raw(self, addr: Addr, blob: bytes) -> None:
        data = self._seal(blob)
        self.stats.streams_sent += 1
        self.stats.stream_bytes_sent += len(data)
        self._out.streams.append((addr, data))

    def _push_pull_msg(self, join: bool, reply: bool, peer: str | None) -> PushPull:
        nodes = tuple(
            NodeState(m.name, m.addr, m.incarnation, m.state, m.meta) for m in self.members.values()
        )
        user = self.delegate.local_state(join, peer) if self.delegate is not None else b""
        return PushPull(self.name, join, reply, nodes, user)

    def _seal(self, plain: bytes | Message) -> bytes:
        raw = plain if isinstance(plain, bytes) else codec.encode(plain)
        return self.channel.seal(raw) if self.channel is not None else raw

    def _open(self, data: bytes, max_size: int = _UDP_MAX) -> Message | None:
        raw: bytes | None = bytes(data)
        if self.channel is not None:
            raw = self.channel.open(raw, max_size)
            if raw is None:
                self.stats.dropped += 1
                return None
        try:
            return codec.decode(raw, max_size)
        except DecodeError:
            self.stats.decode_errors += 1
            return None

    def _timer(self, when: float, kind: str, arg: object) -> None:
        self._timer_id += 1
        heapq.heappush(self._timers, (when, self._timer_id, kind, arg))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _flush(self) -> Output:
        out, self._out = self._out, Output()
        if self.delegate is not None:
            out.events.extend(self.delegate.take_events())
        return out
