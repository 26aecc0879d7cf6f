"""SwimCore in small hand-driven clusters (h11 ConnectionPair / raft `network` style): exact steps, no sleeping."""

from __future__ import annotations

import random
from collections.abc import Callable

from gossip import codec
from gossip.config import GossipConfig
from gossip.crypto import Channel, Keyring
from gossip.events import Event, MemberAlive, MemberDead, MemberLeft, MemberSuspect
from gossip.messages import Ack, Addr, Alive, IndirectPing, Message, Nack, Ping, State, Suspect
from gossip.swim import Output, SwimCore

CFG = GossipConfig.lan()


def addr(name: str) -> Addr:
    return (f"10.0.0.{ord(name[-1]) % 200}", 7946)


class Cluster:
    """Cores wired by direct delivery; `drop(src, dst, msg)` filters datagrams."""

    def __init__(self, names: list[str], *, encrypt: bool = False) -> None:
        ring = Keyring([b"k" * 32])
        self.cores: dict[str, SwimCore] = {}
        for i, n in enumerate(names):
            rng = random.Random(i)
            ch = Channel(ring, n, 1, nonce_source=rng.randbytes) if encrypt else None
            self.cores[n] = SwimCore(n, addr(n), CFG, rng, 0.0, channel=ch)
        self.by_addr = {addr(n): n for n in names}
        self.events: dict[str, list[Event]] = {n: [] for n in names}
        self.down: set[str] = set()
        self.drop: Callable[[str, str, list[Message]], bool] = lambda s, d, m: False
        self.log: list[tuple[str, str, list[Message]]] = []
        first = names[0]
        for n in names[1:]:
            self.deliver(n, self.cores[n].join([addr(first)], 0.0), 0.0)

    def deliver(self, src: str, out: Output, now: float) -> None:
        self.events[src] += out.events
        for a, data in out.sends:
            dst = self.by_addr[a]
            msgs = self.decode(src, data)
            self.log.append((src, dst, msgs))
            if dst in self.down or self.drop(src, dst, msgs):
                continue
            self.deliver(dst, self.cores[dst].receive(data, addr(src), now), now)
        for a, data in out.streams:
            dst = self.by_addr[a]
            if dst in self.down:
                continue
            reply, o = self.cores[dst].handle_stream(data, addr(src), now)
            self.deliver(dst, o, now)
            if reply is not None:
                self.deliver(src, self.cores[src].stream_reply(reply, a, now), now)

    def decode(self, src: str, data: bytes) -> list[Message]:
        core = self.cores[src]
        if core.channel is not None:
            return []
        msg = codec.decode(data)
        return list(msg.parts) if hasattr(msg, "parts") else [msg]  # type: ignore[union-attr]

    def run_until(self, t: float) -> None:
        while True:
            live = [(c.next_deadline(), n) for n, c in self.cores.items() if n not in self.down]
            when, name = min(live)
            if when > t:
                return
            self.deliver(name, self.cores[name].tick(when), when)

    def state(self, viewer: str, of: str) -> State:
        return self.cores[viewer].members[of].state


def test_join_makes_everyone_alive() -> None:
    c = Cluster(["a", "b", "c"])
    c.run_until(1.0)
    for v in "abc":
        assert {m.name for m in c.cores[v].members.values()} == {"a", "b", "c"}
        assert all(m.state == State.ALIVE for m in c.cores[v].members.values())
    assert any(isinstance(e, MemberAlive) and e.name == "c" for e in c.events["a"])


def test_probe_is_ping_then_ack() -> None:
    c = Cluster(["a", "b"])
    c.run_until(2.0)
    pings = [(s, d) for s, d, ms in c.log if any(isinstance(m, Ping) for m in ms)]
    acks = [(s, d) for s, d, ms in c.log if any(isinstance(m, Ack) for m in ms)]
    assert ("a", "b") in pings and ("b", "a") in acks
    assert not any(isinstance(e, MemberSuspect) for e in c.events["a"] + c.events["b"])
    assert c.cores["a"].awareness.score == 0


