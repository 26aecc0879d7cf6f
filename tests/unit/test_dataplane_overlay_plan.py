"""plan() for overlays against a FakeKernel: one round converges, nothing to do when matched,
foreign devices and entries never touched, peers programmed in one batch per sandbox."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.effects import after
from dataplane.layout import sandbox_path
from dataplane.model import (
    SANDBOX_BRIDGE,
    SANDBOX_VXLAN,
    AddAddr,
    CreateBridge,
    CreateEndpoint,
    CreateOverlayBridge,
    CreateSandbox,
    CreateVxlan,
    DelAddr,
    DelLink,
    DelSandbox,
    Desired,
    EndpointSpec,
    FdbEntry,
    NeighEntry,
    Observed,
    ObservedLink,
    ObservedSandbox,
    Op,
    OverlaySpec,
    PeerSpec,
    ProgramPeers,
    SetLink,
    VxlanInfo,
    bridge_alias,
    endpoint_alias,
    vxlan_alias,
)
from dataplane.overlay_assess import ours
from dataplane.plan import assess, plan, plan_assessed

RUN = "/rd"


class OverlayKernel:
    """Applies ops through dataplane.effects and refuses what the kernel would refuse:
    EEXIST on names and VNIs, ops on devices that are not ours, entries never seen."""

    def __init__(self, observed: Observed) -> None:
        self.state = observed

    def _links(self, netns: str | None) -> dict[str, ObservedLink]:
        if netns is None:
            return self.state.links
        sb = self.state.sandboxes[netns]
        assert sb.alive, f"op inside dead sandbox {netns}"
        return sb.links

    def _mine(self, netns: str | None, name: str) -> ObservedLink:
        link = self._links(netns)[name]
        assert link.owned if netns is None else ours(link), f"op on foreign {name} ({netns})"
        return link

    def _vni_free(self, vni: int, port: int) -> None:
        everything = list(self.state.links.values())
        for sb in self.state.sandboxes.values():
            everything += sb.links.values()
        for link in everything:
            if link.kind == "vxlan" and link.vxlan is not None:
                assert (link.vxlan.vni, link.vxlan.port) != (vni, port), f"EEXIST VNI {vni}"

    def apply(self, op: Op) -> None:
        netns = getattr(op, "netns", None)
        match op:
            case CreateSandbox(path, _):
                assert path not in self.state.sandboxes, f"EEXIST {path}"
            case DelSandbox(path):
                assert path in self.state.sandboxes
            case CreateOverlayBridge(_, path):
                assert SANDBOX_BRIDGE not in self._links(path)
            case CreateVxlan(o, path, _):
                assert SANDBOX_VXLAN not in self._links(path)
                assert self._mine(path, SANDBOX_BRIDGE).kind == "bridge"
                self._vni_free(o.vni, o.dstport)
            case CreateBridge(b):
                assert b.ifname not in self.state.links
            case CreateEndpoint(e, path):
                assert e.host_ifname not in self._links(path), f"EEXIST {e.host_ifname}"
                assert e.netns_path in self.state.live_netns
                assert self._mine(path, e.bridge).kind == "bridge"
            case SetLink(name, _mtu, _up, master, path):
                self._mine(path, name)
                if master is not None:
                    assert self._links(path)[master].kind == "bridge"
            case AddAddr(name, _, path) | DelAddr(name, _, path):
                self._mine(path, name)
            case DelLink(name, alias, path):
                assert (self._mine(path, name).alias or "") == alias
            case ProgramPeers():
                vx = self._mine(op.netns, op.ifname)
                assert vx.kind == "vxlan"
                sb = self.state.sandboxes[op.netns]
                assert set(op.del_fdb) <= sb.fdb and set(op.del_neigh) <= sb.neigh
            case _:
                raise AssertionError(op)
        del netns
        self.state = after(self.state, op)


def converge(d: Desired, o: Observed) -> tuple[list[Op], Observed]:
    kernel = OverlayKernel(o)
    ops = plan(d, o, run_dir=RUN)
    for op in ops:
        kernel.apply(op)
    return ops, kernel.state


# --- strategies ----------------------------------------------------------------------------

NETS = ["net1", "net2", "net3"]
EPS = ["e1", "e2", "e3", "e4"]
NETNS = ["/run/netns/a", "/run/netns/b"]
VETHS = ["ve0", "ve1", "ve2"]
VTEPS = [IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), IPv4Address("192.0.2.3")]
MACS = [f"02:42:0a:00:00:{i:02x}" for i in range(6)]
PATHS = [sandbox_path(RUN, n) for n in NETS] + [f"{RUN}/netns/ovl-stale"]


def _overlay(i: int, net: str, vni: int, mtu: int, port: int) -> OverlaySpec:
    return OverlaySpec(
        network_id=net,
        vni=vni,
        subnet=IPv4Network(f"10.{i}.0.0/24"),
        gateway=IPv4Interface(f"10.{i}.0.1/24"),
        mtu=mtu,
        dstport=port,
    )


overlays = st.builds(
    _overlay,
    st.integers(1, 3),
    st.sampled_from(NETS),
    st.sampled_from([10, 11, 12]),
    st.sampled_from([1400, 1450]),
    st.sampled_from([4789, 4789, 4790]),
)


def _endpoint(eid: str, net: str, ns: str, ifn: str, host: str, k: int, br: str) -> EndpointSpec:
    return EndpointSpec(
        endpoint_id=eid,
        network_id=net,
        bridge=br,
        host_ifname=host,
        netns_path=ns,
        ifname=ifn,
        address=IPv4Interface(f"10.1.0.{k}/24"),
        mac=MACS[k % len(MACS)],
        mtu=1450,
    )


endpoints = st.builds(
    _endpoint,
    st.sampled_from(EPS),
    st.sampled_from(NETS),
    st.sampled_from(NETNS),
    st.sampled_from(["eth0", "eth1"]),
    st.sampled_from(VETHS),
    st.integers(2, 9),
    st.sampled_from([SANDBOX_BRIDGE] * 5 + ["obr-x"]),
)
peers = st.builds(
    PeerSpec,
    st.sampled_from(NETS),
    st.sampled_from([IPv4Address(f"10.1.0.{k}") for k in range(2, 12)]),
    st.sampled_from(MACS),
    st.sampled_from(VTEPS),
)
random_desireds = st.builds(
    lambda o, e, p, v: Desired(overlays=o, endpoints=e, peers=p, vtep=v),
    st.frozensets(overlays, max_size=3),
    st.frozensets(endpoints, max_size=4),
    st.frozensets(peers, max_size=12),
    st.sampled_from([None, *VTEPS[:2]]),
)


@st.composite
def coherent_desireds(draw: st.DrawFn) -> Desired:
    """Mostly valid: distinct VNIs, endpoints on declared overlays, a VTEP."""
    nets = draw(st.lists(st.sampled_from(NETS), unique=True, min_size=1, max_size=3))
    ovs = frozenset(
        _overlay(i + 1, n, 10 + i, draw(st.sampled_from([1400, 1450])), 4789)
        for i, n in enumerate(nets)
    )
    eps = []
    for k, (eid, ns, ifn) in enumerate(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(EPS), st.sampled_from(NETNS), st.sampled_from(["eth0", "eth1"])
                ),
                max_size=4,
            )
        )
    ):
        net = draw(st.sampled_from(nets))
        eps.append(_endpoint(eid, net, ns, ifn, VETHS[k % 3], k + 2, SANDBOX_BRIDGE))
    ps = draw(st.frozensets(peers.filter(lambda p: p.network_id in nets), max_size=12))
    vtep = draw(st.sampled_from([VTEPS[0]] * 4 + [VTEPS[1], None]))
    return Desired(overlays=ovs, endpoints=frozenset(eps), peers=ps, vtep=vtep)


desireds = st.one_of(random_desireds, coherent_desireds(), coherent_desireds())

ALIASES = (
    [None, "someone-else"]
    + [bridge_alias(n) for n in NETS]
    + [vxlan_alias(n) for n in NETS]
    + [endpoint_alias(n, e) for n in NETS for e in EPS]
)
vxinfos = st.builds(
    VxlanInfo,
    st.sampled_from([10, 11, 12]),
    st.sampled_from([4789, 4790]),
    st.sampled_from([None, *VTEPS[:2]]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


def _link(name: str, kind: str | None, alias: str | None, up: bool, master: str | None,
          addr: bool, info: VxlanInfo | None) -> ObservedLink:  # fmt: skip
    addrs = frozenset({IPv4Interface("10.1.0.1/24")}) if addr else frozenset()
    return ObservedLink(name, kind, alias, 1450, up, master, addrs,
                        info if kind == "vxlan" else None)  # fmt: skip


sandbox_links = st.builds(
    _link,
    st.sampled_from([SANDBOX_BRIDGE, SANDBOX_VXLAN, "vx1", "tunl0", *VETHS]),
    st.sampled_from(["bridge", "vxlan", "veth", "ipip"]),
    st.sampled_from(ALIASES),
    st.booleans(),
    st.sampled_from([None, SANDBOX_BRIDGE]),
    st.booleans(),
    vxinfos,
)
fdbs = st.frozensets(st.builds(FdbEntry, st.sampled_from(MACS), st.sampled_from(VTEPS)))
neighs = st.frozensets(
    st.builds(
        NeighEntry,
        st.sampled_from([IPv4Address(f"10.1.0.{k}") for k in range(2, 12)]),
        st.sampled_from(MACS),
    )
)


def _sandbox(path: str, alive: bool, links: list[ObservedLink], fdb, neigh) -> ObservedSandbox:
    if not alive:
        return ObservedSandbox(path, False)
    by_name = {"lo": ObservedLink("lo", None, None, 65536, True)}
    by_name |= {link.ifname: link for link in links}
    vx = by_name.get(SANDBOX_VXLAN)
    if vx is None or vx.kind != "vxlan" or not vx.owned:
        fdb, neigh = frozenset(), frozenset()  # observe() reports entries of our vxlan0 only
    neigh = frozenset({e.ip: e for e in neigh}.values())  # one per IP, as in the kernel
    return ObservedSandbox(path, True, by_name, fdb, neigh)


sandboxes = st.builds(
    _sandbox,
    st.sampled_from(PATHS),
    st.booleans(),
    st.lists(sandbox_links, max_size=5),
    fdbs,
    neighs,
)
host_vxlans = st.builds(
    _link,
    st.sampled_from(["vx-old", "vx-foreign"]),
    st.just("vxlan"),
    st.sampled_from([None, vxlan_alias("net9")]),
    st.booleans(),
    st.none(),
    st.just(False),
    vxinfos,
)


def _no_vni_twice(o: Observed) -> Observed:
    """The kernel never shows one (VNI, port) on two devices: drop later holders."""
    seen: set[tuple[int, int]] = set()

    def keep(link: ObservedLink) -> bool:
        if link.kind != "vxlan" or link.vxlan is None:
            return True
        key = (link.vxlan.vni, link.vxlan.port)
        if key in seen:
            return False
        seen.add(key)
        return True

    links = {n: link for n, link in o.links.items() if keep(link)}
    sbs = {}
    for path, sb in sorted(o.sandboxes.items()):
        kept = {n: link for n, link in sb.links.items() if keep(link)}
        if SANDBOX_VXLAN not in kept:
            sb = replace(sb, fdb=frozenset(), neigh=frozenset())
        sbs[path] = replace(sb, links=kept)
    return replace(o, links=links, sandboxes=sbs)


random_observeds = st.builds(
    lambda hl, sbs, live: _no_vni_twice(
        Observed(
            links={link.ifname: link for link in hl},
            live_netns=live,
            sandboxes={sb.path: sb for sb in sbs},
        )
    ),
    st.lists(host_vxlans, max_size=2),
    st.lists(sandboxes, max_size=3),
    st.frozensets(st.sampled_from(NETNS)),
)

MUTATIONS = ["drop", "down", "unalias", "master", "mtu", "fdb", "neigh", "unfdb", "kill", "addr"]


def _mutate(o: Observed, kind: str, i: int) -> Observed:
    """One thing a crash, an admin or another program could have done to our sandboxes."""
    paths = sorted(o.sandboxes)
    if not paths:
        return o
    sb = o.sandboxes[paths[i % len(paths)]]
    names = sorted(n for n in sb.links if n != "lo")
    name = names[i % len(names)] if names else None
    links = dict(sb.links)
    has_vx = SANDBOX_VXLAN in links
    if kind == "kill":
        sb = ObservedSandbox(sb.path, False)
    elif kind == "fdb" and has_vx:
        sb = replace(sb, fdb=sb.fdb | {FdbEntry(MACS[i % 6], VTEPS[i % 3])})
    elif kind == "unfdb" and sb.fdb:
        sb = replace(sb, fdb=sb.fdb - {sorted(sb.fdb)[i % len(sb.fdb)]})
    elif kind == "neigh" and has_vx:
        ip = IPv4Address(f"10.1.0.{2 + i % 10}")
        neigh = {e for e in sb.neigh if e.ip != ip} | {NeighEntry(ip, MACS[i % 6])}
        sb = replace(sb, neigh=frozenset(neigh))
    elif name is not None:
        link = links[name]
        if kind == "drop":
            del links[name]
        else:
            links[name] = {
                "down": replace(link, up=False),
                "unalias": replace(link, alias=None),
                "master": replace(link, master=None),
                "mtu": replace(link, mtu=1500),
                "addr": replace(link, addresses=frozenset({IPv4Interface("10.9.9.9/24")})),
            }.get(kind, link)
        sb = replace(sb, links=links)
        if SANDBOX_VXLAN not in links or not links[SANDBOX_VXLAN].owned:
            sb = replace(sb, fdb=frozenset(), neigh=frozenset())
    return replace(o, sandboxes={**o.sandboxes, sb.path: sb})


def _realistic(d0: Desired, muts: list[tuple[str, int]], live: frozenset[str]) -> Observed:
    """What an earlier run (desired d0) left, then disturbed."""
    _, state = converge(d0, Observed(live_netns=frozenset(NETNS)))
    for kind, i in muts:
        state = _mutate(state, kind, i)
    return replace(state, live_netns=live)


realistic_observeds = st.builds(
    _realistic,
    desireds,
    st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 50)), max_size=4),
    st.sampled_from([frozenset(NETNS)] * 3 + [frozenset(NETNS[:1])]),
)
observeds = st.one_of(random_observeds, realistic_observeds, realistic_observeds)


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(desireds, observeds)
def test_one_round_converges(d: Desired, o: Observed) -> None:
    _, state = converge(d, o)
    assert plan(d, state, run_dir=RUN) == []


@settings(max_examples=300, deadline=None)
@given(desireds, observeds)
def test_foreign_devices_and_unseen_entries_never_touched(d: Desired, o: Observed) -> None:
    """OverlayKernel asserts per op; here: a foreign device survives unless its whole
    (stale) sandbox goes, and a foreign host vxlan always survives."""
    ops, state = converge(d, o)
    for name, link in o.links.items():
        if not link.owned:
            assert state.links[name] == link
    removed = {op.path for op in ops if isinstance(op, DelSandbox)}
    for path, sb in o.sandboxes.items():
        if path in removed:
            continue
        for name, link in sb.links.items():
            if not ours(link) and name != "lo":
                assert state.sandboxes[path].links[name].alias == link.alias


@settings(max_examples=300, deadline=None)
@given(desireds, observeds)
def test_removals_first_or_last(d: Desired, o: Observed) -> None:
    ops = plan(d, o, run_dir=RUN)
    kinds = [type(op).__name__ for op in ops]
    creates = [i for i, k in enumerate(kinds) if k.startswith("Create")]
    if creates:
        for i, k in enumerate(kinds):
            if k in ("DelLink", "DelSandbox"):
                assert i < creates[0] or i > creates[-1]
    assert sum(isinstance(op, ProgramPeers) for op in ops) <= len(d.overlays)


@settings(max_examples=200, deadline=None)
@given(desireds, observeds)
def test_matched_kernel_means_no_ops_even_after_restart(d: Desired, o: Observed) -> None:
    """Whatever state one round leaves, a second planner (a restarted daemon) sees nothing
    to do, and the peers it was asked for are exactly what is programmed."""
    _, state = converge(d, o)
    assert plan(d, state, run_dir=RUN) == []
    a = assess(d, state, run_dir=RUN)
    for ov in a.overlay.overlays:
        sb = state.sandboxes[sandbox_path(RUN, ov.network_id)]
        if ov.network_id in a.overlay.vxlan_ok:
            want = a.overlay.fdb[ov.network_id]
            assert {e.mac: e.dst for e in sb.fdb} == want and len(sb.fdb) == len(want)
            assert sb.neigh == frozenset(a.overlay.neigh[ov.network_id].values())


# --- examples ------------------------------------------------------------------------------

OV = _overlay(1, "net1", 10, 1450, 4789)
EP = _endpoint("e1", "net1", NETNS[0], "eth0", "ve0", 2, SANDBOX_BRIDGE)
P = sandbox_path(RUN, "net1")
LIVE = Observed(live_netns=frozenset(NETNS))


def _peers(n: int, vtep: IPv4Address = VTEPS[1]) -> frozenset[PeerSpec]:
    return frozenset(
        PeerSpec(
            "net1",
            IPv4Address(f"10.1.{100 + i // 250}.{i % 250 + 1}"),
            f"02:42:0a:01:{i >> 8:02x}:{i & 255:02x}",
            vtep,
        )
        for i in range(n)
    )


def _desired(peers: frozenset[PeerSpec] = frozenset()) -> Desired:
    return Desired(overlays=frozenset({OV}), endpoints=frozenset({EP}), peers=peers, vtep=VTEPS[0])


def test_first_endpoint_creates_the_sandbox_in_order() -> None:
    ops = plan(_desired(_peers(3)), LIVE, run_dir=RUN)
    assert [type(op) for op in ops] == [
        CreateSandbox,
        CreateOverlayBridge,
        AddAddr,
        CreateVxlan,
        ProgramPeers,
        CreateEndpoint,
    ]
    assert ops[0] == CreateSandbox(P, "net1") and ops[3] == CreateVxlan(OV, P, VTEPS[0])


def test_no_local_endpoint_no_sandbox_and_the_last_one_removes_it() -> None:
    d = replace(_desired(_peers(3)), endpoints=frozenset())
    assert plan(d, LIVE, run_dir=RUN) == []
    _, state = converge(_desired(_peers(3)), LIVE)
    assert plan(d, state, run_dir=RUN) == [DelSandbox(P)]


def test_held_overlays_are_left_exactly_as_they_are() -> None:
    """The swarm's state unknown (a failed manager start, a role switch): no network looks
    deleted, nothing in or about a sandbox is touched, not even what looks stale."""
    _, state = converge(_desired(_peers(3)), LIVE)
    held = Desired(hold_overlays=True)
    assert plan(held, state, run_dir=RUN) == []
    assert plan(Desired(), state, run_dir=RUN) == [DelSandbox(P)]  # what holding prevents


def test_an_unreadable_sandbox_is_left_alone_and_its_endpoints_not_in_place() -> None:
    """A dump of one sandbox failed (cut short again and again, no fd left): that sandbox
    gets no op at all this round, wanted or stale, and the others go on."""
    _, state = converge(_desired(_peers(3)), LIVE)
    stale = f"{RUN}/netns/ovl-stalestale"
    broken = replace(state, sandboxes={
        P: ObservedSandbox(P, True, unreadable="NetlinkDumpInterrupted()"),
        stale: ObservedSandbox(stale, True, unreadable="OSError(24)"),
    })  # fmt: skip
    ops, verdict = plan_assessed(_desired(_peers(3)), broken, run_dir=RUN)
    assert ops == []
    assert any("could not be read" in p for p in verdict.problems)
    assert verdict.overlay.endpoints[OV.network_id] == []


def test_peers_are_batched_one_op_per_sandbox() -> None:
    ops, state = converge(_desired(_peers(500)), LIVE)
    (batch,) = [op for op in ops if isinstance(op, ProgramPeers)]
    assert (len(batch.replace_fdb), len(batch.replace_neigh)) == (500, 500)
    assert "+500" in repr(batch) and "10.1" not in repr(batch)  # no 500 entries in a log

    fewer = frozenset(sorted(_peers(500), key=lambda p: p.mac)[100:])
    (op,) = plan(_desired(fewer), state, run_dir=RUN)
    assert isinstance(op, ProgramPeers)
    assert (len(op.del_fdb), len(op.del_neigh), op.replace_fdb, op.replace_neigh) == (
        100,
        100,
        (),
        (),
    )

    moved = _peers(500, VTEPS[2])  # all endpoints now behind another VTEP
    (op,) = plan(_desired(moved), state, run_dir=RUN)
    assert isinstance(op, ProgramPeers)
    assert len(op.replace_fdb) == 500 and op.del_fdb == () and op.replace_neigh == ()


def test_reused_ip_repoints_the_neighbour_without_deleting_it() -> None:
    _, state = converge(_desired(_peers(1)), LIVE)
    (old,) = _peers(1)
    new = replace(old, mac="02:42:0a:01:ff:ff")
    (op,) = plan(_desired(frozenset({new})), state, run_dir=RUN)
    assert isinstance(op, ProgramPeers)
    assert op.replace_neigh == (NeighEntry(old.ip, new.mac),) and op.del_neigh == ()
    assert op.del_fdb == (FdbEntry(old.mac, old.vtep),)


def test_orphans_holding_the_vni_go_first() -> None:
    stale = ObservedSandbox(
        f"{RUN}/netns/ovl-stale",
        True,
        {
            SANDBOX_VXLAN: _link(
                SANDBOX_VXLAN,
                "vxlan",
                vxlan_alias("old"),
                True,
                None,
                False,
                VxlanInfo(10, 4789, VTEPS[0], False, True),
            )
        },
    )
    host_orphan = _link("vx-old", "vxlan", vxlan_alias("old"), True, None, False,
                        VxlanInfo(10, 4789, None, True, False, False))  # fmt: skip
    o = replace(LIVE, links={"vx-old": host_orphan}, sandboxes={stale.path: stale})
    ops = plan(_desired(), o, run_dir=RUN)
    assert ops[:2] == [DelLink("vx-old", vxlan_alias("old")), DelSandbox(stale.path)]
    assert CreateVxlan(OV, P, VTEPS[0]) in ops


def test_foreign_vxlan_holding_the_vni_is_reported_not_deleted() -> None:
    foreign = _link("vx-docker", "vxlan", None, True, None, False,
                    VxlanInfo(10, 4789, None, True, False, False))  # fmt: skip
    o = replace(LIVE, links={"vx-docker": foreign})
    ops = plan(_desired(_peers(2)), o, run_dir=RUN)
    assert not any(isinstance(op, (CreateVxlan, ProgramPeers, DelLink)) for op in ops)
    assert CreateEndpoint(EP, P) in ops  # local traffic still works
    (problem,) = assess(_desired(), o, run_dir=RUN).problems
    assert "vx-docker" in problem and "VNI 10" in problem


def test_changed_vtep_recreates_the_vxlan_and_reprograms_peers() -> None:
    _, state = converge(_desired(_peers(3)), LIVE)
    d = replace(_desired(_peers(3)), vtep=VTEPS[2])
    ops = plan(d, state, run_dir=RUN)
    assert ops[0] == DelLink(SANDBOX_VXLAN, vxlan_alias("net1"), P)
    assert ops[1] == CreateVxlan(OV, P, VTEPS[2])
    assert isinstance(ops[2], ProgramPeers) and len(ops[2].replace_fdb) == 3


def test_inconsistent_peers_are_warnings_not_errors() -> None:
    (p,) = _peers(1)
    clash = {p, replace(p, vtep=VTEPS[2], ip=IPv4Address("10.1.200.1")),
             replace(p, ip=EP.address.ip, mac="02:42:0a:01:00:77")}  # fmt: skip
    a = assess(_desired(frozenset(clash)), LIVE, run_dir=RUN)
    assert a.problems == [] and len(a.warnings) == 2
    assert a.overlay.fdb["net1"] == {p.mac: p.vtep}


def test_half_made_devices_in_a_sandbox_are_redone() -> None:
    _, state = converge(_desired(), LIVE)
    sb = state.sandboxes[P]
    links = dict(sb.links)
    links[SANDBOX_VXLAN] = replace(links[SANDBOX_VXLAN], alias=None)  # crash before alias
    links["ve0"] = replace(links["ve0"], up=False)
    links["tunl0"] = ObservedLink("tunl0", "ipip", None, 1480, False)  # kernel fallback
    o = replace(state, sandboxes={P: replace(sb, links=links)})
    ops = plan(_desired(), o, run_dir=RUN)
    assert ops == [
        DelLink("ve0", endpoint_alias("net1", "e1"), P),
        DelLink(SANDBOX_VXLAN, "", P),
        CreateVxlan(OV, P, VTEPS[0]),
        CreateEndpoint(EP, P),
    ]


def test_bridge_and_overlay_endpoints_share_container_names() -> None:
    other = replace(EP, endpoint_id="e2", network_id="net2", host_ifname="ve1")
    ov2 = _overlay(2, "net2", 11, 1450, 4789)
    d = replace(_desired(), overlays=frozenset({OV, ov2}), endpoints=frozenset({EP, other}))
    (problem,) = assess(d, LIVE, run_dir=RUN).problems
    assert "'eth0' used twice" in problem


@settings(max_examples=200, deadline=None)
@given(coherent_desireds(), st.frozensets(peers, max_size=12), st.integers(0, 50))
def test_peer_churn_is_one_minimal_batch(d0: Desired, new_peers, junk: int) -> None:
    """Peers come and go (and an entry nobody asked for appears): one ProgramPeers per
    sandbox converges it, and nothing else is touched."""
    _, state = converge(d0, Observed(live_netns=frozenset(NETNS)))
    state = _mutate(_mutate(state, "fdb", junk), "neigh", junk)
    d = replace(d0, peers=new_peers)
    ops, after_state = converge(d, state)
    assert all(isinstance(op, ProgramPeers) for op in ops)
    assert len({op.netns for op in ops}) == len(ops)  # type: ignore[attr-defined]
    assert plan(d, after_state, run_dir=RUN) == []


def test_dataplane_without_run_dir_refuses_overlays() -> None:
    """No shared default directory: a daemon must name its own, or get an error."""
    from dataplane.reconciler import Dataplane

    bridge_ep = replace(EP, endpoint_id="b1", network_id="bnet", bridge="obr-b")
    d = replace(_desired(_peers(2)), endpoints=frozenset({EP, bridge_ep}))
    kept, refused = Dataplane()._supported(d)
    assert refused == ["overlay network net1: this Dataplane has no run_dir"]
    assert kept == Desired(endpoints=frozenset({bridge_ep}), vtep=d.vtep)
    assert Dataplane(run_dir=RUN)._supported(d) == (d, [])
