"""A manager: the raft node, the 2377 listener and the leader's duties.

Every manager serves raft traffic, join requests, calls (a write forwarded by a
follower or a worker) and, on the leader, node sessions: each node keeps one
heartbeat session with the leader, which streams it the state and marks it `down`
when the heartbeats stop. Membership of the raft group follows the replicated node
list: a promoted node asks to join the group, a demoted or removed one is taken
out by the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manager import ca_process, certs, rpc, transport, wire
from manager.errors import Forbidden, InvalidParameter, NotFound, Unavailable
from manager.ids import raft_id_of
from manager.join import JoinRequest, JoinService
from manager.node import RaftNode
from manager.peers import RaftPeers
from manager.raft import recovery
from manager.raft.errors import NotLeader
from manager.renewals import RenewalLimiter
from manager.state import SwarmState, valid_epoch
from manager.storage import SqliteLog
from manager.timefmt import stamp, utcnow
from manager.transport import Connection, FrameError

HEARTBEAT_PERIOD = 1.0  # Docker: 5 s
DOWN_AFTER = 3 * HEARTBEAT_PERIOD
KEY_ROTATION = dt.timedelta(hours=12)
LEADER_DUTY_PERIOD = 0.25
CALL_IDLE = 120.0  # seconds a kept call connection may sit unused
WORKER_OPS = {"ip.allocate", "ip.release"}  # what a worker may ask the managers to do


@dataclass(frozen=True)
class Credentials:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def facts(self) -> certs.CertFacts:
        return transport.certificate_facts(self.ca_pem, self.cert_pem, self.key_pem)

    def identity(self) -> certs.NodeIdentity:
        return self.facts().identity

    def client_context(self) -> Any:
        return transport.client_context(self.ca_pem, self.cert_pem, self.key_pem)


def worker_view(state: SwarmState) -> bytes:
    """What a worker may know: no CA key, no join tokens (and not the managers' cache of
    recent request results, a large part of the state a worker has no use for)."""
    doc = json.loads(state.snapshot())
    if doc["cluster"] is not None:
        doc["cluster"].update(ca_key_pem="", worker_token="", manager_token="")
    doc["recent"] = []
    return json.dumps(doc, separators=(",", ":")).encode()


class Manager:
    def __init__(
        self,
        data_dir: Path,
        creds: Credentials,
        listen: tuple[str, int],
        advertise: str,
        *,
        bootstrap: bool = False,
        force_new_cluster: bool = False,
        on_change: Callable[[], None] = lambda: None,
        node_gone: Callable[[str], bool] = lambda node_id: False,
    ) -> None:
        ident = creds.identity()
        self._node_gone = node_gone  # a faster failure detector's verdict (gossip)
        self.node_id = ident.node_id
        self._cluster_id = ident.cluster_id  # what our certificate says, read once
        self.raft_id = raft_id_of(ident.node_id)
        self.creds = creds
        self.listen = listen
        self.advertise = advertise  # "ip:port" other managers dial
        self._on_change_cb = on_change
        self.storage = SqliteLog(data_dir / "raft.db")
        if force_new_cluster:
            recovery.force_new_cluster(self.storage, self.raft_id)
        self._client_ctx = creds.client_context()
        self.peers = RaftPeers(self.raft_id, advertise, self._client_ctx, self._address_of,
                               self._report_unreachable)  # fmt: skip
        self.node = RaftNode(
            self.raft_id,
            self.storage,
            self.peers.send,
            rng=random.Random(),
            bootstrap=[self.raft_id] if bootstrap else [],
            on_change=self._changed,
        )
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_seen: dict[str, float] = {}
        self._renewals = RenewalLimiter()
        self._frame_cache: tuple[tuple[int, tuple[str, ...]], bytes] | None = None
        self._learned: dict[int, str] = {}  # raft ID → address, from peers' raft hellos
        self._was_leader = False
        self.changed = asyncio.Event()  # set on every applied change or leader change
        self._generation = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        ctx = transport.server_context(self.creds.ca_pem, self.creds.cert_pem, self.creds.key_pem)
        self._server = await transport.serve(
            self.listen[0], self.listen[1], ctx, self._handle
        )
        self.node.start()
        self._tasks.append(asyncio.create_task(self._leader_duties(), name="leader-duties"))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.node.stop()
        await self.peers.close()
        self.storage.close()
        await ca_process.discard_prepared()  # a joiner's signing child, if one waits

    async def leave_gracefully(self) -> None:
        """Hand leadership to a caught-up voter before going, so the swarm loses no time."""
        if not self.node.is_leader:
            return
        others = [v for v in self.node.core.conf_state.voters if v != self.raft_id]
        if not others:
            return
        self.node.transfer_leadership(others[0])
        deadline = asyncio.get_running_loop().time() + 2.0
        while self.node.is_leader and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    # --- views ------------------------------------------------------------------------

    @property
    def state(self) -> SwarmState:
        return self.node.state

    @property
    def is_leader(self) -> bool:
        return self.node.is_leader

    def leader_node_id(self) -> str | None:
        lead = self.node.leader
        for node in self.state.nodes.values():
            if raft_id_of(node.id) == lead:
                return node.id
        return None

    def leader_addr(self) -> str | None:
        """Where the leader listens, as the node list says; None while there is none."""
        leader = self.leader_node_id()
        node = self.state.nodes.get(leader) if leader else None
        return node.manager_addr if node is not None and node.manager_addr else None

    def reachable(self, node_id: str) -> bool:
        """A manager is reachable when it is a voter the leader hears from (or is us)."""
        if node_id == self.node_id:
            return True
        node = self.state.nodes.get(node_id)
        voter = raft_id_of(node_id) in self.node.core.conf_state.voters
        return voter and node is not None and node.state == "ready"

    def manager_addrs(self) -> list[str]:
        return sorted(n.manager_addr for n in self.state.nodes.values()
                      if n.role == "manager" and n.manager_addr)  # fmt: skip

    def _address_of(self, raft_id: int) -> str | None:
        """From the node list; a new member whose log is still empty learns the leader's
        address from the leader's own raft hello."""
        for node in self.state.nodes.values():
            if node.manager_addr and raft_id_of(node.id) == raft_id:
                return node.manager_addr
        return self._learned.get(raft_id)

    def _report_unreachable(self, raft_id: int) -> None:
        self.node.report_unreachable(raft_id)

    def _changed(self) -> None:
        self._generation += 1
        self.changed.set()
        self.changed = asyncio.Event()
        self._on_change_cb()

    # --- writes and reads ---------------------------------------------------------------

    async def propose(
        self, cmd: dict[str, Any], timeout: float = 5.0, rid: str | None = None
    ) -> Any:
        """Commit `cmd` through the leader, wherever it is; its result on the way back.
        Every retry carries the same request ID, so a command that did commit before a
        leader change is answered, not applied twice."""
        rid = rid or secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise Unavailable(NO_LEADER)
            if self.node.is_leader:
                try:
                    return await self.node.propose(cmd, timeout=left, rid=rid)
                except NotLeader:
                    pass
            else:
                addr = self.leader_addr()
                if addr and self.leader_node_id() != self.node_id:
                    try:
                        return await rpc.call(addr, self._client_ctx,
                                              {"op": "propose", "cmd": cmd, "rid": rid},
                                              timeout=left)  # fmt: skip
                    except (NotLeader, Unavailable):
                        pass
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def read(self, timeout: float = 5.0) -> SwarmState:
        """The state as of now (ReadIndex): every write acknowledged before is in it."""
        try:
            await self.node.read_barrier(timeout=timeout)
        except NotLeader as exc:
            raise Unavailable(NO_LEADER) from exc
        return self.state

    async def caught_up_locally(self, timeout: float = 5.0) -> None:
        """Wait until what this node's own log holds as committed is applied: after a
        restart the state is then at least what it was before."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        target = self.storage.hard_state.commit
        while self.node.applied < target and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def wait_leader(self, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.node.leader == 0:
            if loop.time() >= deadline:
                raise Unavailable(NO_LEADER)
            if self.node.core.conf_state.voters == {self.raft_id}:
                self.node.campaign()  # alone: no need to wait for an election timeout
            await asyncio.sleep(0.01)

    # --- the 2377 listener --------------------------------------------------------------

    async def _handle(self, conn: Connection) -> None:
        if conn.peer is None:
            await self._join_service().handle(conn)
            return
        if conn.peer.cluster_id != self.state_cluster_id():
            return
        hello = rpc.load(await conn.recv())
        kind = hello.get("type")
        if kind == "raft":
            addr = hello.get("addr")
            if isinstance(addr, str) and valid_endpoint(addr) and conn.peer.role == "manager":
                self._learned[raft_id_of(conn.peer.node_id)] = addr
            await self._raft_stream(conn)
        elif kind == "call":
            # One call after another on the same connection: callers keep it open, so a
            # forwarded write does not pay a TLS handshake each time.
            while hello.get("type") == "call":
                try:
                    value = await self._call(conn.peer, hello)
                    reply: dict[str, Any] = {"value": value}
                except Exception as exc:
                    reply = rpc.error_doc(exc)
                await conn.send(rpc.dump(reply))
                try:  # an idle caller's connection is closed after a while
                    async with asyncio.timeout(CALL_IDLE):
                        hello = rpc.load(await conn.recv())
                except TimeoutError:
                    return
        elif kind == "session":
            await self._session(conn, hello)

    def state_cluster_id(self) -> str:
        cluster = self.state.cluster
        return cluster.id if cluster is not None else self._cluster_id

    async def _raft_stream(self, conn: Connection) -> None:
        assert conn.peer is not None
        if conn.peer.role != "manager":
            return
        sender = raft_id_of(conn.peer.node_id)
        while True:
            data = await conn.recv()
            try:
                msg = wire.decode(data)
            except Exception as exc:  # any decoder surprise costs the sender its connection
                raise FrameError(str(exc)) from exc
            if msg.frm != sender:
                raise FrameError("raft message from another member's ID")  # no impersonation
            if self._demoted(conn.peer.node_id, sender):
                # its certificate still says "manager" for months
                raise FrameError("raft message from a node that is no longer a manager")
            self.node.deliver(msg)

    def _demoted(self, node_id: str, raft_id: int) -> bool:
        """A node the state names as a worker, or as removed, and that is out of the raft
        group. (A node the state does not know at all may be a manager added since this
        one last heard, or this one is still joining: the certificate's role decides.)"""
        conf = self.node.core.conf_state
        if raft_id in conf.voters or raft_id in conf.learners:
            return False
        node = self.state.nodes.get(node_id)
        if node is None:
            return node_id in self.state.removed
        return node.role != "manager"

    def _join_service(self) -> JoinService:
        cluster = self.state.cluster
        if cluster is None:
            raise FrameError("not initialised yet")
        def current() -> tuple[str, str]:
            c = self.state.cluster
            assert c is not None
            return c.worker_token, c.manager_token

        return JoinService(cluster.ca_cert_pem.encode(), cluster.ca_key_pem.encode(), cluster.id,
                           current, self._register, utcnow,
                           validity=lambda: node_validity(self.state))  # fmt: skip

    async def _register(self, node_id: str, role: str, req: JoinRequest) -> list[str]:
        now = stamp()
        addr = req.advertise_addr
        if not valid_endpoint(addr):
            raise InvalidParameter(f"invalid advertise address {addr!r}: expected IPv4:port")
        await self.propose({"op": "node.add", "node": {
            "id": node_id, "hostname": req.hostname, "role": role, "availability": "active",
            "addr": addr.rpartition(":")[0] if ":" in addr else addr,
            "manager_addr": addr if role == "manager" else "",
            "created_at": now, "updated_at": now, "state": "unknown",
        }})  # fmt: skip
        return self.manager_addrs()

    async def _call(self, peer: certs.NodeIdentity, req: dict[str, Any]) -> Any:
        op = req.get("op")
        if op == "propose":
            cmd = req.get("cmd")
            if not isinstance(cmd, dict):
                raise InvalidParameter("malformed command")
            member = self.state.nodes.get(peer.node_id)
            if member is None:
                raise Forbidden("node not part of the swarm")
            if member.role != "manager" or peer.role != "manager":  # the state decides
                self._check_worker_command(peer.node_id, cmd)
            rid = req.get("rid")
            ok = isinstance(rid, str) and 0 < len(rid) <= 64
            return await self.propose(cmd, rid=rid if ok else None)
        if op == "raft.join":
            return await self._add_voter(peer, str(req.get("addr", "")))
        if op == "raft.leave":
            return await self._remove_voter(peer)
        if op == "renew":
            return await self._renew(peer, str(req.get("csr", "")))
        if op == "leader":
            return self.leader_addr()
        raise InvalidParameter(f"unknown call {op!r}")

    def _check_worker_command(self, node_id: str, cmd: dict[str, Any]) -> None:
        """What a worker may ask for, checked field by field before it reaches the log:
        addresses for its own endpoints on attachable networks."""
        if cmd.get("op") not in WORKER_OPS or cmd.get("node_id") != node_id:
            raise Forbidden("workers may not change the cluster state")
        net_id, ep_id = cmd.get("network_id"), cmd.get("endpoint_id")
        if not isinstance(net_id, str) or not isinstance(ep_id, str) or not 0 < len(ep_id) <= 64:
            raise InvalidParameter("malformed address request")
        if cmd["op"] == "ip.allocate":
            net = self.state.networks.get(net_id)
            if net is None:
                raise NotFound(f"network {net_id} not found")
            if not net.attachable or net.ingress:
                raise Forbidden(f"network {net.name} not manually attachable")
            requested, mac = cmd.get("requested"), cmd.get("mac")
            try:
                if requested is not None:
                    ipaddress.IPv4Address(str(requested))
            except ValueError as exc:
                raise InvalidParameter(f"invalid IPv4 address {requested!r}") from exc
            if mac is not None and not isinstance(mac, str):
                raise InvalidParameter("invalid MAC address")

    async def _add_voter(self, peer: certs.NodeIdentity, addr: str) -> bool:
        if not self.node.is_leader:
            raise NotLeader(self.node.leader)
        node = self.state.nodes.get(peer.node_id)
        if node is None or node.role != "manager":
            raise Forbidden(f"node {peer.node_id} is not a manager")
        if addr and not valid_endpoint(addr):
            raise InvalidParameter(f"invalid manager address {addr!r}: expected IPv4:port")
        if addr and node.manager_addr != addr:
            await self.propose({"op": "node.status", "id": node.id, "state": node.state,
                                "manager_addr": addr, "now": stamp()})  # fmt: skip
        rid = raft_id_of(peer.node_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while rid not in self.node.core.conf_state.voters:
            if loop.time() > deadline:
                raise Unavailable("could not add the manager to the raft group in time")
            self.node.add_voter(rid)
            await asyncio.sleep(0.1)
        return True

    async def _remove_voter(self, peer: certs.NodeIdentity) -> bool:
        """A demoted manager leaves the raft group before it stops its raft node: with two
        voters the removal needs its own acknowledgement (swarmkit's order)."""
        if not self.node.is_leader:
            raise NotLeader(self.node.leader)
        node = self.state.nodes.get(peer.node_id)
        if node is not None and node.role == "manager":
            raise Forbidden(f"node {peer.node_id} is a manager: demote it first")
        rid = raft_id_of(peer.node_id)
        if rid == self.raft_id:
            raise Forbidden("the leader cannot remove itself; transfer leadership first")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while rid in self.node.core.conf_state.voters:
            if loop.time() > deadline:
                raise Unavailable("could not remove the manager from the raft group in time")
            self.node.remove_voter(rid)
            await asyncio.sleep(0.1)
        self.peers.forget(rid)
        return True

    def can_remove(self, node_id: str) -> bool:
        """Whether the voters left without node_id still reach a quorum (the ones the leader
        hears from): swarmkit's CanRemoveMember."""
        voters = set(self.node.core.conf_state.voters) - {raft_id_of(node_id)}
        if not voters:
            return False
        ids = {raft_id_of(n.id): n.id for n in self.state.nodes.values()}
        alive = sum(1 for v in voters if v in ids and self.reachable(ids[v]))
        return alive > len(voters) // 2

    async def _renew(self, peer: certs.NodeIdentity, csr_pem: str) -> str:
        """A certificate for the role the cluster now gives the node (promote/demote)."""
        cluster = self.state.cluster
        node = self.state.nodes.get(peer.node_id)
        if cluster is None or node is None:
            raise Forbidden("node not part of the swarm")
        self._renewals.forget(set(self.state.nodes))
        refused = self._renewals.begin(node.id, asyncio.get_running_loop().time())
        if refused is not None:
            raise Unavailable(refused)
        try:
            cert = await ca_process.issue(
                cluster.ca_cert_pem.encode(), cluster.ca_key_pem.encode(), csr_pem,
                node_id=node.id, role=node.role, cluster_id=cluster.id, now=utcnow(),
                validity=node_validity(self.state),
            )  # fmt: skip
        except certs.CertificateError as exc:
            raise InvalidParameter(f"invalid certificate request: {exc}") from exc
        except (ca_process.HelperError, OSError) as exc:
            raise Unavailable(f"the manager could not sign the certificate: {exc}") from exc
        finally:
            self._renewals.end(node.id)
        return cert.decode()

    # --- sessions (leader) ---------------------------------------------------------------

    async def _session(self, conn: Connection, hello: dict[str, Any]) -> None:
        assert conn.peer is not None
        node_id = conn.peer.node_id
        if not self.node.is_leader:
            await conn.send(rpc.dump({"redirect": self.leader_addr()}))
            return
        if node_id not in self.state.nodes:
            await conn.send(rpc.dump({"error": {"kind": "NotFound",
                                                "message": "node removed from the swarm"}}))  # fmt: skip
            return
        self._last_seen[node_id] = asyncio.get_running_loop().time()
        addr = str(hello.get("addr", ""))
        if not valid_ipv4(addr):
            addr = ""  # keep what the node list has
        epoch = str(hello.get("ipsec_epoch", ""))
        if not valid_epoch(epoch):
            epoch = ""
        pusher = asyncio.create_task(
            self._push_state(conn, node_id, want=bool(hello.get("want_state", True)))
        )
        try:
            node = self.state.nodes[node_id]
            new_epoch = epoch and node.ipsec_epoch != epoch
            if node.state != "ready" or (addr and node.addr != addr) or new_epoch:
                with contextlib.suppress(Exception):
                    await self.propose({"op": "node.status", "id": node_id, "state": "ready",
                                        "addr": addr, "ipsec_epoch": epoch, "now": stamp()})  # fmt: skip
            while self.node.is_leader:
                try:
                    async with asyncio.timeout(DOWN_AFTER):
                        rpc.load(await conn.recv())
                except TimeoutError:
                    return
                self._last_seen[node_id] = asyncio.get_running_loop().time()
                if epoch and self.state.nodes.get(node_id) is not None and (
                        self.state.nodes[node_id].ipsec_epoch != epoch):  # fmt: skip
                    with contextlib.suppress(Exception):  # the first try failed: again
                        await self.propose({"op": "node.status", "id": node_id,
                                            "state": "ready", "ipsec_epoch": epoch,
                                            "now": stamp()})  # fmt: skip
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher

    async def _push_state(self, conn: Connection, node_id: str, want: bool) -> None:
        sent = -1
        while self.node.is_leader:
            if sent != self._generation and want:
                sent = self._generation
                data = self._state_frame()
            else:
                sent = self._generation
                data = rpc.dump({"managers": self.manager_addrs()})
            await conn.send(data)  # also the leader's heartbeat
            changed = self.changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_PERIOD):
                    await changed.wait()
        await conn.close()

    def _state_frame(self) -> bytes:
        """The state frame for workers, made once per change and shared by every session
        (made per session, 100 workers cost seconds of event loop per change)."""
        key = (self._generation, tuple(self.manager_addrs()))
        if self._frame_cache is None or self._frame_cache[0] != key:
            frame = {"managers": list(key[1]), "state": worker_view(self.state).decode()}
            self._frame_cache = (key, rpc.dump(frame))
        return self._frame_cache[1]

    # --- leader duties ---------------------------------------------------------------------

    async def _leader_duties(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(LEADER_DUTY_PERIOD)
            if not self.node.is_leader or self.state.cluster is None:
                self._was_leader = False
                continue
            now = loop.time()
            if not self._was_leader:  # fresh leader: everyone gets a grace period
                self._was_leader = True
                self._last_seen = {n: now for n in self.state.nodes}
            try:
                await self._mark_nodes(now)
                await self._reconcile_voters()
                await self._rotate_keys()
            except Exception:  # a duty that fails now runs again next round
                continue

    async def _mark_nodes(self, now: float) -> None:
        for node in list(self.state.nodes.values()):
            if node.id == self.node_id:
                if node.state != "ready" or node.manager_addr != self.advertise:
                    await self.propose({"op": "node.status", "id": node.id, "state": "ready",
                                        "manager_addr": self.advertise, "now": stamp()})  # fmt: skip
                continue
            seen = self._last_seen.setdefault(node.id, now)
            silent = now - seen
            # Heartbeats alone take DOWN_AFTER; gossip's "dead" confirmed by a missed
            # heartbeat is enough sooner.
            gone = silent > 1.5 * HEARTBEAT_PERIOD and self._node_gone(node.id)
            if node.state == "ready" and (silent > DOWN_AFTER or gone):
                await self.propose({"op": "node.status", "id": node.id, "state": "down",
                                    "now": stamp()})  # fmt: skip

    async def _reconcile_voters(self) -> None:
        managers = {raft_id_of(n.id) for n in self.state.nodes.values() if n.role == "manager"}
        for voter in self.node.core.conf_state.voters:
            if voter != self.raft_id and voter not in managers:
                self.node.remove_voter(voter)
                self.peers.forget(voter)
                return  # one change at a time

    async def _rotate_keys(self) -> None:
        for subsystem, ring in self.state.keyrings.items():
            rotated = dt.datetime.fromisoformat(ring.rotated_at) if ring.rotated_at else None
            if len(ring.keys) < 3 or rotated is None or utcnow() - rotated > KEY_ROTATION:
                await self.propose({"op": "keys.rotate", "subsystem": subsystem,
                                    "key": secrets.token_hex(32), "now": utcnow().isoformat()})  # fmt: skip


MIN_CERT_EXPIRY = dt.timedelta(hours=1)  # dockerd refuses less


def node_validity(state: SwarmState) -> dt.timedelta:
    """Node certificates live CAConfig.NodeCertExpiry (ns; swarmkit default 90 days)."""
    spec = state.cluster.spec if state.cluster is not None else {}
    ns = (spec.get("CAConfig") or {}).get("NodeCertExpiry") or 0
    if not isinstance(ns, int) or ns <= 0:
        return certs.NODE_VALIDITY
    return max(dt.timedelta(microseconds=ns // 1000), MIN_CERT_EXPIRY)


NO_LEADER = (
    "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that "
    "too few managers are online. Make sure more than half of the managers are online."
)


def valid_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def valid_endpoint(text: str) -> bool:
    """ "ip:port" with an IPv4 address and a port in range: what peers will dial."""
    host, sep, port = text.rpartition(":")
    return bool(sep) and valid_ipv4(host) and port.isdigit() and 0 < int(port) < 65536
