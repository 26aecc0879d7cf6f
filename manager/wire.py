"""Raft messages on the wire: compact JSON, decoded strictly.

Only authenticated managers reach the decoder, but a bug or a hostile manager must
still not crash a peer: anything that is not exactly a known message with fields of
the right types raises WireError, which costs the sender its connection.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from manager.raft import messages as m

_NETWORK_TYPES: dict[str, type[m.Message]] = {
    cls.__name__: cls
    for cls in (
        m.PreVote, m.PreVoteResp, m.Vote, m.VoteResp, m.App, m.AppResp, m.Heartbeat,
        m.HeartbeatResp, m.InstallSnapshot, m.InstallSnapshotResp, m.TimeoutNow,
        m.ReadIndex, m.ReadIndexResp,
    )
}  # fmt: skip
_FIELDS = {
    name: {f.name: f for f in dataclasses.fields(cls)} for name, cls in _NETWORK_TYPES.items()
}


class WireError(ValueError):
    """Not a raft message we accept."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise WireError("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise WireError("bad base64") from exc


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << 64:
        raise WireError("expected an unsigned 64-bit integer")
    return value


def _entry(e: m.Entry) -> list[Any]:
    return [e.term, e.index, int(e.kind), _b64(e.data)]


def _unentry(doc: Any) -> m.Entry:
    if not isinstance(doc, list) or len(doc) != 4:
        raise WireError("bad entry")
    try:
        kind = m.EntryKind(_int(doc[2]))
    except ValueError as exc:
        raise WireError("bad entry kind") from exc
    return m.Entry(_int(doc[0]), _int(doc[1]), kind, _unb64(doc[3]))


def _conf(cs: m.ConfState) -> list[list[int]]:
    return [sorted(cs.voters), sorted(cs.learners)]


def _unconf(doc: Any) -> m.ConfState:
    if not isinstance(doc, list) or len(doc) != 2 or not all(isinstance(x, list) for x in doc):
        raise WireError("bad conf state")
    return m.ConfState(frozenset(map(_int, doc[0])), frozenset(map(_int, doc[1])))


def _snapshot(s: m.Snapshot) -> dict[str, Any]:
    meta = s.meta
    return {"i": meta.index, "t": meta.term, "c": _conf(meta.conf_state), "d": _b64(s.data)}


def _unsnapshot(doc: Any) -> m.Snapshot:
    if not isinstance(doc, dict) or set(doc) != {"i", "t", "c", "d"}:
        raise WireError("bad snapshot")
    meta = m.SnapshotMeta(_int(doc["i"]), _int(doc["t"]), _unconf(doc["c"]))
    return m.Snapshot(meta, _unb64(doc["d"]))


def encode(msg: m.Message) -> bytes:
    name = type(msg).__name__
    if name not in _NETWORK_TYPES:
        raise WireError(f"{name} is local to a node and never sent")
    doc: dict[str, Any] = {"type": name}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, (bool, int)):
            doc[f.name] = value
        elif isinstance(value, bytes):
            doc[f.name] = _b64(value)
        elif isinstance(value, tuple):
            doc[f.name] = [_entry(e) for e in value]
        elif isinstance(value, m.Snapshot):
            doc[f.name] = _snapshot(value)
        else:
            raise WireError(f"cannot encode field {f.name} of {name}")
    return json.dumps(doc, separators=(",", ":")).encode()


def decode(data: bytes) -> m.Message:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise WireError("not JSON") from exc
    kind = doc.get("type") if isinstance(doc, dict) else None
    if not isinstance(kind, str) or kind not in _NETWORK_TYPES:
        raise WireError("unknown message type")
    name = doc.pop("type")
    cls, fields = _NETWORK_TYPES[name], _FIELDS[name]
    if not set(doc) <= set(fields):
        raise WireError(f"unknown fields in {name}")
    kwargs: dict[str, Any] = {}
    for key, value in doc.items():
        default = fields[key].default
        if default is dataclasses.MISSING:
            default = fields[key].default_factory()  # type: ignore[misc]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise WireError(f"{name}.{key} must be a boolean")
            kwargs[key] = value
        elif isinstance(default, int):
            kwargs[key] = _int(value)
        elif isinstance(default, bytes):
            kwargs[key] = _unb64(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise WireError(f"{name}.{key} must be a list")
            kwargs[key] = tuple(_unentry(e) for e in value)
        elif isinstance(default, m.Snapshot):
            kwargs[key] = _unsnapshot(value)
        else:
            raise WireError(f"cannot decode {name}.{key}")
    return cls(**kwargs)
