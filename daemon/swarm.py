"""SwarmService: this node's part in a swarm — init, join, leave, and the swarm's API.

A manager runs a manager.Manager (raft member, 2377 listener); every node but the
leader keeps a session with the leader (manager.agent), through which workers also
learn the state. The proposer picks everything that varies (IDs, times, keys) so
the replicated commands are deterministic. The node's identity (certificates,
role, the managers it knows) lives in <state-dir>/swarm, written atomically, so a
restart resumes the same membership.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.errors import Conflict, InvalidParameter, NotFound, Unavailable
from daemon.filters import Filters
from daemon.logs import get_logger
from manager import ca_process, certs, tokens
from manager.errors import OverlaydError
from manager.ids import new_node_id
from manager.raft.errors import NotLeader
from manager.state import Node, SwarmNetwork, SwarmState
from manager.timefmt import stamp, utcnow

if TYPE_CHECKING:
    from manager.agent import SessionAgent
    from manager.manager import Credentials, Manager

# The swarm runtime (TLS, X.509, raft, sessions) is imported when this node first takes
# part in a swarm: a daemon that never joins one stays ~8 MB smaller.

log = get_logger("overlayd.swarm")

SWARM_PORT = 2377
GOSSIP_PORT = 7946
DEFAULT_POOL = "10.0.0.0/8"
DEFAULT_SUBNET_SIZE = 24
DEFAULT_DATA_PATH_PORT = 4789
NOT_IN_SWARM = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)
WORKER_NOT_MANAGER = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify "
    "cluster state. Please run this command on a manager node or promote the current "
    "node to a manager."
)
ALREADY_IN_SWARM = (
    'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm '
    "and join another one."
)
NOT_PART_OF_SWARM = "This node is not part of a swarm"
LEAVE_PREFIX = (
    "You are attempting to leave the swarm on a node that is participating as a manager. "
)
LEAVE_LAST_MANAGER = (
    "Removing the last manager erases all current state of the swarm. Use `--force` to "
    "ignore this message."
)
LEAVE_SUFFIX = (
    "The only way to restore a swarm that has lost consensus is to reinitialize it with "
    "`--force-new-cluster`. Use `--force` to suppress this message."
)
DEFAULT_SPEC: dict[str, Any] = {
    "Name": "default",
    "Labels": {},
    "Orchestration": {"TaskHistoryRetentionLimit": 5},
    "Raft": {
        "SnapshotInterval": 10000,
        "KeepOldSnapshots": 0,
        "LogEntriesForSlowFollowers": 500,
        "ElectionTick": 10,
        "HeartbeatTick": 1,
    },
    "Dispatcher": {"HeartbeatPeriod": 1_000_000_000},
    "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000},
    "TaskDefaults": {},
    "EncryptionConfig": {"AutoLockManagers": False},
}
NODE_FILTERS = ("id", "label", "membership", "name", "node.label", "role")


@dataclass
class Identity:
    """What this node persists about its membership."""

    node_id: str
    role: str
    cluster_id: str
    listen_addr: str
    advertise_addr: str  # "ip:port" for the swarm port
    data_addr: str  # the data path (VXLAN) address
    managers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InitRequest:
    listen_addr: str = f"0.0.0.0:{SWARM_PORT}"
    advertise_addr: str = ""
    data_path_addr: str = ""
    data_path_port: int = 0
    force_new_cluster: bool = False
    spec: dict[str, Any] = field(default_factory=dict)
    default_addr_pool: tuple[str, ...] = ()
    subnet_size: int = 0
    availability: str = "active"


@dataclass(frozen=True)
class JoinSwarmRequest:
    remote_addrs: tuple[str, ...]
    join_token: str
    listen_addr: str = f"0.0.0.0:{SWARM_PORT}"
    advertise_addr: str = ""
    data_path_addr: str = ""
    availability: str = "active"


def merge_spec(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """dockerd fills zero values (0, "", null) of a given spec with the defaults."""
    out = dict(defaults)
    for key, value in (given or {}).items():
        base = defaults.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            out[key] = merge_spec(base, value)
        elif value in (None, 0, "") and key in defaults:
            continue
        else:
            out[key] = value
    return out


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _host_port(addr: str, default_port: int) -> tuple[str, int]:
    """ "ip", "ip:port" or ":port" → (ip, port); a clear 400 for anything else."""
    text = addr.strip()
    host, port = text, default_port
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidParameter(f"invalid port in address {addr!r}")
        port = int(port_text)
    if host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise InvalidParameter(
                f"advertise address must be a non-zero IPv4 address or network interface "
                f"(with optional port number): {addr!r}"
            ) from exc
    return host, port


class SwarmService:
    def __init__(
        self,
        state_dir: Path,
        hostname: str,
        advertise_default: Callable[[], str],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.dir = state_dir / "swarm"
        self.hostname = hostname
        self._advertise_default = advertise_default
        self._on_change = on_change
        self.identity: Identity | None = None
        self.creds: Credentials | None = None
        self.manager: Manager | None = None
        self.agent: SessionAgent | None = None
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._renewal: tuple[bytes, dt.datetime] | None = None
        self._tls_info: tuple[bytes, asyncio.Future[dict[str, str]]] | None = None
        self._closed = False
        self._rejoin: asyncio.Task[None] | None = None
        self._fallback_view: SwarmState | None = None
        # Set by the engine to gossip's verdict: the node's daemon is unreachable.
        self.node_gone: Callable[[str], bool] = lambda node_id: False
        self.error = ""
        self.ipsec_epoch = ""  # ours, told to the leader (dataplane.ipsec_plan)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the membership saved in the state dir, if any."""
        ident = self.dir / "node.json"
        if not ident.exists():
            return
        from manager.manager import Credentials

        doc = json.loads(ident.read_text())
        self.identity = Identity(**doc)
        self.creds = Credentials(
            (self.dir / "ca.pem").read_bytes(),
            (self.dir / "cert.pem").read_bytes(),
            (self.dir / "key.pem").read_bytes(),
        )
        try:
            await self._run_role(bootstrap=False)
            if self.manager is not None:
                await self.manager.caught_up_locally()
                if self.manager.storage.last_index() == 0:
                    # Promoted, then stopped before the leader added us: ask again.
                    self._rejoin = asyncio.create_task(self._ask_to_join_raft())
        except Exception as exc:  # bridge networking must come up whatever the swarm does
            self.error = f"could not resume swarm membership: {exc}"
            log.error("swarm resume failed", error=str(exc))

    async def stop(self) -> None:
        self._closed = True  # a role change in flight must not start anything now
        if self._rejoin is not None:
            self._rejoin.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rejoin
        await self._stop_roles()

    async def _stop_roles(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.agent is not None:
            await self.agent.stop()
            self.agent = None
        if self.manager is not None:
            await self.manager.stop()
            self.manager = None

    async def _run_role(self, bootstrap: bool, force_new_cluster: bool = False) -> None:
        from manager.agent import SessionAgent
        from manager.manager import Manager

        assert self.identity is not None and self.creds is not None
        if self._closed:
            return
        ident = self.identity
        ctx = self.creds.client_context()
        if ident.role == "manager":
            host, port = _host_port(ident.listen_addr, SWARM_PORT)
            self.manager = Manager(
                self.dir,
                self.creds,
                (host or "0.0.0.0", port),
                ident.advertise_addr,
                bootstrap=bootstrap,
                force_new_cluster=force_new_cluster,
                on_change=self._changed,
                node_gone=lambda node_id: self.node_gone(node_id),
            )
            await self.manager.start()
        self.ipsec_epoch = await self._ipsec_epoch(ident.data_addr)
        self.agent = SessionAgent(
            ident.node_id,
            ident.data_addr,
            ident.managers,
            ctx,
            want_state=ident.role != "manager",
            ipsec_epoch=self.ipsec_epoch,
            on_state=self._took_state,
            on_managers=self._remember_managers,
            on_removed=self._removed,
            on_connected=self._session_up,
        )
        if ident.role != "manager":
            self.agent.state = self._freshest_view()
        self.agent.start()
        self._watch = asyncio.create_task(self._watch_role(), name="swarm-role")

    async def _ipsec_epoch(self, vtep: str) -> str:
        """Kept while the kernel still holds outbound SAs made with it (a restarted daemon
        must not re-key its peers); new and random otherwise (after a reboot, or a new
        membership: the SAs' sequence numbers start again, so their keys must be new)."""
        from dataplane.xfrm import sends_esp_from
        from manager.state import valid_epoch

        path = self.dir / "ipsec_epoch"
        try:
            saved = path.read_text().strip()
        except OSError:
            saved = ""
        try:
            in_use = await asyncio.to_thread(sends_esp_from, ipaddress.IPv4Address(vtep))
        except (OSError, ValueError):
            in_use = False
        if valid_epoch(saved) and in_use:
            return saved
        epoch = os.urandom(8).hex()
        _write_atomic(path, epoch.encode())
        return epoch

    def _changed(self) -> None:
        self._on_change()

    def _session_up(self) -> None:
        if self.error.startswith("this node was removed"):
            self.error = ""  # a transient refusal (a new leader still applying our join)
            self._on_change()

    def _removed(self) -> None:
        """The managers no longer know this node (`docker node rm`): say so, as dockerd's
        error state does; `docker swarm leave` clears it."""
        if not self.error:
            log.warning("this node was removed from the swarm")
        self.error = "this node was removed from the swarm; run docker swarm leave"
        self._on_change()

    def _took_state(self, state: SwarmState) -> None:
        """A worker keeps the last state it was sent: after a restart it knows its
        networks and peers at once, so the data plane is not torn down while the
        session to the leader is being re-established."""
        try:
            _write_atomic(self.dir / "view.json", state.snapshot())
        except OSError as exc:
            log.warning("could not save the swarm view", error=str(exc))
        self._changed()

    def _freshest_view(self) -> SwarmState | None:
        """A worker's state until the leader sends one: the saved view, or, just after a
        demotion, the manager's own state if newer (a manager never writes view.json, so
        the file is from before it was promoted)."""
        from manager.manager import worker_view

        saved, held = self._load_view(), self._fallback_view
        if held is not None and (saved is None or held.applied_index > saved.applied_index):
            view = SwarmState.restore(worker_view(held))  # no CA key, no tokens on disk
            self._took_state(view)
            return view
        return saved

    def _load_view(self) -> SwarmState | None:
        try:
            return SwarmState.restore((self.dir / "view.json").read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remember_managers(self, managers: list[str]) -> None:
        if self.identity is not None and managers != self.identity.managers:
            self.identity.managers = managers
            self._save_identity()

    def _save_identity(self) -> None:
        assert self.identity is not None
        _write_atomic(self.dir / "node.json", json.dumps(self.identity.__dict__).encode())

    def _save_creds(self, creds: Credentials) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(self.dir / "ca.pem", creds.ca_pem, 0o644)
        _write_atomic(self.dir / "cert.pem", creds.cert_pem, 0o644)
        _write_atomic(self.dir / "key.pem", creds.key_pem)
        self.creds = creds

    async def _watch_role(self) -> None:
        """Follow promotions and demotions the cluster decides for this node."""
        while True:
            await asyncio.sleep(0.5)
            state = self.view()
            if state is None or self.identity is None:
                continue
            me = state.nodes.get(self.identity.node_id)
            if me is None:
                continue
            try:
                due = self.creds is not None and utcnow() >= self._renew_at()
                if me.role == self.identity.role and not due:
                    continue
                await self._switch_role(me.role)
            except Exception as exc:  # retried a little later
                log.warning("certificate or role change failed", role=me.role, error=str(exc))
                await asyncio.sleep(5.0)

    def _renew_at(self) -> dt.datetime:
        """When this node's certificate is renewed: at 50-80 % of its life (swarmkit's
        rule), picked once per certificate."""
        assert self.creds is not None
        if self._renewal is None or self._renewal[0] != self.creds.cert_pem:
            facts = self.creds.facts()
            self._renewal = (self.creds.cert_pem, certs.renewal_time(facts, random.Random()))
        return self._renewal[1]

    async def tls_info(self) -> dict[str, str]:
        """Docker's TLSInfo for this swarm's root CA, read once per CA in a child process
        (the daemon loads no X.509 parser); concurrent first callers share that child. If
        it fails, the root itself is still shown and the next call tries again."""
        if self.creds is None:
            return {}
        pem = self.creds.ca_pem
        entry = self._tls_info
        if entry is None or entry[0] != pem or _failed(entry[1]):
            entry = self._tls_info = (pem, asyncio.ensure_future(_read_tls_info(pem)))
        try:
            return await asyncio.shield(entry[1])
        except (ca_process.HelperError, certs.CertificateError, OSError) as exc:
            log.warning("could not read the root CA's subject and key", error=str(exc))
            return {"TrustRoot": pem.decode(), "CertIssuerSubject": "", "CertIssuerPublicKey": ""}

    async def _switch_role(self, role: str) -> None:
        from manager.manager import Credentials

        assert self.identity is not None and self.agent is not None
        key_pem, csr = await ca_process.new_request()
        cert = await self.agent.call({"op": "renew", "csr": csr})
        async with self._lock:
            assert self.creds is not None
            creds = Credentials(self.creds.ca_pem, str(cert).encode(), key_pem)
            if creds.identity().role != role:
                return
            same = role == self.identity.role  # a renewal: same role, same raft membership
            old_creds, old_identity = self.creds, Identity(**self.identity.__dict__)
            self._fallback_view = self.view()  # served until a new manager has caught up
            if self.manager is not None and not same:
                await self.manager.leave_gracefully()
                if role == "worker":
                    await self._leave_raft()  # while our raft node still answers
            watch, self._watch = self._watch, None
            await self._stop_roles()
            try:
                self._save_creds(creds)
                self.identity.role = role
                if role == "manager":
                    ip = self.identity.data_addr
                    port = _host_port(self.identity.listen_addr, SWARM_PORT)[1]
                    self.identity.advertise_addr = f"{ip}:{port}"
                self._save_identity()
                if role == "manager" and not same:
                    self._drop_raft_log()  # a fresh log from the leader
                await self._run_role(bootstrap=False)
                if role == "manager" and not same:
                    await self._ask_to_join_raft()
            except BaseException as exc:
                # Back to what worked: the old role, its certificate, its data plane view.
                log.warning("role change failed; staying as before", role=role, error=str(exc))
                await self._stop_roles()
                self._save_creds(old_creds)
                self.identity = old_identity
                self._save_identity()
                if not self._closed:
                    await self._run_role(bootstrap=False)  # with a watcher of its own
                if watch is not None:
                    watch.cancel()  # this (old) watcher ends at its next await
                raise
            if role == "worker" and not same:
                self._drop_raft_log()  # a worker keeps no copy of the CA key
            log.info("certificate renewed" if same else "role changed", role=role)
            if watch is not None:
                watch.cancel()

    def _drop_raft_log(self) -> None:
        for leftover in ("raft.db", "raft.db-wal", "raft.db-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / leftover).unlink()

    async def _leave_raft(self) -> None:
        """Ask the leader to take this node out of the raft voters, and wait for it."""
        manager = self.manager
        assert manager is not None
        if manager.node.core.conf_state.voters == {manager.raft_id}:
            return  # nobody else left to ask (never the case for a demotion)

        def leader() -> list[str]:
            addr = manager.leader_addr()
            return [addr] if addr and addr != manager.advertise else []

        await self._ask_raft_group({"op": "raft.leave"}, leader, "leave")

    async def _ask_to_join_raft(self) -> None:
        ident = self.identity
        assert self.manager is not None and ident is not None
        await self._ask_raft_group(
            {"op": "raft.join", "addr": ident.advertise_addr},
            lambda: [a for a in ident.managers if a != ident.advertise_addr],  # as learned
            "join",
        )

    async def _ask_raft_group(self, request: dict[str, Any], targets: Callable[[], list[str]],
                              what: str) -> None:  # fmt: skip
        """`request` to the first of `targets()` (asked again each round) that takes it,
        for up to 15 s: a leader may be changing meanwhile."""
        from manager import rpc

        assert self.creds is not None
        ctx = self.creds.client_context()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        last: Exception | None = None
        while loop.time() < deadline:
            for addr in targets():
                try:
                    await rpc.call(addr, ctx, request)
                    return
                except (NotLeader, OverlaydError) as exc:
                    last = exc
            await asyncio.sleep(0.2)
        raise Unavailable(f"could not {what} the raft group: {last}")

    # --- views ----------------------------------------------------------------------

    @property
    def local_state(self) -> str:
        if self.error:
            return "error"
        if self.identity is None:
            return "inactive"
        if self.identity.role == "worker" and (self.agent is None or self.agent.state is None):
            return "pending"
        return "active"

    @property
    def control_available(self) -> bool:
        return self.manager is not None

    def view(self) -> SwarmState | None:
        """The freshest state this node holds (not a linearizable read)."""
        if self.manager is not None:
            state = self.manager.state
            fallback = self._fallback_view
            if fallback is not None and (state.cluster is None
                                         or state.applied_index < fallback.applied_index):
                return fallback  # a new manager's log is still arriving
            return state
        if self.agent is not None:
            return self.agent.state
        return None

    def require_manager(self) -> Manager:
        if self.identity is None:
            raise Unavailable(NOT_IN_SWARM)
        if self.manager is None:
            raise Unavailable(WORKER_NOT_MANAGER)
        return self.manager

    async def read(self) -> SwarmState:
        return await self.require_manager().read()

    async def propose(self, cmd: dict[str, Any]) -> Any:
        return await self.require_manager().propose(cmd)

    async def call_managers(self, cmd: dict[str, Any]) -> Any:
        """A write any node may ask for (endpoint IPs): local raft or a manager's."""
        if self.manager is not None:
            return await self.manager.propose(cmd)
        if self.agent is None:
            raise Unavailable(NOT_IN_SWARM)
        # One request ID for every retry: a commit whose answer was lost is not redone.
        return await self.agent.call({"op": "propose", "cmd": cmd, "rid": os.urandom(8).hex()})

    def leader_id(self) -> str | None:
        return self.manager.leader_node_id() if self.manager is not None else None

    def reachability(self, node: Node) -> str:
        if self.manager is None or node.role != "manager":
            return "unknown"
        return "reachable" if self.manager.reachable(node.id) else "unreachable"

    # --- init / join / leave --------------------------------------------------------------

    async def init(self, req: InitRequest) -> str:
        async with self._lock:
            if self.identity is not None and not req.force_new_cluster:
                raise Unavailable(ALREADY_IN_SWARM)
            if req.force_new_cluster and self.identity is not None:
                return await self._force_new_cluster()
            return await self._init(req)

    def _addresses(self, listen_addr: str, advertise_addr: str,
                   data_path_addr: str) -> tuple[str, str, str]:  # fmt: skip
        """("ip:port" to listen on, "ip:port" others dial, data-path ip), as dockerd picks
        them: the advertise address defaults to a specific listen address, then to the
        default-route interface's; the data path defaults to the advertise address."""
        listen_host, listen_port = _host_port(listen_addr or f"0.0.0.0:{SWARM_PORT}", SWARM_PORT)
        adv_host, adv_port = _host_port(advertise_addr or "", listen_port)
        adv_host = adv_host or (listen_host if listen_host not in ("", "0.0.0.0") else "")
        adv_host = adv_host or self._advertise_default()
        if not adv_host:
            raise InvalidParameter(
                "could not choose an IP address to advertise since this system has no "
                "default route; use --advertise-addr"
            )
        data_addr = _host_port(data_path_addr, 0)[0] if data_path_addr else adv_host
        return f"{listen_host or '0.0.0.0'}:{listen_port}", f"{adv_host}:{adv_port}", data_addr

    async def _init(self, req: InitRequest) -> str:
        listen, advertise, data_addr = self._addresses(
            req.listen_addr, req.advertise_addr, req.data_path_addr
        )
        pools = list(req.default_addr_pool) or [DEFAULT_POOL]
        size = req.subnet_size or DEFAULT_SUBNET_SIZE
        for pool in pools:
            try:
                net = ipaddress.IPv4Network(pool)
            except ValueError as exc:
                raise InvalidParameter(f"invalid default address pool {pool!r}: {exc}") from exc
            if not net.prefixlen <= size <= 29:
                raise InvalidParameter(
                    f"invalid SubnetSize {size} for address pool {pool}: it must be between "
                    f"{net.prefixlen} and 29"
                )
        port = req.data_path_port or DEFAULT_DATA_PATH_PORT
        if not 1024 <= port <= 49151 and port != DEFAULT_DATA_PATH_PORT:
            raise InvalidParameter(f"Datapath port {port} is not in valid range: 1024 - 49151")
        if {port, port + 1} & {SWARM_PORT, GOSSIP_PORT}:
            raise InvalidParameter(
                f"Datapath port {port} clashes with the swarm's ports {SWARM_PORT} and "
                f"{GOSSIP_PORT}: it and the next port (encrypted overlays) carry VXLAN"
            )
        if req.availability not in ("active", "pause", "drain"):
            raise InvalidParameter(f"invalid availability {req.availability!r}")

        from manager.manager import Credentials

        now = utcnow()
        node_id, cluster_id = new_node_id(), new_node_id()
        try:
            minted = await ca_process.new_cluster(node_id, cluster_id, now)
        except ca_process.HelperError as exc:
            raise Unavailable(f"could not create the swarm's CA: {exc}") from exc
        creds = Credentials(minted.ca_cert_pem, minted.cert_pem, minted.key_pem)
        self._save_creds(creds)
        self.identity = Identity(
            node_id=node_id, role="manager", cluster_id=cluster_id,
            listen_addr=listen, advertise_addr=advertise, data_addr=data_addr,
            managers=[advertise],
        )  # fmt: skip
        try:
            self._save_identity()
            await self._run_role(bootstrap=True)
            assert self.manager is not None
            await self.manager.wait_leader(10)
            spec = merge_spec(DEFAULT_SPEC, req.spec or {})
            ts = stamp(now)
            ca_digest = certs.digest(minted.ca_cert_pem)
            await self.manager.propose({"op": "init", "cluster": {
                "id": cluster_id, "created_at": ts, "updated_at": ts, "spec": spec,
                "ca_cert_pem": minted.ca_cert_pem.decode(),
                "ca_key_pem": minted.ca_key_pem.decode(),
                "worker_token": str(tokens.generate(ca_digest)),
                "manager_token": str(tokens.generate(ca_digest)),
                "default_addr_pool": pools, "subnet_size": size, "data_path_port": port,
            }, "node": {
                "id": node_id, "hostname": self.hostname, "role": "manager",
                "availability": req.availability, "addr": data_addr,
                "manager_addr": advertise, "created_at": ts, "updated_at": ts,
            }})  # fmt: skip
            await self.manager.propose({"op": "network.create", "now": ts, "network": {
                "id": new_network_id(), "name": "ingress", "ingress": True,
                "labels": {}, "options": {},
            }})  # fmt: skip
        except BaseException:
            await self._forget()
            raise
        log.info("swarm initialised", node_id=node_id, cluster_id=cluster_id)
        self._changed()
        return node_id

    async def _force_new_cluster(self) -> str:
        assert self.identity is not None
        if self.identity.role != "manager":
            raise Unavailable("only a manager can force a new cluster")
        await self._stop_roles()
        await self._run_role(bootstrap=False, force_new_cluster=True)
        assert self.manager is not None
        await self.manager.wait_leader(10)
        await self.manager.read(timeout=10)
        log.warning("forced a new one-manager cluster from this node's data")
        return self.identity.node_id

    async def join(self, req: JoinSwarmRequest) -> None:
        from manager.join import JoinRequest, join
        from manager.manager import Credentials

        async with self._lock:
            if self.identity is not None:
                raise Unavailable(ALREADY_IN_SWARM)
            if not req.remote_addrs:
                raise InvalidParameter("at least 1 RemoteAddr is required to join")
            try:
                tokens.parse(req.join_token)
            except tokens.TokenError as exc:
                raise InvalidParameter(f"invalid join token: {exc}") from exc
            listen, advertise, data_addr = self._addresses(
                req.listen_addr, req.advertise_addr, req.data_path_addr
            )
            node_id = new_node_id()
            joined = None
            last: Exception | None = None
            for remote in req.remote_addrs:
                host, port = _host_port(remote, SWARM_PORT)
                try:
                    joined = await join(host, port, req.join_token, JoinRequest(
                        self.hostname, advertise, node_id))  # fmt: skip
                    break
                except ca_process.HelperError as exc:  # ours, not the manager's: stop here
                    raise Unavailable(f"could not make this node's key: {exc}") from exc
                except (OverlaydError, OSError, TimeoutError, ValueError) as exc:
                    last = exc
            if joined is None:
                if isinstance(last, OverlaydError):
                    raise InvalidParameter(str(last))
                raise Unavailable(
                    f"could not connect to a manager at {', '.join(req.remote_addrs)}: {last}"
                )
            self._save_creds(Credentials(joined.ca_pem, joined.cert_pem, joined.key_pem))
            self.identity = Identity(
                node_id=joined.node_id, role=joined.role, cluster_id=joined.cluster_id,
                listen_addr=listen, advertise_addr=advertise, data_addr=data_addr,
                managers=joined.managers or [f"{h}:{p}" for h, p in
                                             (_host_port(r, SWARM_PORT) for r in req.remote_addrs)],
            )  # fmt: skip
            try:
                self._save_identity()
                await self._run_role(bootstrap=False)
                if joined.role == "manager":
                    await self._ask_to_join_raft()
                    assert self.manager is not None
                    await self.manager.read(timeout=10)
                else:
                    assert self.agent is not None
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(10):
                            await self.agent.got_state.wait()
            except BaseException:
                await self._forget()
                raise
            log.info("joined swarm", node_id=joined.node_id, role=joined.role)
            self._changed()

    async def leave(self, force: bool) -> None:
        async with self._lock:
            if self.identity is None:
                raise Unavailable(NOT_PART_OF_SWARM)
            if self.manager is not None and not force:
                raise Unavailable(self._leave_warning())
            if self.manager is not None:
                await self.manager.leave_gracefully()
            await self._forget()
            self._changed()

    def _leave_warning(self) -> str:
        """dockerd's words (daemon/cluster/swarm.go) for a manager leaving without --force."""
        assert self.manager is not None
        managers = [n for n in self.manager.state.nodes.values() if n.role == "manager"]
        reachable = sum(1 for n in managers if self.manager.reachable(n.id))
        unreachable = len(managers) - reachable
        msg = LEAVE_PREFIX
        if reachable - 2 <= unreachable:  # removing this one loses the quorum
            if reachable == 1 and unreachable == 0:
                return msg + LEAVE_LAST_MANAGER
            msg += (
                f"Removing this node leaves {reachable - 1} managers out of "
                f"{reachable + unreachable}. Without a Raft quorum your swarm will be "
                "inaccessible. "
            )
        return msg + LEAVE_SUFFIX

    async def _forget(self) -> None:
        await self._stop_roles()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.identity = None
        self.creds = None
        self.error = ""

    # --- cluster and node operations (managers) ----------------------------------------------

    async def update(self, version: int | None, spec: dict[str, Any], rotate_worker: bool,
                     rotate_manager: bool) -> None:  # fmt: skip
        manager = self.require_manager()
        state = await manager.read()
        assert state.cluster is not None
        ca_digest = certs.digest(state.cluster.ca_cert_pem.encode())
        expiry = ((spec or {}).get("CAConfig") or {}).get("NodeCertExpiry")
        if isinstance(expiry, int) and 0 < expiry < 3_600_000_000_000:
            raise InvalidParameter("minimum certificate expiry time is 1h0m0s")
        cmd: dict[str, Any] = {"op": "cluster.update", "version": version,
                               "spec": merge_spec(DEFAULT_SPEC, spec), "now": stamp()}  # fmt: skip
        if rotate_worker:
            cmd["worker_token"] = str(tokens.generate(ca_digest))
        if rotate_manager:
            cmd["manager_token"] = str(tokens.generate(ca_digest))
        await manager.propose(cmd)

    async def nodes(self, filters: Filters) -> list[Node]:
        state = await self.read()
        filters.validate(NODE_FILTERS)
        out = []
        for node in state.nodes.values():
            if filters.get("id") and not any(node.id.startswith(v) for v in filters.get("id")):
                continue
            if not filters.match("name", node.name or node.hostname):
                continue
            if not filters.exact_match("role", node.role):
                continue
            if not filters.exact_match("membership", "accepted"):
                continue
            if not filters.match_kv_list("node.label", node.labels):
                continue
            if not filters.match_kv_list("label", {}):
                continue
            out.append(node)
        return sorted(out, key=lambda n: n.created_at)

    async def node(self, term: str) -> Node:
        state = await self.read()
        return find_node(state, term)

    async def update_node(self, term: str, version: int | None, spec: dict[str, Any]) -> None:
        state = await self.read()
        node = find_node(state, term)
        demote = node.role == "manager" and spec.get("Role") == "worker"
        managers = sum(1 for n in state.nodes.values() if n.role == "manager")
        if demote and managers > 1 and not self.require_manager().can_remove(node.id):
            raise InvalidParameter(
                "rpc error: code = FailedPrecondition desc = can't remove member from the "
                "raft: this would result in a loss of quorum"
            )
        await self.propose({"op": "node.update", "id": node.id, "version": version,
                            "spec": spec, "now": stamp()})  # fmt: skip

    async def remove_node(self, term: str, force: bool) -> None:
        state = await self.read()
        node = find_node(state, term)
        if self.identity is not None and node.id == self.identity.node_id:
            raise InvalidParameter(
                "rpc error: code = FailedPrecondition desc = node "
                f"{node.id} is a cluster manager and is a member of the raft cluster. It must "
                "be demoted to worker before removal"
            )
        await self.propose({"op": "node.remove", "id": node.id, "force": force})

    def networks(self) -> list[SwarmNetwork]:
        state = self.view()
        return list(state.networks.values()) if state is not None else []


def find_node(state: SwarmState, term: str) -> Node:
    """ID, then name/hostname, then unique ID prefix (as swarmkit's lookup)."""
    if term in state.nodes:
        return state.nodes[term]
    by_name = [n for n in state.nodes.values() if term in (n.name, n.hostname)]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [n for n in state.nodes.values() if n.id.startswith(term)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_name) > 1 or len(by_prefix) > 1:
        raise Conflict(f"node {term} is ambiguous ({len(by_name) or len(by_prefix)} matches found)")
    raise NotFound(f"node {term} not found")


def new_network_id() -> str:
    """Swarm network IDs are 25 base-36 characters, like node IDs."""
    return new_node_id()


async def _read_tls_info(ca_pem: bytes) -> dict[str, str]:
    import base64

    subject, public_key = await ca_process.issuer_info(ca_pem)
    return {
        "TrustRoot": ca_pem.decode(),
        "CertIssuerSubject": base64.b64encode(subject).decode(),
        "CertIssuerPublicKey": base64.b64encode(public_key).decode(),
    }


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)
