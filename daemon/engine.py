"""The engine: owns the store, the services and the background tasks; the only place layers meet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from ipaddress import IPv4Network

from prometheus_client import CollectorRegistry

from daemon.cluster_metrics import ClusterCollector
from daemon.config import Config
from daemon.events import EventBus
from daemon.gossip_service import GossipService
from daemon.logs import get_logger
from daemon.memory import release_free_memory
from daemon.networks import Convergence, NetworkService
from daemon.store import Store
from daemon.swarm import SwarmService
from daemon.swarm_networks import SwarmNetworkAdapter
from dataplane.layout import run_dir_for
from dataplane.model import Desired
from dataplane.netns import ContainerNetns, free_ifname, host_netns_keys, resolve_container
from dataplane.probe import address_mtu, default_route_address, host_routes
from dataplane.reconciler import Dataplane
from dataplane.sysctl import policy_bypasses
from dataplane.xfrm import esp_support

log = get_logger("overlayd.engine")

VERSION = "0.1.0"
RECONCILE_INTERVAL = 5.0  # seconds between safety-net reconciles
FRESH_AT_LEAST_EVERY = 30.0  # a full kernel dump at least this often, busy or not
FLUSH_DELAY = 0.05  # a committed change is fsynced within this (see daemon/store.py)


@dataclass(frozen=True)
class SwarmInfo:
    """This node's swarm membership, as /info and /_ping report it."""

    local_node_state: str = "inactive"
    node_id: str = ""
    node_addr: str = ""
    control_available: bool = False

    @property
    def ping_header(self) -> str:
        if self.local_node_state != "active":
            return self.local_node_state
        return "active/manager" if self.control_available else "active/worker"


_UNKNOWN = object()


