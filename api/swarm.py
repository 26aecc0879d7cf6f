"""Swarm and node reads. This node is never in a swarm yet (the manager layer comes
next), and dockerd answers every such read on a node outside a swarm with this 503."""

from __future__ import annotations

from aiohttp import web

from daemon.errors import Unavailable
from daemon.networks import NOT_MANAGER


async def not_a_manager(request: web.Request) -> web.Response:
    raise Unavailable(NOT_MANAGER)
