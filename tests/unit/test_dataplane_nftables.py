"""Rendering of overlayd's nft table and reading back its fingerprint (pure parts)."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

from dataplane import nftables
from dataplane.model import BridgeSpec


def bridge(name: str, i: int, **kw: bool) -> BridgeSpec:
    return BridgeSpec(
        network_id=f"net{i}",
        ifname=name,
        gateway=IPv4Interface(f"10.{i}.0.1/24"),
        subnet=IPv4Network(f"10.{i}.0.0/24"),
        **kw,
    )


def test_masquerade_only_for_nat_bridges() -> None:
    r = nftables.rules(
        [bridge("b1", 1), bridge("b2", 2, internal=True), bridge("b3", 3, masquerade=False)]
    )
    assert r["postrouting"] == ['ip saddr 10.1.0.0/24 oifname != "b1" masquerade']


def test_isolation_internal_and_icc() -> None:
    r = nftables.rules([bridge("b1", 1, icc=False), bridge("b2", 2, internal=True)])
    assert r["forward"] == [
        'iifname "b1" oifname { "b2" } drop',
        'oifname "b1" iifname != "b1" ct state new drop',  # nothing opens connections in
        'iifname "b1" oifname "b1" drop',
        'iifname "b2" oifname != "b2" drop',
        'oifname "b2" iifname != "b2" drop',
    ]


def test_no_bridges_means_no_table() -> None:
    r = nftables.render([])
    assert r.fingerprint is None
    assert r.script == "table ip overlayd {}\ndelete table ip overlayd\n"


def test_script_is_one_atomic_replace_of_our_table_only() -> None:
    script = nftables.render([bridge("b1", 1)]).script
    lines = script.splitlines()
    assert lines[:3] == ["table ip overlayd {}", "delete table ip overlayd", "table ip overlayd {"]
    assert "flush ruleset" not in script
    assert all("table" not in line or "overlayd" in line for line in lines)


def _listing(script_rules: dict[str, list[str]], digest_comment: str | None) -> dict:
    items: list[dict] = [{"metainfo": {}}, {"table": {"family": "ip", "name": "overlayd"}}]
    items += [{"chain": {"name": c}} for c in script_rules]
    for c, rules in script_rules.items():
        for i, _ in enumerate(rules):
            rule: dict = {"chain": c, "expr": []}
            if c == "forward" and i == 0 and digest_comment:
                rule["comment"] = digest_comment
            items.append({"rule": rule})
    return {"nftables": items}


def test_fingerprint_round_trip_and_tamper_detection() -> None:
    bs = [bridge("b1", 1), bridge("b2", 2)]
    rendered = nftables.render(bs)
    digest = rendered.fingerprint.split()[0]  # type: ignore[union-attr]
    chains = nftables.rules(bs)
    chains["forward"].insert(0, "digest rule")
    assert nftables.fingerprint_of(_listing(chains, f"overlayd:{digest}")) == rendered.fingerprint
    chains["forward"].pop()  # someone deleted a rule
    assert nftables.fingerprint_of(_listing(chains, f"overlayd:{digest}")) != rendered.fingerprint
    assert nftables.render(bs[:1]).fingerprint != rendered.fingerprint


def test_render_is_deterministic() -> None:
    a = nftables.render([bridge("b1", 1), bridge("b2", 2)])
    b = nftables.render([bridge("b2", 2), bridge("b1", 1)])
    assert a == b