class _KernelAdapter:
    """Binds the data plane to the NetworkService's Kernel protocol."""

    def __init__(self, dataplane: Dataplane) -> None:
        self._dataplane = dataplane
        self.routes: list[IPv4Network] = []  # refreshed at start and by the safety net
        self._esp: object = _UNKNOWN  # the kernel's answer, asked once

    def host_routes(self) -> list[IPv4Network]:
        return self.routes

    def resolve_container(self, ref: str) -> ContainerNetns:
        return resolve_container(ref)

    async def free_ifname(self, netns_path: str, taken: set[str]) -> str:
        return await free_ifname(netns_path, taken=taken)

    def host_netns_keys(self) -> frozenset[str]:
        return host_netns_keys()

    def ipsec_gaps(self) -> list[str]:
        """Policy bypasses that nothing covers: the nft guard drops cleartext on the
        encrypted port unless overlayd runs with --iptables false."""
        return [] if self._dataplane.nft else policy_bypasses()

    def esp_support(self) -> str | None:
        if self._esp is _UNKNOWN:
            try:
                self._esp = esp_support()  # the kernel's verdict: asked once
            except OSError as e:
                return f"could not ask the kernel: {e}"  # no verdict: ask again next time
        return self._esp  # type: ignore[return-value]

    def link_exists(self, ifname: str) -> bool:
        try:
            socket.if_nametoindex(ifname)
        except OSError:
            return False
        return True

    async def converge(self, desired: Desired, fresh: bool) -> Convergence:
        if fresh:
            self.routes = await host_routes()
        result = await self._dataplane.reconcile(desired, fresh=fresh)
        return Convergence(
            gone=frozenset(e.endpoint_id for e in result.gone),
            errors=result.errors,
            not_in_place=result.not_in_place,
            host_wide_failure=result.host_wide_failure,
        )


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_ns = time.time_ns()
        self.metrics = CollectorRegistry()
        self.events = EventBus()
        self._unsynced = asyncio.Event()
        self.store = Store(config.state_path, on_commit=self._unsynced.set)
        self.dataplane = Dataplane(run_dir=run_dir_for(config.state_dir), nft=config.iptables)
        self.kernel = _KernelAdapter(self.dataplane)
        self.networks = NetworkService(self.store, self.kernel, self.events)
        self.swarm_service = SwarmService(
            config.state_path, config.hostname, lambda: self.advertise_addr,
            on_change=self._swarm_changed,
        )  # fmt: skip
        self.swarm_networks = SwarmNetworkAdapter(self.swarm_service)
        self.networks.swarm = self.swarm_networks
        self.gossip = GossipService(
            self.swarm_service, self.store, self.networks.swarm_endpoints,
            on_change=self.networks.changed.set,
        )  # fmt: skip
        self.metrics.register(ClusterCollector(self.swarm_service, self.gossip))
        self.swarm_networks.liveness = self.gossip.liveness
        self.swarm_service.node_gone = self.gossip.is_dead
        self.swarm_networks.remote_entries = self.gossip.remote_entries
        self.node_identity = self._identity()
        self.advertise_addr = config.advertise_addr
        self._tasks: list[asyncio.Task[None]] = []
        self._gwbridge_task: asyncio.Task[None] | None = None

    def _identity(self) -> str:
        """A stable engine ID (Docker's /info `ID`), created once per state dir."""
        ident = self.store.get_meta("engine_id")
        if ident is None:
            ident = str(uuid.uuid4())
            self.store.commit(put_meta={"engine_id": ident})
        return ident

    @property
    def swarm(self) -> SwarmInfo:
        svc = self.swarm_service
        ident = svc.identity
        return SwarmInfo(
            local_node_state=svc.local_state,
            node_id=ident.node_id if ident else "",
            node_addr=ident.data_addr if ident else "",
            control_available=svc.control_available,
        )

    def _swarm_changed(self) -> None:
        self.networks.changed.set()  # swarm networks and peers may have changed
        self.gossip.wake.set()  # keys, nodes, membership
        if self.swarm_service.identity is not None and self._gwbridge_task is None:
            self._gwbridge_task = asyncio.create_task(self._ensure_gwbridge())

    async def _ensure_gwbridge(self) -> None:
        try:
            await self.networks.ensure_gwbridge()
        except Exception as exc:  # retried on the next swarm change
            log.warning("could not create docker_gwbridge", error=str(exc))
        finally:
            self._gwbridge_task = None

    async def start(self) -> None:
        self.kernel.routes = await host_routes()  # before the default bridge picks a subnet
        if not self.advertise_addr:
            self.advertise_addr = await default_route_address()
        if self.advertise_addr:
            mtu = await address_mtu(self.advertise_addr)
            self.swarm_networks.underlay_mtu = mtu or self.swarm_networks.underlay_mtu
        # The swarm view first: the start-up reconcile must see the swarm's networks, or it
        # would tear down overlay endpoints that are working.
        await self.swarm_service.start()
        await self.networks.start()
        self.gossip.start()
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="reconcile"))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="flush"))
        self._tasks.append(asyncio.create_task(self._orphan_loop(), name="orphans"))
        log.info("engine started", state_dir=self.config.state_dir, pid=os.getpid())

    async def stop(self) -> None:
        """Stop background work; the kernel state stays so traffic keeps flowing."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.networks.changed.is_set():
            # while the swarm view is still there: without it the overlays would look gone
            await self.networks.converge()  # what was acknowledged reaches the kernel
        await self.gossip.stop()
        await self.swarm_service.stop()
        await self.dataplane.close()
        self.store.close()
        log.info("engine stopped")

    async def _flush_loop(self) -> None:
        """fsync the store shortly after changes: one fsync covers a burst of them."""
        while True:
            await self._unsynced.wait()
            await asyncio.sleep(FLUSH_DELAY)
            self._unsynced.clear()
            await asyncio.to_thread(self.store.sync)

    async def _orphan_loop(self) -> None:
        """Swarm addresses this node holds without an endpoint go back, every few seconds."""
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL)
            if self.swarm_service.identity is None:
                continue
            try:
                await self.networks.release_orphaned_addresses()
            except Exception as exc:  # the next round retries
                log.warning("orphaned address check failed", error=str(exc))

    async def _reconcile_loop(self) -> None:
        """Converge as soon as a change asks for it, and every few seconds regardless."""
        changed = self.networks.changed
        loop = asyncio.get_running_loop()
        last_fresh = loop.time()
        while True:
            idle = False
            try:
                async with asyncio.timeout(RECONCILE_INTERVAL):
                    await changed.wait()
            except TimeoutError:
                idle = True
            # our own change: plan against what we know is there; but re-read the whole
            # kernel now and then even when changes never stop (a busy cluster). Not every
            # 5 s: a full dump holds the data plane for tens of ms, and connects queued
            # behind it showed it (cold first ping 30 -> 70 ms in the bench)
            fresh = idle or loop.time() - last_fresh >= FRESH_AT_LEAST_EVERY
            if fresh:
                last_fresh = loop.time()
            changed.clear()
            self.gossip.wake.set()  # publish local endpoint changes
            try:
                await self.networks.converge(fresh=fresh)
            except Exception as exc:  # the safety net must never die
                log.warning("reconcile failed", error=str(exc))
            if idle:
                release_free_memory()
