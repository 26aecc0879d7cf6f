"""/swarm and /nodes handlers: parse, one SwarmService call, Docker's shapes."""

from __future__ import annotations

import platform
from typing import Any

from aiohttp import web

from api.decode import field, query_bool_loose, read_json
from api.keys import ENGINE
from api.responses import json_response
from daemon.errors import Conflict, InvalidParameter
from daemon.filters import parse_filters
from daemon.swarm import InitRequest, JoinSwarmRequest, SwarmService

INIT = "InitRequest"
JOIN = "JoinRequest"
ENGINE_VERSION = "28.2.2-overlayd"


def _svc(request: web.Request) -> SwarmService:
    return request.app[ENGINE].swarm_service


def _empty() -> web.Response:
    return web.Response(status=200)


def _version_param(request: web.Request) -> int | None:
    raw = request.query.get("version")
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidParameter(f"invalid version: {raw!r} is not a number") from exc


# --- shapes ---------------------------------------------------------------------------


def _cluster_doc(c: Any, tls: dict[str, str]) -> dict[str, Any]:
    """The cluster as GET /swarm and /info's Swarm.Cluster share it."""
    return {
        "ID": c.id,
        "Version": {"Index": c.version},
        "CreatedAt": c.created_at,
        "UpdatedAt": c.updated_at,
        "Spec": c.spec,
        "TLSInfo": tls,
        "RootRotationInProgress": False,
        "DefaultAddrPool": c.default_addr_pool,
        "SubnetSize": c.subnet_size,
        "DataPathPort": c.data_path_port,
    }


def swarm_doc(state: Any, tls: dict[str, str]) -> dict[str, Any]:
    c = state.cluster
    tokens = {"Worker": c.worker_token, "Manager": c.manager_token}
    return {**_cluster_doc(c, tls), "JoinTokens": tokens}


def node_doc(svc: SwarmService, node: Any, state: Any, tls: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"Labels": node.labels, "Role": node.role,
                            "Availability": node.availability}  # fmt: skip
    if node.name:
        spec = {"Name": node.name, **spec}
    doc: dict[str, Any] = {
        "ID": node.id,
        "Version": {"Index": node.version},
        "CreatedAt": node.created_at,
        "UpdatedAt": node.updated_at,
        "Spec": spec,
        "Description": {
            "Hostname": node.hostname,
            "Platform": {"Architecture": platform.machine(), "OS": "linux"},
            "Resources": {"NanoCPUs": 0, "MemoryBytes": 0},
            "Engine": {
                "EngineVersion": ENGINE_VERSION,
                "Plugins": [
                    {"Type": "Network", "Name": "bridge"},
                    {"Type": "Network", "Name": "overlay"},
                ],
            },
            "TLSInfo": tls if state.cluster else {},
        },
        "Status": {"State": node.state, "Addr": node.addr},
    }
    if node.role == "manager":  # dockerd omits Leader unless it is true
        leader = {"Leader": True} if node.id == svc.leader_id() else {}
        doc["ManagerStatus"] = {**leader, "Reachability": svc.reachability(node),
                                "Addr": node.manager_addr}  # fmt: skip
    return doc


def info_section(svc: SwarmService, tls: dict[str, str]) -> dict[str, Any]:
    """/info's Swarm section, as dockerd fills it for each state."""
    ident = svc.identity
    doc: dict[str, Any] = {
        "NodeID": ident.node_id if ident else "",
        "NodeAddr": ident.data_addr if ident else "",
        "LocalNodeState": svc.local_state,
        "ControlAvailable": svc.control_available,
        "Error": svc.error,
        "RemoteManagers": None,
    }
    state = svc.view()
    if ident is None or state is None:
        return doc
    managers = [n for n in state.nodes.values() if n.role == "manager"]
    doc["RemoteManagers"] = [
        {"NodeID": n.id, "Addr": n.manager_addr} for n in managers if n.manager_addr
    ]
    if svc.control_available and state.cluster is not None:
        doc["Nodes"] = len(state.nodes)
        doc["Managers"] = len(managers)
        doc["Cluster"] = _cluster_doc(state.cluster, tls)
    return doc


