"""Tables merge rules: Lamport clocks, tombstones, owner authority, one event per visible change."""

from __future__ import annotations

import random

from gossip import codec
from gossip.config import GossipConfig
from gossip.events import Change, EndpointEvent
from gossip.messages import EndpointRecord, NetDigest, NetworkEvent, TableDigest, TableEntry
from gossip.tables import PARTICIPATION, Tables

CFG = GossipConfig.lan()
R1 = EndpointRecord("ep1", "10.0.0.2", "02:42:0a:00:00:02", "192.0.2.1", "web", ("w",))
R1b = EndpointRecord("ep1", "10.0.0.3", "02:42:0a:00:00:03", "192.0.2.1", "web")


def node(name: str = "me", nets: tuple[str, ...] = ("n",)) -> Tables:
    t = Tables(name, CFG, random.Random(0), 0.0)
    for net in nets:
        t.join_network(net, 0.0)
    t.member_changed("a", True, 0.0)
    t.member_changed("b", True, 0.0)
    return t


def entry(
    clock: int, rec: EndpointRecord | None = R1, owner: str = "a", ttl: float = 0.0
) -> TableEntry:
    return TableEntry("n", "ep1", owner, clock, rec, ttl if rec is None else 0.0)


def changes(t: Tables) -> list[tuple[Change, str]]:
    return [(e.change, e.endpoint_id) for e in t.take_events() if isinstance(e, EndpointEvent)]


def test_higher_clock_wins_and_one_event_each() -> None:
    t = node()
    t.notify(entry(5), 1.0)
    assert changes(t) == [(Change.ADDED, "ep1")]
    t.notify(entry(5), 1.0)  # duplicate: nothing
    t.notify(entry(4, R1b), 1.0)  # older: nothing
    assert changes(t) == []
    t.notify(entry(6, R1b), 1.0)
    assert changes(t) == [(Change.UPDATED, "ep1")]
    assert t.records("n") == {"ep1": R1b}
    assert t.clock >= 6


def test_tombstone_beats_stale_create() -> None:
    t = node()
    t.notify(entry(5), 1.0)
    t.notify(entry(6, None, ttl=60), 1.0)
    t.notify(entry(5), 2.0)  # the create again, late
    assert t.records("n") == {}
    assert changes(t) == [(Change.ADDED, "ep1"), (Change.REMOVED, "ep1")]


def test_tombstone_wins_a_clock_tie() -> None:
    t = node()
    t.notify(entry(7, None, ttl=60), 1.0)
    t.notify(entry(7), 1.0)
    assert t.records("n") == {}


def test_tombstones_reaped_at_residual_time() -> None:
    t = node()
    t.notify(entry(5), 1.0)
    t.notify(entry(6, None, ttl=2.0), 1.0)
    t.tick(2.5, 1300)
    assert ("n", "ep1") in t.rows
    t.tick(3.5, 1300)
    assert ("n", "ep1") not in t.rows


def test_owner_reasserts_its_truth() -> None:
    """After a restart we lost ep1; a peer still holds it: we answer with a newer tombstone."""
    t = node("a")
    t.notify(entry(9, owner="a"), 1.0)
    row = t.rows[("n", "ep1")]
    assert row.record is None and row.clock > 9 and row.owner == "a"
    t.notify(NetworkEvent("b", "n", 1, True), 1.0)
    out = t.tick(1.0, 1300)
    sent = [codec.decode(p) for _, parts in out.sends for p in parts]
    assert any(
        isinstance(m, TableEntry) and m.clock == row.clock and m.record is None for m in sent
    )


def test_owner_outbids_older_copy_of_live_row() -> None:
    t = node("a")
    t.publish("n", R1, 1.0)
    t.notify(entry(50, R1b, owner="a"), 1.0)  # a stale version from before a restart
    assert t.records("n")["ep1"] == R1
    assert t.rows[("n", "ep1")].clock > 50


def test_dead_owner_hidden_then_restored() -> None:
    t = node()
    t.notify(entry(5), 1.0)
    t.take_events()
    t.member_changed("a", False, 2.0)
    assert t.records("n") == {}
    assert changes(t) == [(Change.REMOVED, "ep1")]
    t.member_changed("a", True, 3.0)
    assert t.records("n") == {"ep1": R1}
    assert changes(t) == [(Change.ADDED, "ep1")]


def test_dead_owner_rows_reaped_after_owner_reap() -> None:
    t = node()
    t.notify(entry(5), 1.0)
    t.member_changed("a", False, 2.0)
    t.tick(2.0 + CFG.owner_reap + 1, 1300)
    assert t.rows == {}
    t.notify(entry(5), 2.0 + CFG.owner_reap + 2)  # a lagging peer resends it: not resurrected
    assert t.rows == {}


def test_rows_of_an_owner_never_seen_alive_are_reaped_too() -> None:
    """A node that joined after host c died hears of c's rows (push-pull) but never of c
    alive: they stay hidden, and go on the same clock as any dead owner's."""
    t = node()
    t.notify(entry(5, owner="c"), 1.0)
    assert t.records("n") == {} and changes(t) == []
    t.tick(1.0 + CFG.owner_reap + 1, 1300)
    assert t.rows == {}
    t.notify(entry(5, owner="c"), 1.0 + CFG.owner_reap + 2)  # a lagging peer: still gone
    assert t.rows == {}


def test_leave_records_are_reaped_and_the_digest_follows() -> None:
    """Short-lived networks must not leave their who-was-where records behind for ever."""
    t = node("x")
    t.notify(NetworkEvent("a", "gone-net", 1, True), 1.0)
    t.notify(NetworkEvent("a", "gone-net", 2, False), 2.0)
    count = t.digest(PARTICIPATION)[0]
    t.tick(2.0 + CFG.participation_reap - 1, 1300)
    assert ("a", "gone-net") in t._part  # not before its time
    t.tick(2.0 + CFG.participation_reap + 1, 1300)
    assert ("a", "gone-net") not in t._part
    assert t.digest(PARTICIPATION)[0] == count - 1
    assert t.digest(PARTICIPATION) == node("x").digest(PARTICIPATION)  # as if never there


def test_non_participant_stores_nothing() -> None:
    t = node(nets=("other",))
    t.notify(entry(5), 1.0)
    assert t.rows == {} and t.take_events() == []


def test_participant_leaving_network_voids_its_rows() -> None:
    t = node()
    t.notify(NetworkEvent("a", "n", 1, True), 1.0)
    t.notify(entry(5), 1.0)
    t.notify(NetworkEvent("a", "n", 9, False), 1.0)
    assert t.records("n") == {}


def test_digest_equal_iff_same_rows() -> None:
    a, b = node("x"), node("y")
    for t in (a, b):
        t.notify(entry(5), 1.0)
    assert a.digest("n") == b.digest("n")
    b.notify(entry(6, R1b), 1.0)
    assert a.digest("n") != b.digest("n")
    a.notify(entry(6, R1b), 1.0)
    assert a.digest("n") == b.digest("n")


def test_digest_mismatch_schedules_a_sync_after_grace() -> None:
    t = node()
    t.notify(NetworkEvent("a", "n", 1, True), 0.0)
    t.notify(TableDigest("a", (NetDigest("n", 1, 42),)), 1.0)
    out = t.tick(1.0 + CFG.table_sync_interval + 0.01, 1300)
    out = out if out.streams else t.tick(1.0 + 2 * CFG.table_sync_interval + 0.01, 1300)
    assert [peer for peer, _ in out.streams] == ["a"]