def test_lost_direct_ack_recovered_through_indirect_probe() -> None:
    c = Cluster(["a", "b", "h"])
    c.run_until(1.0)
    # b's direct answers to a are lost; relayed through helper h they arrive.
    c.drop = lambda s, d, ms: (
        (s, d) == ("b", "a") or ((s, d) == ("a", "b") and any(isinstance(m, Ping) for m in ms))
    )
    c.run_until(3.0)
    assert any(
        isinstance(m, IndirectPing) for s, d, ms in c.log if (s, d) == ("a", "h") for m in ms
    )
    assert c.state("a", "b") == State.ALIVE
    assert not any(isinstance(e, MemberSuspect) and e.name == "b" for e in c.events["a"])


def test_unreachable_node_suspected_with_nacks_then_dead() -> None:
    c = Cluster(["a", "b", "h"])
    c.run_until(1.0)
    c.down.add("b")
    c.run_until(1.25)
    c.down.discard("b")
    c.drop = lambda s, d, ms: "b" in (s, d)
    c.run_until(2.0)
    nacks = [m for s, d, ms in c.log if (s, d) == ("h", "a") for m in ms if isinstance(m, Nack)]
    assert nacks, "the helper must nack when the target stays silent"
    assert any(isinstance(e, MemberSuspect) and e.name == "b" for e in c.events["a"])
    c.run_until(4.0)
    assert c.state("a", "b") == State.DEAD and c.state("h", "b") == State.DEAD
    dead = [e for e in c.events["a"] if isinstance(e, MemberDead)]
    assert [e.name for e in dead] == ["b"]


def test_suspect_about_self_is_refuted() -> None:
    c = Cluster(["a", "b", "h"])
    c.run_until(1.0)
    inc = c.cores["b"].incarnation
    out = c.cores["b"].receive(Suspect(inc, "b", "a"), addr("a"), 1.0)
    assert c.cores["b"].incarnation == inc + 1
    sent = [codec.decode(d) for _, d in out.sends]
    flat = [p for m in sent for p in (m.parts if hasattr(m, "parts") else (m,))]  # type: ignore[union-attr]
    assert Alive(inc + 1, "b", addr("b")) in flat  # told at once, not at the next gossip round
    assert c.cores["b"].awareness.score == 1


def test_refutation_clears_suspicion_everywhere() -> None:
    c = Cluster(["a", "b", "h"])
    c.run_until(1.0)
    c.deliver("a", c.cores["a"].receive(Suspect(0, "b", "h"), addr("h"), 1.0), 1.0)
    c.run_until(3.0)
    assert c.state("a", "b") == State.ALIVE
    assert c.cores["a"].members["b"].incarnation >= 1
    assert not any(isinstance(e, MemberDead) for e in c.events["a"])


def test_graceful_leave() -> None:
    c = Cluster(["a", "b", "h"])
    c.run_until(1.0)
    c.deliver("b", c.cores["b"].leave(1.0), 1.0)
    c.run_until(1.5)
    assert c.state("a", "b") == State.LEFT
    assert [e for e in c.events["a"] if isinstance(e, MemberLeft)] == [MemberLeft("b", 0)]


def test_garbage_is_counted_not_raised() -> None:
    c = Cluster(["a", "b"], encrypt=True)
    core = c.cores["a"]
    core.receive(b"\x01garbage", addr("b"), 1.0)
    core.receive(b"", addr("b"), 1.0)
    assert core.stats.dropped == 2
    plain = SwimCore("p", addr("p"), CFG, random.Random(0), 0.0)
    plain.receive(b"\xffnot a message", addr("b"), 1.0)
    assert plain.stats.decode_errors == 1


def test_encrypted_cluster_works_and_packets_fit() -> None:
    c = Cluster(["a", "b", "c", "d"], encrypt=True)
    c.run_until(5.0)
    for core in c.cores.values():
        assert core.num_live == 4
        assert core.stats.dropped == 0


def test_next_deadline_is_exact() -> None:
    core = SwimCore("a", addr("a"), CFG, random.Random(0), 0.0)
    t = core.next_deadline()
    assert 0.0 <= t <= CFG.probe_interval
    core.tick(t)
    assert core.next_deadline() > t
