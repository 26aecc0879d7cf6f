"""The swarm state machine: deterministic, refuses bad commands the same way everywhere."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from manager.errors import Conflict, Forbidden, InvalidParameter, NotFound, SystemError_
from manager.state import SwarmState

NOW = "2026-11-23T12:00:00Z"


def init_cmd() -> dict[str, Any]:
    return {
        "op": "init",
        "cluster": {
            "id": "c" * 25, "created_at": NOW, "updated_at": NOW, "spec": {"Name": "default"},
            "ca_cert_pem": "CERT", "ca_key_pem": "KEY", "worker_token": "W", "manager_token": "M",
        },
        "node": {
            "id": "n1", "hostname": "host1", "role": "manager", "availability": "active",
            "addr": "192.0.2.1", "manager_addr": "192.0.2.1:2377", "created_at": NOW,
            "updated_at": NOW,
        },
    }  # fmt: skip


def worker(node_id: str) -> dict[str, Any]:
    return {
        "op": "node.add",
        "node": {
            "id": node_id, "hostname": node_id, "role": "worker", "availability": "active",
            "addr": "192.0.2.9", "manager_addr": "", "created_at": NOW, "updated_at": NOW,
        },
    }  # fmt: skip


def net(net_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"op": "network.create", "now": NOW, "network": {"id": net_id, "name": name, **extra}}


class Driver:
    """Applies commands with increasing raft indexes, raising on errors for brevity."""

    def __init__(self) -> None:
        self.state = SwarmState()
        self.index = 0

    def __call__(self, cmd: dict[str, Any], expect_error: type | None = None) -> Any:
        self.index += 1
        result = self.state.apply(self.index, cmd)
        if expect_error is not None:
            assert isinstance(result.error, expect_error), result
            return result.error
        assert result.ok, result.error
        return result.value


@pytest.fixture
def d() -> Driver:
    drv = Driver()
    drv(init_cmd())
    return drv


def test_networks_get_vnis_and_pool_subnets(d: Driver) -> None:
    d(net("i1", "ingress", ingress=True))
    d(net("a1", "net-a", attachable=True))
    a, i = d.state.networks["a1"], d.state.networks["i1"]
    assert (i.vni, i.ipam_config) == (4096, [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}])
    assert (a.vni, a.ipam_config[0]["Subnet"]) == (4097, "10.0.1.0/24")
    assert a.options["com.docker.network.driver.overlay.vxlanid_list"] == "4097"
    d(net("u1", "user", ipam_config=[{"Subnet": "10.200.0.0/16"}]))
    assert d.state.networks["u1"].ipam_config[0] == {
        "Subnet": "10.200.0.0/16",
        "Gateway": "10.200.0.1",
    }
    d(net("x", "net-a"), Conflict)
    d(net("y", "ingress2", ingress=True), Forbidden)
    d(net("z", "overlap", ipam_config=[{"Subnet": "10.0.1.0/25"}]), Forbidden)
    err = d(
        net("v", "vni", options={"com.docker.network.driver.overlay.vxlanid_list": "4096"}),
        Conflict,
    )
    assert "4096" in err.message
    assert set(d.state.networks) == {"i1", "a1", "u1"}


def test_ip_allocation_serial_idempotent_and_released(d: Driver) -> None:
    d(net("a1", "net-a"))
    alloc = {"op": "ip.allocate", "network_id": "a1", "node_id": "n1"}
    first = d({**alloc, "endpoint_id": "e1"})
    assert first == "10.0.0.2/24"
    assert d({**alloc, "endpoint_id": "e1"}) == first  # a retried proposal
    assert d({**alloc, "endpoint_id": "e2"}) == "10.0.0.3/24"
    d({"op": "ip.release", "network_id": "a1", "endpoint_id": "e1"})
    # Serial: the freed .2 is not handed straight back.
    assert d({**alloc, "endpoint_id": "e3"}) == "10.0.0.4/24"
    assert d({**alloc, "endpoint_id": "e4", "requested": "10.0.0.2"}) == "10.0.0.2/24"
    d({**alloc, "endpoint_id": "e5", "requested": "10.0.0.3"}, Forbidden)
    d({**alloc, "endpoint_id": "e6", "node_id": "ghost"}, NotFound)
    err = d({"op": "network.remove", "id": "a1"}, Forbidden)
    assert "in use" in err.message


def test_a_status_report_between_read_and_update_is_no_conflict(d: Driver) -> None:
    """`docker node update` reads the version, a session reports the node's status (which
    moves the version), then the update arrives: it applies. A spec change in between
    still makes it 'out of sequence'."""
    d(worker("w1"))
    read = d.state.nodes["w1"].version
    d({"op": "node.status", "id": "w1", "state": "ready", "addr": "192.0.2.8", "now": NOW})
    assert d.state.nodes["w1"].version > read
    d({"op": "node.update", "id": "w1", "version": read, "now": NOW,
       "spec": {"Availability": "drain"}})  # fmt: skip
    assert d.state.nodes["w1"].availability == "drain"
    again = {"op": "node.update", "id": "w1", "version": read, "now": NOW,
             "spec": {"Availability": "active"}}  # fmt: skip
    assert "out of sequence" in d(again, SystemError_).message
    ahead = {"op": "node.update", "id": "w1", "version": 10**6, "now": NOW, "spec": {}}
    assert "out of sequence" in d(ahead, SystemError_).message


def test_node_updates_use_versions_and_keep_a_manager(d: Driver) -> None:
    d(worker("w1"))
    w1 = d.state.nodes["w1"]
    d({"op": "node.update", "id": "w1", "version": w1.version, "now": NOW,
       "spec": {"Role": "worker", "Availability": "drain", "Labels": {"zone": "a"}}})  # fmt: skip
    assert (w1.availability, w1.labels) == ("drain", {"zone": "a"})
    stale = {"op": "node.update", "id": "w1", "version": 1, "now": NOW, "spec": {}}
    assert "out of sequence" in d(stale, SystemError_).message  # a 500, as dockerd
    n1 = d.state.nodes["n1"]
    demote = {
        "op": "node.update",
        "id": "n1",
        "version": n1.version,
        "now": NOW,
        "spec": {"Role": "worker"},
    }
    assert "last manager" in d(demote, InvalidParameter).message  # 400, as dockerd
    bad = {
        "op": "node.update",
        "id": "w1",
        "version": w1.version,
        "now": NOW,
        "spec": {"Role": "king"},
    }
    d(bad, InvalidParameter)


def test_node_removal_rules(d: Driver) -> None:
    d(worker("w1"))
    assert "not down" in d({"op": "node.remove", "id": "w1"}, InvalidParameter).message
    d({"op": "node.remove", "id": "n1", "force": True}, InvalidParameter)  # a manager: demote first
    d({"op": "node.status", "id": "w1", "state": "down", "now": NOW})
    d({"op": "node.remove", "id": "w1"})
    assert "w1" not in d.state.nodes
    # remembered, so a certificate it still holds is not taken for a member's; kept
    # through a snapshot like the rest of the state
    assert d.state.removed == ["w1"]
    assert SwarmState.restore(d.state.snapshot()).removed == ["w1"]


def test_key_rings_keep_three_and_send_with_the_second_newest(d: Driver) -> None:
    for k in ("k1", "k2", "k3", "k4"):
        d({"op": "keys.rotate", "subsystem": "gossip", "key": k})
    ring = d.state.keyrings["gossip"]
    assert ring.keys == ["k2", "k3", "k4"] and ring.primary == "k3" and ring.clock == 4


def test_unknown_and_double_init(d: Driver) -> None:
    d({"op": "teleport"}, InvalidParameter)
    d(init_cmd(), Conflict)


def test_same_log_same_state_and_snapshot_round_trip() -> None:
    rng = random.Random(42)
    log = [init_cmd(), worker("w1"), worker("w2")]
    for i in range(30):
        choice = rng.random()
        if choice < 0.3:
            log.append(net(f"n{i}", f"net{i}"))
        elif choice < 0.8 and any(c["op"] == "network.create" for c in log):
            nets = [c["network"]["id"] for c in log if c["op"] == "network.create"]
            log.append({"op": "ip.allocate", "network_id": rng.choice(nets),
                        "endpoint_id": f"e{i}", "node_id": rng.choice(["n1", "w1", "w2"])})  # fmt: skip
        else:
            log.append({"op": "keys.rotate", "subsystem": "ipsec", "key": f"{i:032x}"})
    a, b = SwarmState(), SwarmState()
    for index, cmd in enumerate(log, 1):
        ra, rb = a.apply(index, cmd), b.apply(index, cmd)
        assert (ra.value, type(ra.error)) == (rb.value, type(rb.error))
    assert a.snapshot() == b.snapshot()
    restored = SwarmState.restore(a.snapshot())
    assert restored.snapshot() == a.snapshot()
    # And the restored state goes on exactly like the original.
    nxt = net("late", "late-net")
    assert restored.apply(len(log) + 1, nxt).value == a.apply(len(log) + 1, nxt).value
    assert restored.snapshot() == a.snapshot()


def test_snapshot_from_a_newer_version_is_read_without_its_new_fields() -> None:
    """Rolling upgrades: a node not yet upgraded reads the state an upgraded one wrote."""
    a = SwarmState()
    for index, cmd in enumerate([init_cmd(), worker("w1"), net("n1", "net1")], 1):
        a.apply(index, cmd)
    doc = json.loads(a.snapshot())
    for kind in ("nodes", "networks"):
        for record in doc[kind]:
            record["added_by_a_later_version"] = {"x": 1}
    doc["cluster"]["also_new"] = 7
    restored = SwarmState.restore(json.dumps(doc).encode())
    assert restored.snapshot() == a.snapshot()


def test_malformed_commands_fail_alike_and_change_nothing(d: Driver) -> None:
    """What a buggy or hostile proposer commits must never stop raft's apply loop."""
    d(worker("w1"))
    before = d.state.snapshot()
    for cmd in (
        {"op": "ip.allocate", "node_id": "w1"},
        {"op": "ip.allocate", "node_id": "w1", "network_id": "nope", "endpoint_id": "e"},
        {"op": "node.update", "id": "w1"},
        {"op": "node.status", "id": "w1"},
        {"op": "network.create"},
        {"op": "keys.rotate", "subsystem": "nope", "key": "00"},
        {"op": "ip.release"},
    ):
        result = d.state.apply(99, cmd)
        assert result.error is not None, cmd
    after = d.state.snapshot()
    assert json.loads(after) | {"applied_index": 0} == json.loads(before) | {"applied_index": 0}


def test_allocations_belong_to_their_node(d: Driver) -> None:
    d(worker("w1"))
    d(worker("w2"))
    d(net("a1", "net-a", attachable=True))
    alloc = {"op": "ip.allocate", "network_id": "a1", "endpoint_id": "e1", "node_id": "w1"}
    d(alloc)
    assert "another node" in d({**alloc, "node_id": "w2"}, Forbidden).message
    release = {"op": "ip.release", "network_id": "a1", "endpoint_id": "e1", "node_id": "w2"}
    assert "another node" in d(release, Forbidden).message
    assert ("a1", "e1") in d.state.allocations
    d({**release, "node_id": "w1"})
    assert ("a1", "e1") not in d.state.allocations


def test_a_retried_request_gets_its_first_answer(d: Driver) -> None:
    cmd = net("a1", "net-a")
    first = d.state.apply(50, cmd, rid="r1")
    again = d.state.apply(51, cmd, rid="r1")  # committed twice after a leader change
    assert first.value == again.value == "a1" and again.error is None
    assert d.state.apply(52, cmd, rid="r2").error is not None  # a new request conflicts
    restored = SwarmState.restore(d.state.snapshot())
    assert restored.apply(53, cmd, rid="r1").value == "a1"  # remembered across snapshots