# --- /swarm ----------------------------------------------------------------------------


async def inspect_swarm(request: web.Request) -> web.Response:
    svc = _svc(request)
    state = await svc.read()
    return json_response(swarm_doc(state, await svc.tls_info()))


async def init_swarm(request: web.Request) -> web.Response:
    doc = await read_json(request)
    pools = field(doc, "DefaultAddrPool", "[]string", INIT, []) or []
    req = InitRequest(
        listen_addr=field(doc, "ListenAddr", "string", INIT, "") or "0.0.0.0:2377",
        advertise_addr=field(doc, "AdvertiseAddr", "string", INIT, ""),
        data_path_addr=field(doc, "DataPathAddr", "string", INIT, ""),
        data_path_port=field(doc, "DataPathPort", "int", INIT, 0),
        force_new_cluster=bool(field(doc, "ForceNewCluster", "bool", INIT, False)),
        spec=field(doc, "Spec", "object", INIT, {}) or {},
        default_addr_pool=tuple(pools),
        subnet_size=field(doc, "SubnetSize", "int", INIT, 0),
        availability=field(doc, "Availability", "string", INIT, "") or "active",
    )
    node_id = await _svc(request).init(req)
    return json_response(node_id)


async def join_swarm(request: web.Request) -> web.Response:
    doc = await read_json(request)
    req = JoinSwarmRequest(
        remote_addrs=tuple(field(doc, "RemoteAddrs", "[]string", JOIN, []) or []),
        join_token=field(doc, "JoinToken", "string", JOIN, ""),
        listen_addr=field(doc, "ListenAddr", "string", JOIN, "") or "0.0.0.0:2377",
        advertise_addr=field(doc, "AdvertiseAddr", "string", JOIN, ""),
        data_path_addr=field(doc, "DataPathAddr", "string", JOIN, ""),
        availability=field(doc, "Availability", "string", JOIN, "") or "active",
    )
    await _svc(request).join(req)
    return _empty()


async def leave_swarm(request: web.Request) -> web.Response:
    await _svc(request).leave(query_bool_loose(request, "force"))
    await request.app[ENGINE].networks.left_swarm()
    return _empty()


async def update_swarm(request: web.Request) -> web.Response:
    doc = await read_json(request)
    await _svc(request).update(
        _version_param(request),
        doc,
        query_bool_loose(request, "rotateWorkerToken"),
        query_bool_loose(request, "rotateManagerToken"),
    )
    return _empty()


async def unlock_key(request: web.Request) -> web.Response:
    _svc(request).require_manager()
    return json_response({"UnlockKey": ""})


async def unlock_swarm(request: web.Request) -> web.Response:
    await read_json(request)
    raise Conflict("swarm is not locked")


# --- /nodes ------------------------------------------------------------------------------


async def list_nodes(request: web.Request) -> web.Response:
    svc = _svc(request)
    nodes = await svc.nodes(parse_filters(request.query.get("filters")))
    state, tls = svc.view(), await svc.tls_info()
    return json_response([node_doc(svc, n, state, tls) for n in nodes])


async def inspect_node(request: web.Request) -> web.Response:
    svc = _svc(request)
    node = await svc.node(request.match_info["id"])
    return json_response(node_doc(svc, node, svc.view(), await svc.tls_info()))


async def update_node(request: web.Request) -> web.Response:
    doc = await read_json(request)
    spec = {
        "Name": field(doc, "Name", "string", "NodeSpec", ""),
        "Labels": field(doc, "Labels", "map[string]string", "NodeSpec", {}) or {},
        "Role": field(doc, "Role", "string", "NodeSpec", ""),
        "Availability": field(doc, "Availability", "string", "NodeSpec", ""),
    }
    await _svc(request).update_node(request.match_info["id"], _version_param(request), spec)
    return _empty()


async def delete_node(request: web.Request) -> web.Response:
    await _svc(request).remove_node(request.match_info["id"], query_bool_loose(request, "force"))
    return _empty()
