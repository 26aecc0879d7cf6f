"""The aiohttp application: every route with and without a /v<version> prefix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from api import debug, events, middlewares, networks, swarm, system
from api.decode import MAX_BODY
from api.keys import ENGINE, ROUTE_OF_REQUEST
from daemon.engine import Engine

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (method, path, handler); the versioned twin of each is added by build_app.
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/_ping", system.ping),
    ("HEAD", "/_ping", system.ping),
    ("GET", "/version", system.version),
    ("GET", "/info", system.info),
    ("GET", "/events", events.events),
    ("GET", "/networks", networks.list_networks),
    ("POST", "/networks/create", networks.create_network),
    ("POST", "/networks/prune", networks.prune_networks),
    ("GET", "/networks/{id}", networks.inspect_network),
    ("DELETE", "/networks/{id}", networks.delete_network),
    ("POST", "/networks/{id}/connect", networks.connect_network),
    ("POST", "/networks/{id}/disconnect", networks.disconnect_network),
    ("GET", "/swarm", swarm.inspect_swarm),
    ("POST", "/swarm/init", swarm.init_swarm),
    ("POST", "/swarm/join", swarm.join_swarm),
    ("POST", "/swarm/leave", swarm.leave_swarm),
    ("POST", "/swarm/update", swarm.update_swarm),
    ("GET", "/swarm/unlockkey", swarm.unlock_key),
    ("POST", "/swarm/unlock", swarm.unlock_swarm),
    ("GET", "/nodes", swarm.list_nodes),
    ("GET", "/nodes/{id}", swarm.inspect_node),
    ("DELETE", "/nodes/{id}", swarm.delete_node),
    ("POST", "/nodes/{id}/update", swarm.update_node),
    ("GET", "/debug/gossip", debug.gossip),
]


def _named(path: str, handler: Handler) -> Handler:
    """Record the canonical route so metrics group /v1.41/x with /x."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        request[ROUTE_OF_REQUEST] = path
        return await handler(request)

    return wrapped


def build_app(engine: Engine) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[
            middlewares.metrics_middleware(engine.metrics),
            middlewares.error_middleware,
            middlewares.version_middleware,
        ],
    )
    app[ENGINE] = engine
    for method, path, handler in ROUTES:
        wrapped = _named(path, handler)
        app.router.add_route(method, path, wrapped)
        app.router.add_route(method, "/v{version:[0-9.]+}" + path, wrapped)
    app.router.add_get("/metrics", _named("/metrics", system.metrics))
    app.on_response_prepare.append(middlewares.on_prepare)
    return app
