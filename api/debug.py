"""overlayd's own debug views (not Docker's API): the gossip layer as this node sees it."""

from __future__ import annotations

from aiohttp import web

from api.keys import ENGINE
from api.responses import json_response


async def gossip(request: web.Request) -> web.Response:
    svc = request.app[ENGINE].gossip
    agent = svc.agent
    members = []
    if agent is not None:
        members = [
            {"Name": m.name, "Addr": f"{m.addr[0]}:{m.addr[1]}", "State": m.state.name.lower(),
             "Incarnation": m.incarnation}
            for m in sorted(agent.members(), key=lambda m: m.name)
        ]  # fmt: skip
    return json_response({
        "Running": agent is not None,
        "Members": members,
        "Tables": svc.table_sizes(),
        "Stats": svc.stats(),
    })  # fmt: skip
