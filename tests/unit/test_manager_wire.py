"""Raft messages survive the wire; anything else is a WireError, never a crash."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager import wire
from manager.raft import messages as m

ENTRIES = (m.Entry(1, 5, m.EntryKind.NORMAL, b"\x00cmd"), m.Entry(2, 6, m.EntryKind.NOOP))
SNAP = m.Snapshot(m.SnapshotMeta(9, 2, m.ConfState(frozenset({1, 2}), frozenset({3}))), b"st")

SAMPLES = [
    m.PreVote(frm=1, to=2, term=3, last_index=4, last_term=2),
    m.VoteResp(frm=2, to=1, term=3, reject=True),
    m.App(frm=1, to=2, term=3, index=4, log_term=1, entries=ENTRIES, commit=4),
    m.AppResp(frm=2, to=1, term=3, index=6, reject=True, reject_hint=5, log_term=1),
    m.Heartbeat(frm=1, to=2, term=3, commit=4, context=b"rx"),
    m.InstallSnapshot(frm=1, to=3, term=3, snapshot=SNAP),
    m.TimeoutNow(frm=1, to=2, term=3),
    m.ReadIndexResp(frm=1, to=2, term=3, index=7, context=b"r1"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip(msg: m.Message) -> None:
    assert wire.decode(wire.encode(msg)) == msg


def test_local_messages_never_leave() -> None:
    with pytest.raises(wire.WireError):
        wire.encode(m.Hup(frm=1, to=1))


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b'{"type":"Hup"}', b'{"type":"Vote","term":-1}', b'{"type":"Vote","term":true}',
     b'{"type":"Vote","evil":1}', b'{"type":"App","entries":[[1,2,99,""]]}',
     b'{"type":"Heartbeat","context":"!!"}', b'{"type":"InstallSnapshot","snapshot":{}}',
     b'{"type":"Vote","term":18446744073709551616}'],
)  # fmt: skip
def test_malformed_is_refused(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(wire.WireError):
        wire.decode(data)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20),
       st.sampled_from(sorted(wire._NETWORK_TYPES)))  # fmt: skip
def test_random_json_never_crashes(body: object, name: str) -> None:
    import json

    doc = {"type": name, **body} if isinstance(body, dict) else body
    with contextlib.suppress(wire.WireError):
        wire.decode(json.dumps(doc).encode())
