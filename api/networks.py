"""/networks handlers: parse the request, one engine call, shape the answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api import shapes
from api.decode import field, query_bool_strict, read_json
from api.keys import API_VERSION_OF_REQUEST, ENGINE
from api.responses import json_response
from daemon.errors import InvalidParameter, NotFound
from daemon.filters import parse_filters
from daemon.networks import ConnectRequest, CreateNetworkRequest

CREATE = "CreateRequest"
CONNECT = "ConnectOptions"
DISCONNECT = "DisconnectOptions"


def _version(request: web.Request) -> str:
    return request[API_VERSION_OF_REQUEST]


async def list_networks(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    filters = parse_filters(request.query.get("filters"))
    views = engine.networks.list(filters)
    version = _version(request)
    return json_response([shapes.network(v, version, detailed=False) for v in views])


async def inspect_network(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        query_bool_strict(request, "verbose")
    except InvalidParameter as exc:
        raise InvalidParameter(
            f"invalid value for verbose: {request.query['verbose']}: {exc.message}"
        ) from exc
    scope = request.query.get("scope", "")
    view = engine.networks.inspect(request.match_info["id"])
    if scope and scope != view.network.scope:
        raise NotFound(f"network {request.match_info['id']} not found")
    return json_response(shapes.network(view, _version(request)))


def _create_request(doc: dict[str, Any]) -> CreateNetworkRequest:
    ipam = field(doc, "IPAM", "object", CREATE, {}) or {}
    config = field(ipam, "Config", "[]object", "IPAM", None)
    if config is not None:
        for entry in config:
            for key in ("Subnet", "IPRange", "Gateway"):
                field(entry, key, "string", "IPAMConfig")
            field(entry, "AuxiliaryAddresses", "map[string]string", "IPAMConfig")
    config_from = field(doc, "ConfigFrom", "object", CREATE, {}) or {}
    return CreateNetworkRequest(
        name=field(doc, "Name", "string", CREATE, ""),
        driver=field(doc, "Driver", "string", CREATE, ""),
        scope=field(doc, "Scope", "string", CREATE, ""),
        internal=field(doc, "Internal", "bool", CREATE, False),
        attachable=field(doc, "Attachable", "bool", CREATE, False),
        ingress=field(doc, "Ingress", "bool", CREATE, False),
        enable_ipv4=field(doc, "EnableIPv4", "bool", CREATE),
        enable_ipv6=field(doc, "EnableIPv6", "bool", CREATE),
        config_only=field(doc, "ConfigOnly", "bool", CREATE, False),
        config_from=field(config_from, "Network", "string", "ConfigReference", ""),
        ipam_driver=field(ipam, "Driver", "string", "IPAM", ""),
        ipam_config=config,
        ipam_options=field(ipam, "Options", "map[string]string", "IPAM"),
        options=field(doc, "Options", "map[string]string", CREATE, {}),
        labels=field(doc, "Labels", "map[string]string", CREATE, {}),
        check_duplicate=field(doc, "CheckDuplicate", "bool", CREATE),
    )


async def create_network(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    req = _create_request(await read_json(request))
    net_id, warning = await engine.networks.create(req, _version(request))
    return json_response({"Id": net_id, "Warning": warning}, status=201)


async def delete_network(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.networks.delete(request.match_info["id"])
    return web.Response(status=204)


async def prune_networks(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    filters = parse_filters(request.query.get("filters"))
    names = await engine.networks.prune(filters)
    return json_response({"NetworksDeleted": names})


async def connect_network(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    doc = await read_json(request)
    container = field(doc, "Container", "string", CONNECT, "")
    if not container:
        raise InvalidParameter("no container specified")
    cfg = field(doc, "EndpointConfig", "object", CONNECT, {}) or {}
    ipam_cfg = field(cfg, "IPAMConfig", "object", "EndpointSettings", {}) or {}
    req = ConnectRequest(
        container=container,
        name=field(doc, "Name", "string", CONNECT, ""),
        ipv4_address=field(ipam_cfg, "IPv4Address", "string", "EndpointIPAMConfig", ""),
        ipv6_address=field(ipam_cfg, "IPv6Address", "string", "EndpointIPAMConfig", ""),
        aliases=field(cfg, "Aliases", "[]string", "EndpointSettings", []),
        mac_address=field(cfg, "MacAddress", "string", "EndpointSettings", ""),
    )
    await engine.networks.connect(request.match_info["id"], req)
    return web.Response(status=200)


async def disconnect_network(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    doc = await read_json(request)
    container = field(doc, "Container", "string", DISCONNECT, "")
    if not container:
        raise InvalidParameter("no container specified")
    force = field(doc, "Force", "bool", DISCONNECT, False)
    await engine.networks.disconnect(request.match_info["id"], container, force)
    return web.Response(status=200)
