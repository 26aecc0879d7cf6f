"""Cross-cutting HTTP behaviour: Docker's headers, version bounds, error format, metrics."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from api import versions
from api.keys import API_VERSION_OF_REQUEST, ROUTE_OF_REQUEST
from api.responses import json_error
from daemon.engine import VERSION
from daemon.errors import OverlaydError
from daemon.logs import get_logger

log = get_logger("overlayd.api")

SERVER_HEADER = f"overlayd/{VERSION} (linux)"


VERSION_REFUSED = "overlayd.version_refused"


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Docker's headers, on exactly the responses dockerd puts them on.

    dockerd's version middleware sets Server/Api-Version/Ostype before checking the
    version, and the innermost middleware sets Docker-Experimental; a router 404 passes
    through neither. Done at prepare time so streams get them too.
    """
    if request.match_info.http_exception is not None:
        return
    response.headers["Api-Version"] = versions.API_VERSION
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = SERVER_HEADER
    if not request.get(VERSION_REFUSED):
        response.headers["Docker-Experimental"] = "false"


@web.middleware
async def error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except OverlaydError as exc:
        return json_error(exc.status, exc.message)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_error(413, f"request body too large: {exc.text}")
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return json_error(404, "page not found")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return json_error(exc.status, exc.reason)
        raise
    except Exception as exc:
        log.exception("unhandled error", path=request.path)
        return json_error(500, f"internal error: {exc}")


@web.middleware
async def version_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    version = request.match_info.get("version")
    if version is not None:
        if versions.less_than(version, versions.MIN_API_VERSION):
            request[VERSION_REFUSED] = True
            return json_error(
                400,
                f"client version {version} is too old. Minimum supported API version is "
                f"{versions.MIN_API_VERSION}, please upgrade your client to a newer version",
            )
        if versions.greater_than(version, versions.API_VERSION):
            request[VERSION_REFUSED] = True
            return json_error(
                400,
                f"client version {version} is too new. Maximum supported API version is "
                f"{versions.API_VERSION}",
            )
    request[API_VERSION_OF_REQUEST] = version or versions.DEFAULT_VERSION
    return await handler(request)


def metrics_middleware(registry: CollectorRegistry):  # type: ignore[no-untyped-def]
    requests = Counter(
        "overlayd_api_requests",
        "API requests by route, method and status",
        ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "overlayd_api_request_duration_seconds",
        "API request latency by route and method",
        ["route", "method"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
    )

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response = await handler(request)
        route = request.get(ROUTE_OF_REQUEST) or _route_template(request)
        if route != "/events":  # a stream's duration is not a latency
            latency.labels(route, request.method).observe(time.perf_counter() - start)
        requests.labels(route, request.method, str(response.status)).inc()
        return response

    return middleware


def _route_template(request: web.Request) -> str:
    info = request.match_info.route.resource
    if info is None:
        return "unmatched"
    canonical = info.canonical
    if canonical.startswith("/v{version"):
        canonical = canonical[canonical.index("}") + 1 :]
    return canonical
