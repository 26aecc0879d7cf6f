"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from aiohttp import web

from daemon.engine import Engine

ENGINE = web.AppKey("engine", Engine)
API_VERSION_OF_REQUEST = "overlayd.api_version"  # request-scoped: the version asked for
ROUTE_OF_REQUEST = "overlayd.route"
