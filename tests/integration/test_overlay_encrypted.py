"""Encrypted overlay networks for real: ESP between two hosts inside user-mode Linux (the
host kernel has no ESP). The scenarios run inside (encrypted_scenario.py: the data plane
driven directly; encrypted_swarm_scenario.py: two overlayd daemons in a swarm); these
tests assert on their reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.uml import VENV_PYTHON, run_in_uml

pytestmark = pytest.mark.kernel


def scenario(module: str) -> dict[str, Any]:
    result = run_in_uml(f"{VENV_PYTHON} -m tests.integration.{module}", timeout=300)
    line = next((x for x in result.output.splitlines() if x.startswith("REPORT ")), None)
    assert result.returncode == 0 and line is not None, result.output[-4000:]
    return json.loads(line[len("REPORT ") :])


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return scenario("encrypted_scenario")


def test_swarm_of_two_daemons_encrypts_with_the_managers_keys() -> None:
    from dataplane.mtu import overlay_mtu

    r = scenario("encrypted_swarm_scenario")
    assert r["connect"] == [[0, ""], [0, ""]]
    assert r["ping"] and r["mtu"] == overlay_mtu(1500, encrypted=True)
    assert r["wire"]["esp"] >= 12 and r["wire"]["udp"] == 0  # 6 pings, both ways: all ESP
    assert r["xfrm"] == [4, 4]  # per host: one SA to send, one per ring key (3) to receive
    assert r["restart"]["same_sas"]  # kill -9 + restart: same epoch, nothing re-keyed
    assert r["restarted_before_flood_ended"]
    assert "800 packets transmitted, 800 received, 0% packet loss" in r["restart"]["ping"][0], (
        r["restart"], r["xfrm_stat_during_restart"])  # fmt: skip


def test_both_networks_work_and_only_the_encrypted_one_is_esp(report: dict[str, Any]) -> None:
    assert [r["errors"] for r in report["first"]] == [[], []]
    assert report["again"] == [[], []]  # a second reconcile changes nothing
    assert report["ping_encrypted"] and report["ping_plain"]
    assert report["ping_encrypted_full_mtu"]  # overlay_mtu(1500, encrypted) fits ESP
    assert not report["ping_encrypted_one_byte_more"]  # DF: the container's MTU refuses it
    wire = report["wire"]
    assert wire["esp"] >= 20 and wire["udp_4790"] == 0  # 10 pings there and back: all ESP
    assert wire["udp_4789"] >= 20  # the plain network stays plain VXLAN
    assert wire["sa_packets_encrypted_pings"] >= 20 and wire["sa_packets_plain_pings"] == 0


def test_cleartext_cannot_be_injected_into_the_encrypted_network(report: dict[str, Any]) -> None:
    inject = report["inject"]
    assert inject["plain_vni_plain_port"]  # the injector works
    assert not inject["encrypted_vni_encrypted_port"]  # dropped by the inbound policy
    assert not inject["encrypted_vni_plain_port"]  # no device of that VNI on the plain port
    assert not inject["encrypted_vni_second_address"]  # the socket listens on all of them
    assert not inject["encrypted_vni_broadcast"]
    assert inject["plain_vni_broadcast"]  # (so broadcast injection itself works)
    assert report["xfrm_stat_h2"].get("XfrmInTmplMismatch", 0) + report["xfrm_stat_h2"].get(
        "XfrmInNoPols", 0) >= 15  # fmt: skip


def test_key_rotation_loses_no_packet(report: dict[str, Any]) -> None:
    rot = report["rotation"]
    assert rot["errors"] == [[], [], [], []]
    assert all(any(op.startswith("ProgramXfrm") for op in a) for a in rot["applied"])
    assert "400 packets transmitted, 400 received, 0% packet loss" in rot["ping"][0], rot["ping"]
    assert rot["out_spi_now"] and rot["out_spi_first_gone"]
    assert rot["sa_count_h1"] == 1 + 3  # one to send, one per ring key to receive


def test_a_peer_with_a_new_epoch_gets_fresh_sas(report: dict[str, Any]) -> None:
    assert report["new_epoch"] == {"errors": [[], []], "ping": True, "spi": True}


def test_restart_adopts_and_removal_leaves_nothing(report: dict[str, Any]) -> None:
    assert report["ping_while_driver_dead"]
    assert report["adopted"] == []
    assert report["removed"]["errors"] == []
    assert report["policies_after_first_pass"] == 2  # while its vxlan device was still there
    assert report["removed_again"] == ["ProgramXfrm"]
    states, policies = report["left_after_removal"]
    assert states.strip() == "" and policies.strip() == ""
    assert report["ping_plain_after_removal"]
