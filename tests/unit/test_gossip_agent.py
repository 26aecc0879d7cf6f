"""GossipAgent over real loopback sockets: several agents in one process, one event loop.

Every agent binds its own 127.0.0.x address with a free port (port 0: the agent
picks one free for both UDP and TCP). Waits poll with deadlines; nothing sleeps
and hopes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from gossip import codec
from gossip.agent import GossipAgent, parse_address
from gossip.crypto import Channel, Keyring
from gossip.events import (
    Change,
    EndpointEvent,
    MemberAlive,
    MemberDead,
    MemberEvent,
    MemberLeft,
    MemberSuspect,
)
from gossip.messages import Ack, Alive, Compound, EndpointRecord, PushPull, State, TableEntry

pytestmark = pytest.mark.timeout(60)

K1 = bytes(range(32))
K2 = bytes(range(32, 64))
K3 = bytes(range(64, 96))
NET = "net-a"


@dataclass
class Rec:
    """What one agent's callbacks saw, with loop-clock timestamps."""

    members: list[tuple[float, MemberEvent]] = field(default_factory=list)
    entries: list[tuple[float, EndpointEvent]] = field(default_factory=list)

    def member(self, ev: MemberEvent) -> None:
        self.members.append((time.monotonic(), ev))

    def entry(self, ev: EndpointEvent) -> None:
        self.entries.append((time.monotonic(), ev))

    def member_kinds(self, kind: type, name: str | None = None) -> list[MemberEvent]:
        return [e for _, e in self.members if isinstance(e, kind) and name in (None, e.name)]

    def entry_seen(self, eid: str, change: Change) -> float | None:
        for t, e in self.entries:
            if e.endpoint_id == eid and e.change == change:
                return t
        return None


