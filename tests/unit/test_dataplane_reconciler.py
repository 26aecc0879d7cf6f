"""The reconcile loop's own control flow when an op fails half-way: the rest of the plan
still runs, nothing is raised to the daemon, and the next round dumps the kernel. (The ops
themselves run against real namespaces in tests/integration.)"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dataplane.model import (
    SANDBOX_BRIDGE,
    CreateEndpoint,
    CreateOverlayBridge,
    Desired,
    EndpointSpec,
    Observed,
    Op,
    OverlaySpec,
)
from dataplane.reconciler import Dataplane

NS = "/run/netns/ctr"


def _network(i: int) -> tuple[OverlaySpec, EndpointSpec]:
    net = f"{i}" * 20
    o = OverlaySpec(net, 4096 + i, IPv4Network(f"10.0.{i}.0/24"), IPv4Interface(f"10.0.{i}.1/24"),
                    1450)  # fmt: skip
    e = EndpointSpec(f"{i}" * 64, net, SANDBOX_BRIDGE, f"ove-{i}{i}{i}", NS, f"eth{i}",
                     IPv4Interface(f"10.0.{i}.2/24"), f"02:42:0a:00:0{i}:02", 1450)  # fmt: skip
    return o, e


def test_a_half_failed_op_does_not_stop_the_other_networks() -> None:
    (o1, e1), (o2, e2) = _network(1), _network(2)
    desired = Desired(overlays=frozenset({o1, o2}), endpoints=frozenset({e1, e2}),
                      vtep=IPv4Address("192.0.2.1"))  # fmt: skip
    dp = Dataplane(run_dir="/nonexistent-run-dir", nft=False)
    dumps: list[int] = []
    applied: list[Op] = []

    async def observe(_: Desired) -> Observed:
        dumps.append(1)
        return Observed(live_netns=frozenset({NS}), ip_forward=True)

    async def apply(op: Op) -> None:
        applied.append(op)
        # br0 made, then its set-up refused: the AddAddr after it succeeds on a device the
        # model never saw being made
        if isinstance(op, CreateOverlayBridge) and op.spec == o1:
            raise OSError("set-up of br0 refused")

    dp.observe = observe  # type: ignore[method-assign]
    dp._apply = apply  # type: ignore[method-assign]
    result = asyncio.run(dp.reconcile(desired))
    assert {op.spec.endpoint_id for op in applied if isinstance(op, CreateEndpoint)} == {
        e1.endpoint_id, e2.endpoint_id,
    }  # fmt: skip
    assert any("set-up of br0 refused" in err for err in result.errors)
    assert dp._known is None  # the next reconcile, fresh or not, dumps the kernel
    before = len(dumps)
    asyncio.run(dp.reconcile(desired, fresh=False))
    assert len(dumps) > before
    asyncio.run(dp.close())


def test_failures_are_traced_to_the_endpoints_they_concern() -> None:
    from dataplane.in_place import not_in_place
    from dataplane.model import AddAddr, ApplyNft, DelLink, NftRuleset, ProgramPeers

    (o1, e1), (o2, e2) = _network(1), _network(2)
    d = Desired(overlays=frozenset({o1, o2}), endpoints=frozenset({e1, e2}))
    run = "/run/overlayd/x"
    both = [e1, e2]

    def check(failed: list[Op], usable: list[EndpointSpec] = both) -> tuple[set[str], bool]:
        blocked, host_wide = not_in_place(d, usable, [], failed, run)
        return set(blocked), host_wide

    assert check([]) == (set(), False)
    assert check([], [e2]) == ({e1.endpoint_id}, False)  # not usable: a problem of its own
    assert check([CreateEndpoint(e2, "x")]) == ({e2.endpoint_id}, False)
    # a sandbox op concerns every endpoint of that network, and only those
    assert check([ProgramPeers(f"{run}/netns/ovl-{o1.network_id[:10]}", "vxlan0")]) == (
        {e1.endpoint_id}, False,
    )  # fmt: skip
    assert check([AddAddr("br0", o2.gateway, f"{run}/netns/ovl-{o2.network_id[:10]}")]) == (
        {e2.endpoint_id}, False,
    )  # fmt: skip
    assert check([DelLink("old", "overlayd:z")]) == (set(), False)  # a stale removal: nobody's
    assert check([ApplyNft(NftRuleset("", None))]) == (set(), True)  # everyone's isolation


def test_a_cancelled_reconcile_lets_its_op_finish_before_the_next_one_runs() -> None:
    """A stop cancels the loop mid-op; the op (a peer batch in a thread, on a sandbox's
    socket) runs to its end, and only then may the stop's own converge use that socket."""
    (o1, e1) = _network(1)
    desired = Desired(overlays=frozenset({o1}), endpoints=frozenset({e1}),
                      vtep=IPv4Address("192.0.2.1"))  # fmt: skip
    dp = Dataplane(run_dir="/nonexistent-run-dir", nft=False)
    log: list[str] = []

    async def observe(_: Desired) -> Observed:
        return Observed(live_netns=frozenset({NS}), ip_forward=True)

    async def apply(op: Op) -> None:
        log.append(f"start {type(op).__name__}")
        await asyncio.sleep(0.05)
        log.append(f"end {type(op).__name__}")

    dp.observe = observe  # type: ignore[method-assign]
    dp._apply = apply  # type: ignore[method-assign]

    async def scenario() -> None:
        first = asyncio.create_task(dp.reconcile(desired))
        while not log:
            await asyncio.sleep(0)
        first.cancel()
        second = asyncio.create_task(dp.reconcile(desired))
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await second
        await dp.close()

    asyncio.run(scenario())
    assert log[:2] == ["start CreateSandbox", "end CreateSandbox"]  # not cut off, not overlapped
    starts_ends = [x.split()[0] for x in log]
    assert all(a != b for a, b in itertools.pairwise(starts_ends))  # never two at once
