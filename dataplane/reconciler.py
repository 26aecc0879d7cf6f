"""Dataplane: observe → plan → apply, serialized, for the namespace this process runs in.

The same call serves start-up (adopt what a previous run left), every change and the
periodic safety net. An op that fails is not retried blindly: the kernel is dumped and
planned again once, and whatever still fails is reported, to be retried on the next call.

Overlay networks are handled in the same call: their sandboxes live under `run_dir`
(layout.py), which must be this daemon's own (layout.run_dir_for(state_dir)); a fresh
observe dumps every sandbox there too, through connections kept open between calls.
Without a run_dir overlays are refused: a shared default would let two daemons on one
machine delete each other's sandboxes as stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

from . import nftables, sysctl
from .effects import after
from .in_place import not_in_place
from .ipsec_plan import policies_ready
from .model import (
    ApplyNft,
    CreateOverlayBridge,
    CreateSandbox,
    CreateVxlan,
    DelSandbox,
    Desired,
    EnableBridgeNetfilter,
    EnableIpForward,
    EndpointSpec,
    Observed,
    Op,
    ProgramPeers,
    ProgramXfrm,
)
from .netlink import Netlink
from .netns import is_netns, netns_key
from .overlay_netlink import Overlays
from .plan import plan_assessed
from .xfrm import Xfrm

_OVERLAY_OPS = (CreateSandbox, DelSandbox, CreateOverlayBridge, CreateVxlan, ProgramPeers)

log = logging.getLogger(__name__)

_ROUNDS = 2  # a failed round is followed by one fresh dump + plan


@dataclass(frozen=True)
class ReconcileResult:
    applied: tuple[Op, ...]  # ops that succeeded, in order
    gone: tuple[EndpointSpec, ...]  # desired endpoints whose netns no longer exists
    errors: tuple[str, ...]  # failed ops and desired objects that cannot be realized
    warnings: tuple[str, ...] = ()  # e.g. remote peers skipped as inconsistent
    # desired endpoints not in place after this call (in_place.py), and whether an op
    # every endpoint relies on (nftables, ip_forward, xfrm) failed
    not_in_place: frozenset[str] = frozenset()
    host_wide_failure: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


class Dataplane:
    """Use from one event loop; reconcile() calls are serialized by a lock.

    `nft` False: no nftables rules at all (the host's firewall is someone else's).
    `run_dir`: this instance's own directory for overlay sandboxes (netns bind mounts),
    e.g. layout.run_dir_for(state_dir); two daemons on one machine must pass different
    ones. None (bridge networks only): overlay networks in Desired are reported as errors."""

    def __init__(self, run_dir: str | None = None, nft: bool = True) -> None:
        self.run_dir = run_dir
        self.nft = nft  # False: never read or write nftables (dockerd's --iptables=false)
        self._lock = asyncio.Lock()
        self._netlink = Netlink()
        self._overlays = Overlays(run_dir) if run_dir is not None else None
        self._xfrm = Xfrm()
        # The kernel as last dumped, carried forward through the effects of our own
        # successful ops; None forces a dump.
        self._known: Observed | None = None

    async def observe(self, desired: Desired) -> Observed:
        paths = {e.netns_path for e in desired.endpoints}
        return Observed(
            links=await self._netlink.observe(),
            live_netns=frozenset(p for p in paths if is_netns(p)),
            nft=await nftables.observe() if self.nft else None,
            ip_forward=sysctl.ip_forward(),
            bridge_nf=sysctl.bridge_netfilter_on() if self.nft else True,
            sandboxes=await self._overlays.observe() if self._overlays is not None else {},
            xfrm=await asyncio.to_thread(self._xfrm.observe),
        )

    async def reconcile(self, desired: Desired, *, fresh: bool = True) -> ReconcileResult:
        """Converge. `fresh=False` plans against what the last reconcile left (no dump):
        for changes made through overlayd itself; the periodic safety net passes True."""
        async with self._lock:
            wanted = desired
            desired, refused = self._supported(desired)
            desired, replaced = _namespaces_replaced(desired)
            applied: list[Op] = []
            for _ in range(_ROUNDS):
                if fresh or self._known is None:
                    observed = await self.observe(desired)
                else:
                    paths = {e.netns_path for e in desired.endpoints}
                    observed = replace(
                        self._known, live_netns=frozenset(p for p in paths if is_netns(p))
                    )
                failures: list[str] = []
                failed: list[Op] = []
                state = observed
                ops, verdict = plan_assessed(desired, observed, run_dir=self.run_dir or "",
                                             nft=self.nft)  # fmt: skip
                xfrm_failed = False
                if ops:
                    self._known = None  # until the round is through (or if it is cancelled)
                for op in ops:
                    if xfrm_failed and isinstance(op, ProgramXfrm):
                        failures.append(f"{_describe(op)}: held back, an earlier xfrm change "
                                        "failed (removals only after every addition)")  # fmt: skip
                        failed.append(op)
                        continue
                    if _cleartext_risk(op, state):
                        failures.append(f"{_describe(op)}: its ESP policies are not in place; "
                                        "not made, so that nothing leaves in cleartext")  # fmt: skip
                        failed.append(op)
                        continue
                    try:
                        await self._apply_whole(op)
                    except Exception as e:  # report, re-observe, never crash the daemon
                        log.warning("dataplane op failed: %r: %s", op, e)
                        failures.append(f"{_describe(op)}: {e}")
                        failed.append(op)
                        xfrm_failed = xfrm_failed or isinstance(op, ProgramXfrm)
                        continue
                    applied.append(op)
                    try:
                        state = after(state, op)
                    except Exception as e:  # an earlier op it builds on failed: the model
                        # no longer knows the kernel; later ops still run, the next round
                        # plans from a fresh dump
                        log.warning("dataplane state lost track after %r: %r", op, e)
                        failures.append(f"{_describe(op)}: applied, but on an unexpected base")
                        failed.append(op)
                self._known = None if failures else state
                if not failures:
                    break
                fresh = True
            if applied:
                log.info("dataplane applied: %s", ", ".join(_describe(op) for op in applied))
            usable = [*verdict.endpoints, *(e for eps in verdict.overlay.endpoints.values()
                                            for e in eps)]  # fmt: skip
            blocked, host_wide = not_in_place(wanted, usable, [*verdict.gone, *replaced],
                                              failed, self.run_dir or "")  # fmt: skip
            return ReconcileResult(
                applied=tuple(applied),
                gone=(*verdict.gone, *replaced),
                errors=tuple(refused + verdict.problems + failures),
                warnings=tuple(verdict.warnings),
                not_in_place=blocked,
                host_wide_failure=host_wide,
            )

    def _supported(self, desired: Desired) -> tuple[Desired, list[str]]:
        """Without a run_dir: the desired state minus overlays, and why."""
        if self._overlays is not None or not (desired.overlays or desired.peers):
            return desired, []
        nets = {o.network_id for o in desired.overlays}
        refused = [f"overlay network {n}: this Dataplane has no run_dir" for n in sorted(nets)]
        eps = frozenset(e for e in desired.endpoints if e.network_id not in nets)
        return replace(desired, overlays=frozenset(), peers=frozenset(), endpoints=eps), refused

    async def _apply_whole(self, op: Op) -> None:
        """Run op to its end even if the caller is cancelled (a stop): some ops run in a
        thread on a sandbox's netlink socket, and the next reconcile must not share that
        socket with a thread still waiting for its replies; others would be left half
        made. The lock is held until then."""
        task = asyncio.ensure_future(self._apply(op))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await task
            raise

    async def _apply(self, op: Op) -> None:
        if isinstance(op, ApplyNft):
            await nftables.apply(op.ruleset)
        elif isinstance(op, EnableIpForward):
            sysctl.enable_ip_forward()
        elif isinstance(op, EnableBridgeNetfilter):
            sysctl.enable_bridge_netfilter()
        elif isinstance(op, ProgramXfrm):
            await asyncio.to_thread(self._xfrm.apply, op)
        elif isinstance(op, _OVERLAY_OPS) or getattr(op, "netns", None) is not None:
            assert self._overlays is not None  # plan() had no overlays otherwise
            await self._overlays.apply(op, self._netlink.host)
        else:
            await self._netlink.apply(op)

    async def close(self) -> None:
        """Releases the netlink sockets; kernel state stays (a restart must not cut traffic)."""
        async with self._lock:
            if self._overlays is not None:
                await self._overlays.close()
            await self._netlink.close()
            self._xfrm.close()


def _namespaces_replaced(desired: Desired) -> tuple[Desired, list[EndpointSpec]]:
    """Endpoints whose path now names another namespace than the one connected (a
    /proc/PID/ns/net whose PID was reused, a /run/netns name made again): that container
    is gone, and nothing may be made in the namespace that took its place."""
    moved = [
        e for e in desired.endpoints
        if e.netns_key is not None and netns_key(e.netns_path) not in (None, e.netns_key)
    ]  # fmt: skip
    if not moved:
        return desired, []
    return replace(desired, endpoints=desired.endpoints - frozenset(moved)), moved


def _cleartext_risk(op: Op, state: Observed) -> bool:
    """A vxlan device of an encrypted network is only ever made behind its policies."""
    return (isinstance(op, CreateVxlan) and op.spec.encrypted
            and not policies_ready(state.xfrm, op.spec.dstport))  # fmt: skip


def _describe(op: Op) -> str:
    if isinstance(op, ApplyNft):
        return "ApplyNft"
    return repr(op)
