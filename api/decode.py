"""Request bodies and query flags decoded the way dockerd's Go code does.

Go's encoding/json rejects a wrong type with a precise message, ignores unknown keys
and accepts null for any field; the helpers here give the same answers.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from daemon.errors import InvalidParameter

MAX_BODY = 1 << 20

# Go type names for messages: ("string", str), ("bool", bool), ...
_GO_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "bool": (bool,),
    "int": (int,),
    "map[string]string": (dict,),
    "[]string": (list,),
    "object": (dict,),
    "[]object": (list,),
}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; empty body → {} (dockerd allows it)."""
    ctype = request.headers.get("Content-Type", "")
    raw = await request.read()
    if not raw:
        return {}
    if not ctype:
        raise InvalidParameter("malformed Content-Type header (): mime: no media type")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise InvalidParameter(
            f"unsupported Content-Type header ({ctype}): must be 'application/json'"
        )
    if not raw.strip():
        raise InvalidParameter("invalid JSON: got EOF while reading request body")
    try:
        # UTF-8 only, no NaN/Infinity: what Go's decoder takes (Python's would guess UTF-16
        # and accept the constants)
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            raise InvalidParameter("unexpected content after JSON") from exc
        raise InvalidParameter(f"invalid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
        raise InvalidParameter(f"invalid JSON: {exc}") from exc
    if b"\\u" in raw:
        doc = _without_lone_surrogates(doc)
    if doc is None:
        raise InvalidParameter("invalid JSON: got EOF while reading request body")
    if not isinstance(doc, dict):
        raise InvalidParameter(
            f"invalid JSON: json: cannot unmarshal {_json_kind(doc)} into Go value of type object"
        )
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _without_lone_surrogates(value: Any) -> Any:
    """Go decodes a lone \\ud800 escape to U+FFFD; Python keeps a surrogate that no UTF-8
    encoder (the store, the response) will take later."""
    if isinstance(value, str):
        if not any("\ud800" <= c <= "\udfff" for c in value):
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


def field(doc: dict[str, Any], key: str, go_type: str, struct: str, default: Any = None) -> Any:
    """doc[key] checked against a Go type; null or absent gives `default`."""
    value = doc.get(key)
    if value is None:
        return default
    ok = isinstance(value, _GO_TYPES[go_type]) and not (
        go_type == "int" and isinstance(value, bool)
    )
    if ok and go_type == "map[string]string":
        value = {k: "" if v is None else v for k, v in value.items()}  # Go: null is ""
        ok = all(isinstance(v, str) for v in value.values())
        if not ok:
            bad = next(v for v in value.values() if not isinstance(v, str))
            raise InvalidParameter(
                f"invalid JSON: json: cannot unmarshal {_json_kind(bad)} into Go struct field "
                f"{struct}.{key} of type string"
            )
    if ok and go_type == "[]string":
        ok = all(isinstance(v, str) for v in value)
        if not ok:
            bad = next(v for v in value if not isinstance(v, str))
            raise InvalidParameter(
                f"invalid JSON: json: cannot unmarshal {_json_kind(bad)} into Go struct field "
                f"{struct}.{key} of type string"
            )
    if ok and go_type == "[]object":
        ok = all(isinstance(v, dict) for v in value)
    if not ok:
        shown = go_type if go_type not in ("object", "[]object") else key
        raise InvalidParameter(
            f"invalid JSON: json: cannot unmarshal {_json_kind(value)} into Go struct field "
            f"{struct}.{key} of type {shown}"
        )
    return value


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def query_bool_strict(request: web.Request, key: str) -> bool:
    """`verbose`-style flags: strconv.ParseBool, anything else is a 400."""
    value = request.query.get(key)
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameter(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def query_bool_loose(request: web.Request, key: str) -> bool:
    """`force`-style flags: "", 0, no, false, none (any case) are false, anything else true."""
    value = request.query.get(key)
    if value is None:
        return False
    return value.strip().lower() not in ("", "0", "no", "false", "none")