async def until(check: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def record(eid: str, ip: str = "10.0.0.2", name: str = "") -> EndpointRecord:
    octets = [int(x) for x in ip.split(".")]
    mac = "02:42:" + ":".join(f"{b:02x}" for b in octets)
    return EndpointRecord(eid, ip, mac, "127.0.0.1", name)


class Cluster:
    def __init__(self) -> None:
        self.agents: list[GossipAgent] = []
        self.recs: dict[str, Rec] = {}

    async def add(self, name: str, keys: list[bytes] | None = None, **kw: object) -> GossipAgent:
        rec = Rec()
        host = 2 + len(self.agents)
        agent = GossipAgent(
            name,
            keys or [K1],
            bind_addr=f"127.0.0.{host}",
            bind_port=0,
            on_member=rec.member,
            on_entry=rec.entry,
            **kw,  # type: ignore[arg-type]
        )
        await agent.start()
        self.agents.append(agent)
        self.recs[name] = rec
        return agent

    async def converge(self, agents: list[GossipAgent], timeout: float = 5.0) -> None:
        names = {a.name for a in agents}

        def done() -> bool:
            return all(
                {m.name for m in a.members() if m.state == State.ALIVE} >= names for a in agents
            )

        await until(done, timeout, f"{sorted(names)} to see each other alive")

    async def close(self) -> None:
        for a in self.agents:
            await a.stop(leave=False)


@asynccontextmanager
async def cluster(n: int, **kw: object) -> AsyncIterator[tuple[Cluster, list[GossipAgent]]]:
    c = Cluster()
    try:
        agents = [await c.add(f"node-{i}", **kw) for i in range(n)]  # type: ignore[arg-type]
        for a in agents[1:]:
            assert await a.join([seed(agents[0])]) == 1
        await c.converge(agents)
        yield c, agents
    finally:
        await c.close()


def seed(a: GossipAgent) -> str:
    return f"{a.addr[0]}:{a.addr[1]}"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- tests ---------------------------------------------------------------------------------


def test_parse_address() -> None:
    assert parse_address("192.0.2.1") == ("192.0.2.1", 7946)
    assert parse_address("192.0.2.1:8000") == ("192.0.2.1", 8000)
    assert parse_address("[2001:db8::1]:9") == ("2001:db8::1", 9)
    assert parse_address("2001:db8::1", 5) == ("2001:db8::1", 5)
    for bad in ("nonsense", "1.2.3.4:0", "1.2.3.4:x", "[::1", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_join_members_and_failed_seed() -> None:
    async with cluster(4) as (c, agents):
        a = agents[0]
        rows = a.members()
        assert [m.name for m in rows] == [f"node-{i}" for i in range(4)]
        assert all(m.state == State.ALIVE for m in rows)
        assert {m.addr for m in rows} == {x.addr for x in agents}
        for name, rec in c.recs.items():  # one MemberAlive per other node, nothing else
            alive = {e.name for e in rec.member_kinds(MemberAlive)}
            assert alive == {x.name for x in agents} - {name}
            assert not rec.member_kinds(MemberSuspect) and not rec.member_kinds(MemberDead)
        await until(lambda: a.stats()["packets_in"] > 0 and a.stats()["bytes_out"] > 0)
        st = a.stats()
        assert st["members_alive"] == 4 and st["streams_in"] + st["streams_out"] >= 1
        assert st["dropped_undecryptable"] == 0 and st["handler_errors"] == 0
        # A seed nobody listens on: refused at once, counted as 0 answers.
        lonely = await c.add("lonely")
        t0 = time.monotonic()
        assert await lonely.join([f"127.0.0.250:{free_port('127.0.0.250')}"]) == 0
        assert time.monotonic() - t0 < 2
        assert await lonely.join([seed(lonely)]) == 0  # ourselves: skipped
        assert [m.name for m in lonely.members()] == ["lonely"]


async def test_entry_propagation_update_delete_and_late_joiner() -> None:
    async with cluster(4) as (c, agents):
        a, b, d, outsider = agents
        for x in (a, b, d):
            x.join_network(NET)
        await until(lambda: all(len(x.participants(NET)) >= 2 for x in (a, b, d)))
        latencies = []
        for i in range(20):
            eid = f"ep{i}"
            t0 = time.monotonic()
            a.put_entry(NET, eid, record(eid, f"10.0.0.{i + 2}"))
            await until(
                lambda eid=eid: all(c.recs[x.name].entry_seen(eid, Change.ADDED) for x in (b, d)),
                2.0,
                f"{eid} on b and d",
            )
            latencies.append(
                max(c.recs[x.name].entry_seen(eid, Change.ADDED) or 0 for x in (b, d)) - t0
            )
        latencies.sort()
        print(
            f"loopback entry A->B latency p50={latencies[10] * 1e3:.2f} ms max={latencies[-1] * 1e3:.2f} ms"
        )
        assert latencies[10] < 0.05  # pushed at once, not on the 100 ms gossip tick
        assert b.entries(NET)["ep3"] == record("ep3", "10.0.0.5")
        assert b.table_sizes() == {NET: 20}
        assert not c.recs[outsider.name].entries and outsider.table_sizes() == {}
        assert not c.recs[a.name].entries  # our own rows give no events by default

        a.put_entry(NET, "ep3", record("ep3", "10.0.0.99", name="web"))
        await until(lambda: c.recs[b.name].entry_seen("ep3", Change.UPDATED), 2.0, "update")
        assert b.entries(NET)["ep3"].name == "web"
        a.delete_entry(NET, "ep4")
        await until(lambda: c.recs[d.name].entry_seen("ep4", Change.REMOVED), 2.0, "delete")
        assert "ep4" not in b.entries(NET) or c.recs[b.name].entry_seen("ep4", Change.REMOVED)

        # A node joining the network later gets every row in one sync round trip.
        outsider.join_network(NET)
        await until(lambda: outsider.table_sizes() == {NET: 19}, 3.0, "late joiner sync")
        got = {e.endpoint_id for _, e in c.recs[outsider.name].entries}
        assert got == {f"ep{i}" for i in range(20)} - {"ep4"}

        # Leaving a network deletes our rows there for everyone.
        a.leave_network(NET)
        await until(lambda: b.table_sizes() == {NET: 0}, 3.0, "rows of a leaver removed")
        with pytest.raises(ValueError):
            a.put_entry(NET, "x", record("x"))
        with pytest.raises(ValueError):
            b.put_entry(NET, "x", record("y"))  # key != endpoint id
        with pytest.raises(ValueError):
            b.put_entry(NET, "x", EndpointRecord("x", "not-an-ip", "02:42:00:00:00:01", "1.1.1.1"))
        assert b.table_sizes() == {NET: 0}


async def test_dead_node_entries_withdrawn_and_restored() -> None:
    """Cut B off (it switches to a key nobody has), then let it back in."""
    async with cluster(3) as (c, agents):
        a, b, d = agents
        for x in agents:
            x.join_network(NET)
        await until(lambda: len(a.participants(NET)) == 2)
        b.put_entry(NET, "web1", record("web1"))
        await until(lambda: a.table_sizes()[NET] == 1 and d.table_sizes()[NET] == 1)

        t0 = time.monotonic()
        b.set_keys([K3], K3)
        await until(
            lambda: all(c.recs[x.name].member_kinds(MemberDead, b.name) for x in (a, d)),
            5.0,
            "b declared dead",
        )
        print(f"isolated node declared dead by all in {time.monotonic() - t0:.2f} s")
        await until(
            lambda: all(c.recs[x.name].entry_seen("web1", Change.REMOVED) for x in (a, d)),
            1.0,
            "b's entry withdrawn",
        )
        assert a.table_sizes()[NET] == 0
        assert a.stats()["dropped_undecryptable"] > 0

        b.set_keys([K1], K1)
        await c.converge(agents, timeout=10.0)
        await until(lambda: a.table_sizes()[NET] == 1 and d.table_sizes()[NET] == 1, 2.0)
        for x in (a, d):
            seen = [e.change for _, e in c.recs[x.name].entries if e.endpoint_id == "web1"]
            assert seen == [Change.ADDED, Change.REMOVED, Change.ADDED]


async def test_key_rotation_without_loss() -> None:
    async with cluster(3) as (c, agents):
        for x in agents:
            x.join_network(NET)
        await until(lambda: all(len(x.participants(NET)) == 2 for x in agents))
        n = 0

        async def round_of_entries(tag: str) -> None:
            nonlocal n
            for x in agents:
                n += 1
                x.put_entry(NET, f"{tag}-{x.name}", record(f"{tag}-{x.name}", f"10.1.0.{n}"))
            await until(lambda: all(x.table_sizes()[NET] == n for x in agents), 2.0, tag)

        await round_of_entries("k1")
        for x in agents:  # 1. install the new key everywhere (still sealing with K1)
            x.set_keys([K1, K2], K1)
        await round_of_entries("installed")
        for x in agents:  # 2. make it the primary everywhere
            x.set_keys([K1, K2], K2)
        # Barrier: each node hears each other's K2-sealed entry; loopback UDP is FIFO per
        # socket, so every K1-sealed datagram queued before the switch was read by then.
        await round_of_entries("switched")
        for x in agents:  # 3. retire the old key
            x.set_keys([K2], K2)
        await round_of_entries("k2")
        before = [x.stats()["packets_in"] for x in agents]
        await until(
            lambda: all(
                x.stats()["packets_in"] > p + 30 for x, p in zip(agents, before, strict=True)
            ),
            10.0,
            "more probe rounds on K2 only",
        )
        for x in agents:
            st = x.stats()
            assert st["dropped_undecryptable"] == 0, st
            assert st["dropped_replayed"] == 0, st
            rec = c.recs[x.name]
            assert not rec.member_kinds(MemberSuspect) and not rec.member_kinds(MemberDead)
        # A node that only knows the retired key is shut out.
        old = await c.add("old", keys=[K1])
        assert await old.join([seed(agents[0])]) == 0
        assert "old" not in {m.name for m in agents[0].members()}


async def test_wrong_key_cannot_join_nor_inject() -> None:
    async with cluster(2) as (c, agents):
        a, b = agents
        for x in agents:
            x.join_network(NET)
        await until(lambda: len(a.participants(NET)) == 1)
        w = await c.add("intruder", keys=[K2])
        w.join_network(NET)
        assert await w.join([seed(a), seed(b)]) == 0
        assert [m.name for m in w.members()] == ["intruder"]

        target = a.addr
        evil_entry = TableEntry(NET, "evil-ep", "node-1", 99, record("evil-ep"))
        evil = codec.encode(
            Compound(
                (
                    Alive(5, "evil", ("127.0.0.66", 7946)),
                    evil_entry,
                )
            )
        )
        wrong = Channel(Keyring([K2]), "evil", 1)
        right = Channel(Keyring([K1]), "friend", 1)
        replayed = right.seal(codec.encode(Ack(4242)))
        datagrams = [
            wrong.seal(evil),  # wrong key
            wrong.seal(codec.encode(Alive(5, "evil", ("127.0.0.66", 7946)))),
            os.urandom(200),  # noise
            b"",  # empty
            b"\x01" * 10,  # truncated
            right.seal(b"\xff\x00garbage"),  # authentic but malformed
            right.seal(b""),  # authentic, empty plaintext
            replayed,
            replayed,  # replay
            right.seal(os.urandom(1500)),  # oversized datagram
        ]
        st0 = a.stats()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.66", 0))
            for d in datagrams:
                s.sendto(d, target)
        # Streams: garbage, a huge length, a wrong-key push-pull, a stall that times out.
        pp = codec.encode(PushPull("evil", True, False, ()))
        for frame in (
            struct.pack("!I", 20) + os.urandom(20),
            struct.pack("!I", 0xFFFFFFFF) + b"x",
            struct.pack("!I", len(wrong.seal(pp))) + wrong.seal(pp),
            struct.pack("!I", 1000) + b"short",
        ):
            _, wr = await asyncio.open_connection(*target)
            wr.write(frame)
            await wr.drain()
            wr.close()
        await until(
            lambda: (
                a.stats()["dropped_undecryptable"] - st0["dropped_undecryptable"] >= 5
                and a.stats()["dropped_replayed"] > st0["dropped_replayed"]
                and a.stats()["dropped_malformed"] >= st0["dropped_malformed"] + 2
                and a.stats()["dropped_oversized_in"] >= st0["dropped_oversized_in"] + 2
            ),
            5.0,
            "every bad input counted",
        )
        st = a.stats()
        assert st["handler_errors"] == 0 and st["callback_errors"] == 0
        assert "evil" not in {m.name for m in a.members()}
        assert not c.recs[a.name].entries and a.table_sizes() == {NET: 0}
        # The cluster is unharmed: rows still flow, nobody was suspected.
        b.put_entry(NET, "good", record("good"))
        await until(lambda: c.recs[a.name].entry_seen("good", Change.ADDED), 2.0, "good entry")
        assert not c.recs[a.name].member_kinds(MemberSuspect)
        assert "intruder" not in {m.name for m in a.members()}


async def test_stop_with_and_without_leave() -> None:
    async with cluster(3) as (c, agents):
        a, b, d = agents
        for x in agents:
            x.join_network(NET)
        await until(lambda: len(a.participants(NET)) == 2)
        d.put_entry(NET, "d1", record("d1"))
        await until(lambda: a.table_sizes()[NET] == 1 and b.table_sizes()[NET] == 1)

        t0 = time.monotonic()
        await d.stop(leave=True)
        assert time.monotonic() - t0 < d.leave_timeout + 0.5
        await until(
            lambda: all(c.recs[x.name].member_kinds(MemberLeft, "node-2") for x in (a, b)),
            2.0,
            "graceful leave seen",
        )
        await until(lambda: a.table_sizes()[NET] == 0 and b.table_sizes()[NET] == 0, 1.0)
        assert not c.recs[a.name].member_kinds(MemberDead)
        assert {m.name: m.state for m in a.members()}["node-2"] == State.LEFT
        with pytest.raises(RuntimeError):
            d.put_entry(NET, "d2", record("d2"))
        with pytest.raises(RuntimeError):
            d.members()
        await d.stop()  # idempotent

        t0 = time.monotonic()
        await b.stop(leave=False)
        await until(lambda: c.recs[a.name].member_kinds(MemberDead, "node-1"), 5.0, "b dead")
        print(f"2-node cluster: crash detected in {time.monotonic() - t0:.2f} s")
        assert not c.recs[a.name].member_kinds(MemberLeft, "node-1")
        t0 = time.monotonic()
        await a.stop(leave=True)  # nobody left to tell: returns at once
        assert time.monotonic() - t0 < 0.5


async def test_callback_errors_do_not_break_the_agent() -> None:
    c = Cluster()
    try:
        a = await c.add("a")

        def boom(ev: object) -> None:
            raise RuntimeError("callback bug")

        b = GossipAgent("b", [K1], bind_addr="127.0.0.9", bind_port=0, on_member=boom)
        await b.start()
        c.agents.append(b)
        assert await b.join([seed(a)]) == 1
        await c.converge([a, b])
        assert b.stats()["callback_errors"] >= 1
        assert b.stats()["handler_errors"] == 0
    finally:
        await c.close()


async def test_wildcard_bind_needs_advertise_and_port_clash() -> None:
    with pytest.raises(ValueError):
        GossipAgent("x", [K1], bind_addr="0.0.0.0")
    with pytest.raises(ValueError):
        GossipAgent("x", [])
    a = GossipAgent("x", [K1], bind_addr="127.0.0.10", bind_port=0)
    await a.start()
    try:
        clash = GossipAgent("y", [K1], bind_addr="127.0.0.10", bind_port=a.port)
        with pytest.raises(OSError):
            await clash.start()
    finally:
        await a.stop()


async def test_restart_same_name_rejoins_without_entry_flap() -> None:
    """A restarted node (same name, same port) that re-puts its rows before join(): peers
    see neither a death nor a remove/add of its endpoints, and its new frames are not
    taken for replays of the old process's."""
    async with cluster(2) as (c, agents):
        a, b = agents
        for x in agents:
            x.join_network(NET)
        await until(lambda: len(a.participants(NET)) == 1)
        b.put_entry(NET, "e1", record("e1"))
        await until(lambda: a.table_sizes()[NET] == 1)
        port = b.port
        await b.stop(leave=False)
        b2 = GossipAgent(b.name, [K1], bind_addr=b.bind_addr, bind_port=port)
        await b2.start()
        c.agents.append(b2)
        b2.join_network(NET)
        b2.put_entry(NET, "e1", record("e1"))
        assert await b2.join([seed(a)]) == 1
        b2.put_entry(NET, "e2", record("e2", "10.0.0.3"))
        await until(lambda: a.table_sizes()[NET] == 2, 2.0, "new row from the restarted node")
        assert b2.table_sizes() == {NET: 2}  # table_sizes counts our own rows too
        assert [e.change for _, e in c.recs[a.name].entries] == [Change.ADDED, Change.ADDED]
        assert not c.recs[a.name].member_kinds(MemberDead)
        assert a.stats()["dropped_replayed"] == 0
