"""Dataplane: observe → plan → apply, serialized, for the namespace this process runs in.

The same call serves start-up (adopt what a previous run left), every change and the
periodic safety net. An op that fails is not retried blindly: the kernel is dumped and
planned again once, and whatever still fails is reported, to be retried on the next call.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from . import nftables, sysctl
from .effects import after
from .model import (
    ApplyNft,
    Desired,
    EnableIpForward,
    EndpointSpec,
    Observed,
    Op,
)
from .netlink import Netlink
from .netns import is_netns
from .plan import assess, plan

log = logging.getLogger(__name__)

_ROUNDS = 2  # a failed round is followed by one fresh dump + plan


@dataclass(frozen=True)
class ReconcileResult:
    applied: tuple[Op, ...]  # ops that succeeded, in order
    gone: tuple[EndpointSpec, ...]  # desired endpoints whose netns no longer exists
    errors: tuple[str, ...]  # failed ops and desired objects that cannot be realized

    @property
    def ok(self) -> bool:
        return not self.errors


class Dataplane:
    """Use from one event loop; reconcile() calls are serialized by a lock."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._netlink = Netlink()
        # The kernel as last dumped, carried forward through the effects of our own
        # successful ops; None forces a dump.
        self._known: Observed | None = None

    async def observe(self, desired: Desired) -> Observed:
        paths = {e.netns_path for e in desired.endpoints}
        return Observed(
            links=await self._netlink.observe(),
            live_netns=frozenset(p for p in paths if is_netns(p)),
            nft=await nftables.observe(),
            ip_forward=sysctl.ip_forward(),
        )

    async def reconcile(self, desired: Desired, *, fresh: bool = True) -> ReconcileResult:
        """Converge. `fresh=False` plans against what the last reconcile left (no dump):
        for changes made through overlayd itself; the periodic safety net passes True."""
        async with self._lock:
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
                state = observed
                for op in plan(desired, observed):
                    try:
                        await self._apply(op)
                    except Exception as e:  # report, re-observe, never crash the daemon
                        log.warning("dataplane op failed: %r: %s", op, e)
                        failures.append(f"{_describe(op)}: {e}")
                    else:
                        applied.append(op)
                        state = after(state, op)
                self._known = None if failures else state
                if not failures:
                    break
                fresh = True
            verdict = assess(desired, observed)
            return ReconcileResult(
                applied=tuple(applied),
                gone=tuple(verdict.gone),
                errors=tuple(verdict.problems + failures),
            )

    async def _apply(self, op: Op) -> None:
        if isinstance(op, ApplyNft):
            await nftables.apply(op.ruleset)
        elif isinstance(op, EnableIpForward):
            sysctl.enable_ip_forward()
        else:
            await self._netlink.apply(op)

    async def close(self) -> None:
        """Releases the netlink socket; kernel state stays (a restart must not cut traffic)."""
        async with self._lock:
            await self._netlink.close()


def _describe(op: Op) -> str:
    if isinstance(op, ApplyNft):
        return "ApplyNft"
    return repr(op)
