"""plan() against a FakeKernel: one round converges, nothing to do when matched, and devices
without an overlayd alias are never the target of an op."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane import nftables
from dataplane.effects import after
from dataplane.model import (
    AddAddr,
    ApplyNft,
    BridgeSpec,
    CreateBridge,
    CreateEndpoint,
    DelAddr,
    DelLink,
    Desired,
    EnableIpForward,
    EndpointSpec,
    Observed,
    ObservedLink,
    Op,
    SetLink,
    bridge_alias,
    endpoint_alias,
)
from dataplane.names import valid_ifname
from dataplane.plan import assess, plan


class FakeKernel:
    """Applies Ops to an Observed the way the kernel would (dataplane.effects), and refuses
    what the kernel must refuse."""

    def __init__(self, observed: Observed) -> None:
        self.state = observed

    def observed(self) -> Observed:
        return self.state

    def _owned(self, name: str) -> ObservedLink:
        link = self.state.links[name]
        assert link.owned, f"op on foreign link {name}"
        return link

    def apply(self, op: Op) -> None:
        links = self.state.links
        match op:
            case CreateBridge(b):
                assert b.ifname not in links, f"EEXIST {b.ifname}"
            case CreateEndpoint(e):
                assert e.host_ifname not in links, f"EEXIST {e.host_ifname}"
                assert e.netns_path in self.state.live_netns
                assert self._owned(e.bridge).kind == "bridge"
            case SetLink(name, _mtu, _up, master):
                self._owned(name)
                if master is not None:
                    assert links[master].kind == "bridge"
            case AddAddr(name, _) | DelAddr(name, _):
                self._owned(name)
            case DelLink(name, alias, _netns, half_made):
                if half_made:  # what _del_link re-checks: still without alias
                    assert not links[name].alias and alias == "", f"{name} is not half-made"
                else:
                    assert self._owned(name).alias == alias
            case EnableIpForward() | ApplyNft(_):
                pass
            case _:
                raise AssertionError(op)
        self.state = after(self.state, op)


def as_observed(d: Desired) -> Observed:
    links = {
        b.ifname: ObservedLink(
            b.ifname,
            "bridge",
            bridge_alias(b.network_id),
            b.mtu,
            True,
            None,
            frozenset({b.gateway}),
        )
        for b in d.bridges
    }
    for e in d.endpoints:
        alias = endpoint_alias(e.network_id, e.endpoint_id)
        links[e.host_ifname] = ObservedLink(e.host_ifname, "veth", alias, e.mtu, True, e.bridge)
    return Observed(
        links=links,
        live_netns=frozenset(e.netns_path for e in d.endpoints),
        nft=nftables.render(d.bridges).fingerprint,
        ip_forward=any(b.masquerade and not b.internal for b in d.bridges),
    )


def converge(d: Desired, o: Observed) -> tuple[list[Op], Observed]:
    kernel = FakeKernel(o)
    ops = plan(d, o)
    for op in ops:
        kernel.apply(op)
    return ops, kernel.observed()


# --- strategies ----------------------------------------------------------------------------

NETS = ["n1", "n2", "n3"]
EPS = ["e1", "e2", "e3", "e4"]
BRIDGE_NAMES = ["br0", "br1", "br2"]
VETH_NAMES = ["ve0", "ve1", "ve2", "ve3"]
NETNS = ["/run/netns/a", "/run/netns/b", "/run/netns/c"]
ALIASES = (
    [None, "someone-else", "docker:x"]
    + [bridge_alias(n) for n in NETS]
    + [endpoint_alias(n, e) for n in NETS for e in EPS]
)


def _bridge(i: int, net: str, name: str, internal: bool, masq: bool, icc: bool) -> BridgeSpec:
    return BridgeSpec(
        network_id=net,
        ifname=name,
        gateway=IPv4Interface(f"10.{i}.0.1/24"),
        subnet=IPv4Network(f"10.{i}.0.0/24"),
        mtu=1450 if i % 2 else 1500,
        internal=internal,
        masquerade=masq,
        icc=icc,
    )


bridges = st.builds(
    _bridge,
    st.integers(1, 3),
    st.sampled_from(NETS),
    st.sampled_from(BRIDGE_NAMES),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


def _endpoint(i: int, eid: str, net: str, br: str, host: str, ns: str, ifn: str) -> EndpointSpec:
    return EndpointSpec(
        endpoint_id=eid,
        network_id=net,
        bridge=br,
        host_ifname=host,
        netns_path=ns,
        ifname=ifn,
        address=IPv4Interface(f"10.{i}.0.{i + 10}/24"),
        mac=f"02:42:0a:0{i}:00:0a",
        default_gateway=IPv4Address(f"10.{i}.0.1") if i == 1 else None,
    )


endpoints = st.builds(
    _endpoint,
    st.integers(1, 3),
    st.sampled_from(EPS),
    st.sampled_from(NETS),
    st.sampled_from(BRIDGE_NAMES),
    st.sampled_from(VETH_NAMES),
    st.sampled_from(NETNS),
    st.sampled_from(["eth0", "eth1"]),
)
desireds = st.builds(
    Desired, st.frozensets(bridges, max_size=3), st.frozensets(endpoints, max_size=4)
)

observed_links = st.builds(
    ObservedLink,
    st.sampled_from(BRIDGE_NAMES + VETH_NAMES + ["eth0", "lo", "xyz"]),
    st.sampled_from(["bridge", "veth", None]),
    st.sampled_from(ALIASES),
    st.sampled_from([1450, 1500]),
    st.booleans(),
    st.sampled_from([None, *BRIDGE_NAMES]),
    st.frozensets(st.sampled_from([IPv4Interface(f"10.{i}.0.1/24") for i in (1, 2, 3)])),
)
observeds = st.builds(
    Observed,
    st.lists(observed_links, max_size=8).map(lambda ls: {link.ifname: link for link in ls}),
    st.frozensets(st.sampled_from(NETNS)),
    st.sampled_from([None, "junk", "0123 forward=1 postrouting=0"]),
    st.booleans(),
)


def _valid(d: Desired) -> Desired:
    """Drop desired objects that cannot coexist, so as_observed(d) is a possible kernel."""
    seen: set[str] = set()
    inside: set[tuple[str, str]] = set()
    bs = []
    for b in sorted(d.bridges, key=lambda b: (b.ifname, b.network_id)):
        if b.ifname not in seen and b.network_id not in seen:
            seen |= {b.ifname, b.network_id}
            bs.append(b)
    nets = {b.ifname: b.network_id for b in bs}
    es = []
    for e in sorted(d.endpoints, key=lambda e: e.endpoint_id):
        if {e.host_ifname, e.endpoint_id} & seen or (e.netns_path, e.ifname) in inside:
            continue
        if nets.get(e.bridge) == e.network_id:
            seen |= {e.host_ifname, e.endpoint_id}
            inside.add((e.netns_path, e.ifname))
            es.append(e)
    return Desired(frozenset(bs), frozenset(es))


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(desireds, observeds)
def test_one_round_converges(d: Desired, o: Observed) -> None:
    _, after = converge(d, o)
    assert plan(d, after) == []


@settings(max_examples=200, deadline=None)
@given(desireds)
def test_nothing_to_do_when_matched(d: Desired) -> None:
    d = _valid(d)
    assert plan(d, as_observed(d)) == []
    assert assess(d, as_observed(d)).problems == []


@settings(max_examples=400, deadline=None)
@given(desireds, observeds)
def test_foreign_links_never_touched(d: Desired, o: Observed) -> None:
    foreign = {n: link for n, link in o.links.items() if not link.owned}
    _, after = converge(d, o)
    for name, link in foreign.items():
        if link.master in o.links and o.links[link.master].owned:
            # a foreign port on our bridge is released when that bridge goes: unavoidable
            link = replace(link, master=after.links[name].master)
        assert after.links[name] == link
    for op in plan(d, o):
        target = getattr(op, "ifname", None)
        if isinstance(op, (CreateBridge, CreateEndpoint)):
            target = getattr(op.spec, "ifname" if isinstance(op, CreateBridge) else "host_ifname")
        assert target not in foreign


@settings(max_examples=200, deadline=None)
@given(desireds, observeds)
def test_deletes_blockers_first_and_stale_last(d: Desired, o: Observed) -> None:
    ops = plan(d, o)
    kinds = [type(op).__name__ for op in ops]
    creates = [i for i, k in enumerate(kinds) if k.startswith("Create")]
    dels = [i for i, k in enumerate(kinds) if k == "DelLink"]
    if creates:
        # every DelLink is either before the first create or after the last one
        assert all(i < creates[0] or i > creates[-1] for i in dels)


# --- examples ------------------------------------------------------------------------------

BR = _bridge(1, "n1", "br0", internal=False, masq=True, icc=True)
EP = _endpoint(1, "e1", "n1", "br0", "ve0", "/run/netns/a", "eth0")


def test_fresh_host_creates_everything_in_order() -> None:
    d = Desired(frozenset({BR}), frozenset({EP}))
    ops = plan(d, Observed(live_netns=frozenset({EP.netns_path})))
    assert [type(op) for op in ops] == [
        CreateBridge,
        AddAddr,
        ApplyNft,
        EnableIpForward,
        CreateEndpoint,
    ]


def test_gone_netns_is_reported_not_created() -> None:
    d = Desired(frozenset({BR}), frozenset({EP}))
    o = as_observed(Desired(frozenset({BR})))
    assert plan(d, o) == []
    assert assess(d, o).gone == [EP]


def test_foreign_name_clash_is_a_problem_and_untouched() -> None:
    d = Desired(frozenset({BR}), frozenset({EP}))
    o = Observed(
        links={"br0": ObservedLink("br0", "bridge", None, 1500, True)},
        live_netns=frozenset({EP.netns_path}),
    )
    assert plan(d, o) == []  # nothing usable: no bridge, no endpoint, no nft rules for br0
    assert len(assess(d, o).problems) == 2


def test_half_made_endpoint_is_recreated() -> None:
    d = Desired(frozenset({BR}), frozenset({EP}))
    o = as_observed(d)
    o.links["ve0"] = replace(o.links["ve0"], up=False, master=None)
    assert plan(d, o) == [DelLink("ve0", endpoint_alias("n1", "e1")), CreateEndpoint(EP)]


def test_devices_left_without_alias_by_a_crash_are_redone_when_the_name_is_ours() -> None:
    """kill -9 between `link add` and the request that sets the alias leaves a down device
    without alias. A name overlayd derives from its own IDs is redone; the same state
    under a name someone could have chosen is reported and left alone."""
    net, eid = "a1b2c3d4e5f6" * 5, "f" * 64
    br = replace(BR, network_id=net, ifname=f"br-{net[:12]}")
    ep = replace(EP, network_id=net, endpoint_id=eid, bridge=br.ifname,
                 host_ifname=f"ove-{eid[:11]}")  # fmt: skip
    d = Desired(frozenset({br}), frozenset({ep}))
    crashed = Observed(
        links={
            br.ifname: ObservedLink(br.ifname, "bridge", None, 1500, False),
            ep.host_ifname: ObservedLink(ep.host_ifname, "veth", None, 1500, False),
        },
        live_netns=frozenset({ep.netns_path}),
    )
    ops = plan(d, crashed)
    assert ops[:2] == [DelLink(ep.host_ifname, "", half_made=True),
                       DelLink(br.ifname, "", half_made=True)]  # fmt: skip
    assert {type(op) for op in ops[2:]} >= {CreateBridge, CreateEndpoint}
    assert converge(d, crashed)[1] == as_observed(d)
    # up, or another kind, or a name a user picked: not a crash of ours
    for link in (replace(crashed.links[br.ifname], up=True),
                 replace(crashed.links[br.ifname], kind="veth")):  # fmt: skip
        o = replace(crashed, links={br.ifname: link})
        assert not any(isinstance(op, DelLink) for op in plan(d, o))
        assert any("is not overlayd's" in p for p in assess(d, o).problems)
    user = Desired(frozenset({BR}))  # br0: a name the user asked for
    o = Observed(links={"br0": ObservedLink("br0", "bridge", None, 1500, False)})
    assert plan(user, o) == []


def test_removed_network_deletes_ports_then_bridge_and_rules() -> None:
    other = _bridge(2, "n2", "br1", internal=True, masq=True, icc=True)
    full = Desired(frozenset({BR, other}), frozenset({EP}))
    ops = plan(Desired(frozenset({other})), as_observed(full))
    assert [type(op) for op in ops] == [ApplyNft, DelLink, DelLink]
    assert [op.ifname for op in ops[1:]] == ["ve0", "br0"]  # type: ignore[attr-defined]


def test_internal_bridge_does_not_enable_forwarding() -> None:
    internal = _bridge(2, "n2", "br1", internal=True, masq=True, icc=True)
    ops = plan(Desired(frozenset({internal})), Observed())
    assert EnableIpForward() not in ops


@pytest.mark.parametrize("name", ["br0", "br-0a1b2c3d4e5f", "a.b_c-d", "x" * 15])
def test_interface_names_the_kernel_takes(name: str) -> None:
    assert valid_ifname(name)


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 16, "été", "br\n", "a b", "a/b", "²"])
def test_interface_names_the_kernel_refuses(name: str) -> None:
    assert not valid_ifname(name)
