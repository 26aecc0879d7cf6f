"""JSON responses exactly as dockerd writes them.

`Content-Type: application/json` with no charset (the Go client only decodes error
bodies when the type is exactly that) and a trailing newline (Go's json.Encoder).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_response(doc: Any, status: int = 200) -> web.Response:
    body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
    return web.Response(status=status, body=body, headers={"Content-Type": "application/json"})


def json_error(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)
