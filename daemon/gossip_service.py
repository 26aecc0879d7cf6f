"""GossipService: this node's gossip agent, driven by the swarm state and local endpoints.

The raft store says which endpoints exist (address allocations, durable); gossip says,
within a second, which hosts are alive and spreads endpoint records in milliseconds. The
data plane takes a remote endpoint when either source has it and gossip does not hold its
host dead: a host killed loses its FDB entries on peers as soon as SWIM declares it dead,
a restart never empties the tables while gossip is still joining.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING

from daemon.logs import get_logger
from daemon.records import EndpointRecord as LocalEndpoint
from daemon.store import Store
from daemon.swarm import GOSSIP_PORT, SwarmService
from dataplane.reach import host_answers
from gossip.events import (
    EndpointEvent,
    MemberAlive,
    MemberDead,
    MemberEvent,
    MemberLeft,
    MemberSuspect,
)
from gossip.messages import EndpointRecord, State

if TYPE_CHECKING:
    from gossip.agent import GossipAgent

log = get_logger("overlayd.gossip")

REJOIN_EVERY = 5.0  # seconds between attempts to reach swarm nodes gossip does not know
SEEN_FOR = 5.0  # how long the echo sent at suspicion time stands for the host's kernel


class GossipService:
    def __init__(
        self,
        swarm: SwarmService,
        store: Store,
        local_endpoints: Callable[[], list[LocalEndpoint]],
        on_change: Callable[[], None],
        port: int = GOSSIP_PORT,
    ) -> None:
        self._swarm = swarm
        self._store = store
        self._local_endpoints = local_endpoints
        self._on_change = on_change
        self.port = port
        self.agent: GossipAgent | None = None
        self._keys: tuple[str, ...] = ()
        self._published: dict[tuple[str, str], EndpointRecord] = {}
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Hosts gossip holds dead whose kernel still answers (only the daemon is down):
        # their endpoints stay programmed. Re-probed until gossip sees them again.
        self._kernel_alive: dict[str, bool] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        # an echo sent to a suspect's host as soon as it is suspected: (when, answered)
        self._suspect_checks: dict[str, asyncio.Task[None]] = {}
        self._kernel_seen: dict[str, tuple[float, bool]] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gossip")

    async def stop(self) -> None:
        probes = [*self._probes.values(), *self._suspect_checks.values()]
        for task in probes:
            task.cancel()
        for task in probes:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # No leave: peers must keep this host's entries while it restarts.
        await self._stop_agent(leave=False)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_join = 0.0
        joining: asyncio.Task[None] | None = None
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                self.wake.clear()
                try:
                    await self._sync()
                    idle = joining is None or joining.done()
                    if self.agent is not None and idle and loop.time() - last_join > REJOIN_EVERY:
                        last_join = loop.time()
                        # in the background: a join to a down host can take the stream
                        # timeout (5 s), and publishing must not wait for it
                        joining = asyncio.create_task(self._join_missing())
                except Exception as exc:  # the next round retries
                    log.warning("gossip sync failed", error=str(exc))
        finally:
            if joining is not None:
                joining.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await joining

    async def _stop_agent(self, leave: bool) -> None:
        agent, self.agent = self.agent, None
        self._published.clear()
        self._keys = ()
        if agent is not None:
            await agent.stop(leave=leave)
            self._on_change()

    # --- following the swarm ------------------------------------------------------------------

    async def _sync(self) -> None:
        state = self._swarm.view()
        ident = self._swarm.identity
        ring = state.keyrings.get("gossip") if state is not None else None
        if ident is None or state is None or ring is None or not ring.keys:
            await self._stop_agent(leave=ident is None)
            return
        keys = tuple(ring.keys)
        if self.agent is None:
            await self._start_agent(ident.node_id, ident.data_addr, keys, ring.primary or keys[-1])
        elif keys != self._keys:
            assert ring.primary is not None
            self.agent.set_keys([bytes.fromhex(k) for k in keys], bytes.fromhex(ring.primary))
            self._keys = keys
        self._publish_local(ident.data_addr)

    async def _start_agent(self, name: str, addr: str, keys: tuple[str, ...], primary: str) -> None:
        from gossip.agent import GossipAgent  # with its crypto, only once in a swarm

        epoch = int(self._store.get_meta("gossip_epoch") or "0") + 1
        self._store.commit(put_meta={"gossip_epoch": str(epoch)})
        agent = GossipAgent(
            name,
            [bytes.fromhex(k) for k in keys],
            primary=bytes.fromhex(primary),
            bind_addr="0.0.0.0",
            bind_port=self.port,
            advertise_addr=addr,
            on_member=self._member_event,
            on_entry=self._entry_event,
            epoch=epoch,
        )
        await agent.start()
        self.agent = agent
        self._keys = keys
        # Our own entries first, then join: peers see no remove/add flap on a restart.
        self._publish_local(addr)
        await self._join_missing()
        log.info("gossip started", addr=addr, port=self.port)

    async def _join_missing(self) -> None:
        state, agent = self._swarm.view(), self.agent
        ident = self._swarm.identity
        if state is None or agent is None or ident is None:
            return
        alive = {m.name for m in agent.members() if m.state == State.ALIVE}
        seeds = [f"{n.addr}:{self.port}" for n in state.nodes.values()
                 if n.id != ident.node_id and n.addr and n.id not in alive]  # fmt: skip
        if seeds:
            with contextlib.suppress(Exception):
                await agent.join(seeds)

    def _publish_local(self, vtep: str) -> None:
        """Make the agent's networks and our entries match the local endpoints."""
        agent = self.agent
        if agent is None:
            return
        want: dict[tuple[str, str], EndpointRecord] = {}
        for ep in self._local_endpoints():
            ip = IPv4Interface(ep.ipv4).ip if ep.ipv4 else None
            if ip is None:
                continue
            want[(ep.network_id, ep.id)] = EndpointRecord(
                endpoint_id=ep.id, ip=str(ip), mac=ep.mac, vtep=vtep,
                name=ep.container_name, aliases=tuple(ep.aliases),
            )  # fmt: skip
        nets = {net for net, _ in want}
        for net in nets - agent.networks():
            agent.join_network(net)
        published: dict[tuple[str, str], EndpointRecord] = {}
        for key, rec in want.items():
            if self._published.get(key) == rec:
                published[key] = rec
                continue
            try:
                agent.put_entry(key[0], key[1], rec)
            except ValueError as exc:  # one record the wire cannot carry: the others still go
                log.warning("endpoint not published", endpoint=key[1], error=str(exc))
                continue
            published[key] = rec
        for key in set(self._published) - set(published):
            with contextlib.suppress(ValueError, KeyError):
                agent.delete_entry(key[0], key[1])
        for net in agent.networks() - nets:
            agent.leave_network(net)
        self._published = published

    # --- events ------------------------------------------------------------------------------

    def _member_event(self, event: MemberEvent) -> None:
        if isinstance(event, MemberSuspect):
            # ask the host's kernel now, so the answer is in when (if) the verdict comes
            if event.name not in self._suspect_checks:
                task = asyncio.create_task(self._check_suspect(event.name))
                self._suspect_checks[event.name] = task
            return
        if isinstance(event, MemberAlive):
            self._kernel_seen.pop(event.name, None)
        if isinstance(event, MemberDead):
            log.info("gossip: host's daemon unreachable", node=event.name)
            # presumed alive until its kernel fails to answer: a daemon that restarts more
            # slowly than gossip declares it dead must not cut its endpoints off (also when a
            # probe from an earlier death is still running with an old verdict). The echo
            # sent when it was suspected may have answered that already.
            seen = self._kernel_seen.pop(event.name, None)
            fresh = seen is not None and asyncio.get_running_loop().time() - seen[0] < SEEN_FOR
            self._kernel_alive[event.name] = seen[1] if fresh and seen is not None else True
            if not self._kernel_alive[event.name]:
                self._on_change()  # its entries go now, not after one more echo
            if event.name not in self._probes:
                self._probes[event.name] = asyncio.create_task(self._probe(event.name))
            return  # the probe decides whether its endpoints go
        if isinstance(event, MemberLeft):
            log.info("gossip: host left", node=event.name)
        self._on_change()

    async def _check_suspect(self, node_id: str) -> None:
        try:
            state = self._swarm.view()
            node = state.nodes.get(node_id) if state is not None else None
            if node is not None and node.addr:
                up = await host_answers(node.addr)
                self._kernel_seen[node_id] = (asyncio.get_running_loop().time(), up)
        finally:
            self._suspect_checks.pop(node_id, None)

    async def _probe(self, node_id: str) -> None:
        """While gossip holds `node_id` dead, ask its kernel: an echo reply means only the
        daemon is down and its endpoints keep working. Ends when gossip sees the node
        again or the swarm no longer has it."""
        try:
            while self.agent is not None and not self._gossip_alive(node_id):
                state = self._swarm.view()
                node = state.nodes.get(node_id) if state is not None else None
                if node is None or not self._gossip_knows(node_id):
                    break
                up = bool(node.addr) and await host_answers(node.addr)
                if up != self._kernel_alive.get(node_id):
                    self._kernel_alive[node_id] = up
                    log.info("gossip: dead daemon's host", node=node_id, kernel_answers=up)
                    self._on_change()
                await asyncio.sleep(1.0)
        finally:
            self._probes.pop(node_id, None)
            if self._kernel_alive.pop(node_id, False):
                self._on_change()

    def _state_of(self, node_id: str) -> State | None:
        """The member's gossip state; None when gossip does not know it (or is not running)."""
        agent = self.agent
        if agent is None:
            return None
        return next((m.state for m in agent.members() if m.name == node_id), None)

    def _gossip_knows(self, node_id: str) -> bool:
        return self._state_of(node_id) is not None

    def _gossip_alive(self, node_id: str) -> bool:
        return self._state_of(node_id) in (State.ALIVE, State.SUSPECT)

    def _entry_event(self, event: EndpointEvent) -> None:
        self._on_change()

    # --- what the data plane asks --------------------------------------------------------------

    def liveness(self) -> dict[str, bool]:
        """Hosts gossip knows: alive (or suspect: still reachable as far as we know) or not."""
        agent = self.agent
        if agent is None:
            return {}
        return {
            m.name: m.state in (State.ALIVE, State.SUSPECT) or self._kernel_alive.get(m.name, False)
            for m in agent.members()
        }

    def is_dead(self, node_id: str) -> bool:
        """Gossip declared this node's daemon dead (whatever its kernel does)."""
        return self._state_of(node_id) == State.DEAD

    def remote_entries(self, network_ids: set[str]) -> list[tuple[str, EndpointRecord]]:
        """(network, record) of other hosts' endpoints on those networks."""
        agent = self.agent
        if agent is None:
            return []
        out = []
        for net in network_ids & agent.networks():
            for ep_id, rec in agent.entries(net).items():
                if (net, ep_id) not in self._published:
                    out.append((net, rec))
        return out

    def members(self) -> list[tuple[str, str]]:
        agent = self.agent
        return [(m.name, m.state.name.lower()) for m in agent.members()] if agent else []

    def table_sizes(self) -> dict[str, int]:
        return self.agent.table_sizes() if self.agent is not None else {}

    def stats(self) -> dict[str, int]:
        return self.agent.stats() if self.agent is not None else {}

