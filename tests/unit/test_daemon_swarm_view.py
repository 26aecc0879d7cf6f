"""The state a node serves right after a demotion: a manager never writes view.json, so
the file left from before its promotion is older than what it held as a manager."""

from __future__ import annotations

import json
from pathlib import Path

from daemon.swarm import SwarmService
from tests.unit.test_manager_state import init_cmd, net


def _state(networks: int):  # type: ignore[no-untyped-def]
    from manager.state import SwarmState

    s = SwarmState()
    s.apply(1, init_cmd())
    for i in range(networks):
        s.apply(2 + i, net(f"n{i}", f"id{i}"))
    return s


def test_a_demoted_manager_serves_what_it_held_without_its_secrets(tmp_path: Path) -> None:
    svc = SwarmService(tmp_path, "h", lambda: "192.0.2.1")
    svc.dir.mkdir(parents=True)
    (svc.dir / "view.json").write_bytes(_state(1).snapshot())  # from before the promotion
    svc._fallback_view = _state(3)  # what it held as a manager
    view = svc._freshest_view()
    assert view is not None and len(view.networks) == 3
    saved = json.loads((svc.dir / "view.json").read_bytes())
    assert len(saved["networks"]) == 3
    assert saved["cluster"]["ca_key_pem"] == "" and saved["cluster"]["worker_token"] == ""


def test_a_newer_saved_view_wins(tmp_path: Path) -> None:
    svc = SwarmService(tmp_path, "h", lambda: "192.0.2.1")
    svc.dir.mkdir(parents=True)
    (svc.dir / "view.json").write_bytes(_state(3).snapshot())
    svc._fallback_view = _state(1)
    view = svc._freshest_view()
    assert view is not None and len(view.networks) == 3


def test_what_workers_are_sent_holds_no_secrets_and_no_request_cache() -> None:
    from manager.manager import worker_view
    from manager.state import SwarmState

    s = _state(2)
    s.apply(10, net("n9", "x"), rid="r1")  # a cached request result
    doc = json.loads(worker_view(s))
    assert doc["cluster"]["ca_key_pem"] == ""
    assert doc["cluster"]["worker_token"] == doc["cluster"]["manager_token"] == ""
    assert doc["recent"] == []
    assert len(SwarmState.restore(worker_view(s)).networks) == 3
