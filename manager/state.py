"""The swarm's replicated state machine: what every manager applies, entry by entry.

Deterministic by construction: a command carries everything that varies (IDs, times,
random tokens and keys are chosen by the proposer), so every manager that applies the
same log holds the same state. A command that is refused yields an error result instead
of a change, the same on every manager. The raft shell proposes commands, applies the
committed ones here and hands results back to whoever waits on them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from ipaddress import IPv4Address, IPv4Network
from typing import Any, TypeVar

from manager import ipam
from manager.errors import (
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    OverlaydError,
    SystemError_,
)

T = TypeVar("T")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
FIRST_VNI = 4096
RECENT_RESULTS = 4096  # request IDs remembered for deduplication  # Docker's first automatic VXLAN ID
MAX_VNI = (1 << 24) - 1
KEYS_PER_RING = 3  # Docker keeps three keys per subsystem
ROLES = ("manager", "worker")
AVAILABILITIES = ("active", "pause", "drain")
NODE_STATES = ("unknown", "down", "ready", "disconnected")


@dataclass
class Cluster:
    id: str
    created_at: str
    updated_at: str
    version: int
    spec: dict[str, Any]
    ca_cert_pem: str
    ca_key_pem: str
    worker_token: str
    manager_token: str
    default_addr_pool: list[str] = field(default_factory=lambda: ["10.0.0.0/8"])
    subnet_size: int = 24
    data_path_port: int = 4789


@dataclass
class Node:
    id: str
    hostname: str
    role: str
    availability: str
    addr: str  # data/advertise address
    manager_addr: str  # "ip:2377" for managers, "" for workers
    created_at: str
    updated_at: str
    version: int
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    state: str = "ready"
    ipsec_epoch: str = ""  # 16 hex: changes when the node starts sending ESP from scratch
    # the index of the last change to what node.update sets (role, availability, name,
    # labels); `version` also moves on status changes, which do not conflict with an update
    spec_version: int = 0


@dataclass
class SwarmNetwork:
    id: str
    name: str
    vni: int
    ipam_config: list[dict[str, Any]]  # IpamConfig.to_docker() entries
    created_at: str
    updated_at: str
    version: int
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    attachable: bool = False
    internal: bool = False
    ingress: bool = False
    ipam_last: str | None = None
    user_subnet: bool = False  # subnets given at create: static addresses allowed

    def configs(self) -> list[ipam.IpamConfig]:
        return [ipam.IpamConfig.from_docker(c) for c in self.ipam_config]


@dataclass
class Allocation:
    network_id: str
    endpoint_id: str
    node_id: str
    address: str  # CIDR, e.g. "10.0.1.5/24"
    mac: str = ""  # "" means Docker's 02:42:<ip>; set when the endpoint asked for its own


_EPOCH = re.compile(r"^[0-9a-f]{16}$")


def valid_epoch(epoch: str) -> bool:
    return bool(_EPOCH.match(epoch))


@dataclass
class KeyRing:
    """Newest last. Docker's rule: the second-newest encrypts, so a new key is installed
    for receiving one rotation before anyone sends with it."""

    keys: list[str] = field(default_factory=list, repr=False)  # hex; never in a log line
    clock: int = 0  # Lamport time of the last rotation
    rotated_at: str = ""  # ISO 8601, chosen by the leader that rotated

    @property
    def primary(self) -> str | None:
        if not self.keys:
            return None
        return self.keys[-2] if len(self.keys) >= 2 else self.keys[-1]


@dataclass(frozen=True)
class Result:
    value: Any = None
    error: OverlaydError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class SwarmState:
    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.nodes: dict[str, Node] = {}
        self.networks: dict[str, SwarmNetwork] = {}
        self.allocations: dict[tuple[str, str], Allocation] = {}
        self.keyrings: dict[str, KeyRing] = {"gossip": KeyRing(), "ipsec": KeyRing()}
        self.applied_index = 0
        # IDs of nodes removed from the swarm: their certificates stay valid until they
        # expire, and only this says they no longer belong (node IDs are never reused)
        self.removed: list[str] = []
        # Results of recent commands by request ID: a proposal retried after a leader
        # change (it may have committed already) gets the first answer, not a conflict.
        self.recent: dict[str, Any] = {}

    # --- applying ---------------------------------------------------------------------

    def apply(self, index: int, command: dict[str, Any], rid: str | None = None) -> Result:
        """Apply one committed command at raft index `index`; `rid` is its request ID."""
        if rid is not None and rid in self.recent:
            self.applied_index = index
            return Result(value=self.recent[rid])
        result = self._apply(index, command)
        if rid is not None and result.ok:
            self.recent[rid] = result.value
            while len(self.recent) > RECENT_RESULTS:  # oldest first: the same on every manager
                del self.recent[next(iter(self.recent))]
        return result

    def _apply(self, index: int, command: dict[str, Any]) -> Result:
        op = command.get("op")
        handler = getattr(self, f"_op_{str(op).replace('.', '_')}", None)
        self.applied_index = index
        if handler is None:
            return Result(error=InvalidParameter(f"unknown swarm command {op!r}"))
        try:
            return Result(value=handler(index, command))
        except OverlaydError as exc:
            return Result(error=exc)
        except Exception as exc:
            # A malformed command fails the same way on every manager and changes
            # nothing (handlers validate before they write): it must never stop raft.
            return Result(error=InvalidParameter(f"malformed swarm command {op!r}: {exc!r}"))

    def _op_init(self, index: int, cmd: dict[str, Any]) -> str:
        if self.cluster is not None:
            raise Conflict("swarm already initialized")
        self.cluster = Cluster(version=index, **cmd["cluster"])
        self._op_node_add(index, {"node": cmd["node"]})
        return self.cluster.id

    def _op_cluster_update(self, index: int, cmd: dict[str, Any]) -> None:
        cluster = self._cluster()
        _check_version("swarm", cmd.get("version"), cluster.version)
        cluster.spec = cmd["spec"]
        for key in ("worker_token", "manager_token"):
            if cmd.get(key):
                setattr(cluster, key, cmd[key])
        cluster.updated_at = cmd["now"]
        cluster.version = index

    # --- nodes ------------------------------------------------------------------------

    def _op_node_add(self, index: int, cmd: dict[str, Any]) -> str:
        node = Node(version=index, spec_version=index, **cmd["node"])
        if node.id in self.nodes:
            raise Conflict(f"node {node.id} already exists")
        if node.role not in ROLES:
            raise InvalidParameter(f"invalid role {node.role!r}")
        self.nodes[node.id] = node
        return node.id

    def _op_node_update(self, index: int, cmd: dict[str, Any]) -> None:
        node = self._node(cmd["id"])
        _check_node_version(cmd.get("version"), node)
        spec = cmd["spec"]
        role, availability = (
            spec.get("Role") or node.role,
            spec.get("Availability") or node.availability,
        )
        if role not in ROLES:
            raise InvalidParameter(f"invalid role {role!r}, expected one of {', '.join(ROLES)}")
        if availability not in AVAILABILITIES:
            raise InvalidParameter(
                f"invalid availability {availability!r}, expected one of {', '.join(AVAILABILITIES)}"
            )
        if node.role == "manager" and role == "worker" and self._managers() == [node]:
            raise InvalidParameter(
                "rpc error: code = FailedPrecondition desc = attempting to demote the last "
                "manager of the swarm"
            )
        node.role, node.availability = role, availability
        node.name = spec.get("Name") or ""
        node.labels = dict(spec.get("Labels") or {})
        node.updated_at = cmd["now"]
        node.version = node.spec_version = index

    def _op_node_status(self, index: int, cmd: dict[str, Any]) -> None:
        node = self._node(cmd["id"])
        if cmd["state"] not in NODE_STATES:
            raise InvalidParameter(f"invalid node state {cmd['state']!r}")
        node.state = cmd["state"]
        if cmd.get("addr"):
            node.addr = cmd["addr"]
        if cmd.get("ipsec_epoch"):
            if not valid_epoch(str(cmd["ipsec_epoch"])):
                raise InvalidParameter(f"invalid ipsec epoch {cmd['ipsec_epoch']!r}")
            node.ipsec_epoch = cmd["ipsec_epoch"]
        if "manager_addr" in cmd:
            node.manager_addr = cmd["manager_addr"]
        node.updated_at = cmd["now"]
        node.version = index

    def _op_node_remove(self, index: int, cmd: dict[str, Any]) -> None:
        node = self._node(cmd["id"])
        if node.role == "manager":
            raise InvalidParameter(
                f"rpc error: code = FailedPrecondition desc = node {node.id} is a cluster "
                "manager and is a member of the raft cluster. It must be demoted to worker "
                "before removal"
            )
        if node.state != "down" and not cmd.get("force"):
            raise InvalidParameter(
                f"rpc error: code = FailedPrecondition desc = node {node.id} is not down and "
                "can't be removed"
            )
        del self.nodes[node.id]
        if node.id not in self.removed:
            self.removed.append(node.id)
        for key, alloc in list(self.allocations.items()):
            if alloc.node_id == node.id:
                del self.allocations[key]

    # --- networks ---------------------------------------------------------------------

    def _op_network_create(self, index: int, cmd: dict[str, Any]) -> str:
        spec = cmd["network"]
        cluster = self._cluster()
        if any(n.name == spec["name"] for n in self.networks.values()):
            raise Conflict(f"network with name {spec['name']} already exists")
        if spec.get("ingress") and any(n.ingress for n in self.networks.values()):
            raise Forbidden("only one ingress network can be present in the swarm")
        used = [c.subnet for n in self.networks.values() for c in n.configs()]
        pools = [
            ipam.PoolSpec(IPv4Network(base), cluster.subnet_size)
            for base in cluster.default_addr_pool
        ]
        configs = ipam.parse_ipam_config(spec.get("ipam_config"), used_subnets=used, pools=pools)
        vni = self._vni(spec.get("options", {}))
        net = SwarmNetwork(
            id=spec["id"],
            name=spec["name"],
            vni=vni,
            ipam_config=[c.to_docker() for c in configs],
            created_at=cmd["now"],
            updated_at=cmd["now"],
            version=index,
            labels=dict(spec.get("labels") or {}),
            options=dict(spec.get("options") or {}),
            attachable=bool(spec.get("attachable")),
            internal=bool(spec.get("internal")),
            ingress=bool(spec.get("ingress")),
            user_subnet=bool(spec.get("ipam_config")),
        )
        net.options["com.docker.network.driver.overlay.vxlanid_list"] = str(vni)
        self.networks[net.id] = net
        return net.id

    def _vni(self, options: dict[str, str]) -> int:
        taken = {n.vni for n in self.networks.values()}
        wanted = options.get("com.docker.network.driver.overlay.vxlanid_list")
        if wanted:
            try:
                vni = int(wanted.split(",")[0])
            except ValueError as exc:
                raise InvalidParameter(f"invalid VXLAN id {wanted!r}") from exc
            if not 1 <= vni <= MAX_VNI:
                raise InvalidParameter(f"invalid VXLAN id {vni}: must be 1 to {MAX_VNI}")
            if vni in taken:
                raise Conflict(f"VXLAN id {vni} is already in use")
            return vni
        vni = FIRST_VNI
        while vni in taken:
            vni += 1
        if vni > MAX_VNI:
            raise Forbidden("no VXLAN ids left")
        return vni

    def _op_network_remove(self, index: int, cmd: dict[str, Any]) -> None:
        net = self._network(cmd["id"])
        users = sorted({a.node_id for a in self.allocations.values() if a.network_id == net.id})
        if users:
            raise Forbidden(
                f"rpc error: code = FailedPrecondition desc = network {net.id} is in use "
                f"by endpoints on nodes {', '.join(users)}"
            )
        del self.networks[net.id]

    def _op_ip_allocate(self, index: int, cmd: dict[str, Any]) -> str:
        net = self._network(cmd["network_id"])
        key = (net.id, str(cmd["endpoint_id"]))
        if key in self.allocations:
            if self.allocations[key].node_id != cmd["node_id"]:
                raise Forbidden(f"endpoint {key[1]} belongs to another node")
            return self.allocations[key].address  # a retried proposal: same answer
        self._node(cmd["node_id"])
        configs = net.configs()
        taken = [
            IPv4Address(a.address.split("/")[0])
            for a in self.allocations.values()
            if a.network_id == net.id
        ]
        last = IPv4Address(net.ipam_last) if net.ipam_last else None
        pool = ipam.AddressPool(
            configs, allocated=taken, last=last, name=net.name, network_id=net.id
        )
        requested = IPv4Address(cmd["requested"]) if cmd.get("requested") else None
        mac = str(cmd.get("mac") or "").lower()
        if mac and not _MAC.fullmatch(mac):
            raise InvalidParameter(f"invalid MAC address {mac}")
        ip = pool.allocate(requested)
        if requested is None:
            net.ipam_last = str(ip)
        subnet = next(c.subnet for c in configs if ip in c.subnet)
        address = f"{ip}/{subnet.prefixlen}"
        self.allocations[key] = Allocation(net.id, key[1], cmd["node_id"], address, mac)
        return address

    def _op_ip_release(self, index: int, cmd: dict[str, Any]) -> None:
        key = (cmd["network_id"], cmd["endpoint_id"])
        alloc = self.allocations.get(key)
        if alloc is not None and cmd.get("node_id") and alloc.node_id != cmd["node_id"]:
            raise Forbidden(f"endpoint {key[1]} belongs to another node")
        self.allocations.pop(key, None)

    # --- keys -------------------------------------------------------------------------

    def _op_keys_rotate(self, index: int, cmd: dict[str, Any]) -> None:
        ring = self.keyrings[cmd["subsystem"]]
        ring.keys = [*ring.keys, cmd["key"]][-KEYS_PER_RING:]
        ring.clock += 1
        ring.rotated_at = str(cmd.get("now", ""))

    # --- lookups ----------------------------------------------------------------------

    def _cluster(self) -> Cluster:
        if self.cluster is None:
            raise Forbidden("swarm is not initialized")
        return self.cluster

    def _node(self, node_id: str) -> Node:
        if node_id not in self.nodes:
            raise NotFound(f"node {node_id} not found")
        return self.nodes[node_id]

    def _network(self, net_id: str) -> SwarmNetwork:
        if net_id not in self.networks:
            raise NotFound(f"network {net_id} not found")
        return self.networks[net_id]

    def _managers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "manager"]

    # --- snapshots --------------------------------------------------------------------

    def snapshot(self) -> bytes:
        doc = {
            "cluster": asdict(self.cluster) if self.cluster else None,
            "nodes": [asdict(n) for n in self.nodes.values()],
            "networks": [asdict(n) for n in self.networks.values()],
            "allocations": [asdict(a) for a in self.allocations.values()],
            "keyrings": {k: asdict(v) for k, v in self.keyrings.items()},
            "applied_index": self.applied_index,
            "recent": list(self.recent.items()),
            "removed": self.removed,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, data: bytes) -> SwarmState:
        doc = json.loads(data)
        state = cls()
        state.cluster = _known(Cluster, doc["cluster"]) if doc["cluster"] else None
        state.nodes = {n["id"]: _known(Node, n) for n in doc["nodes"]}
        state.networks = {n["id"]: _known(SwarmNetwork, n) for n in doc["networks"]}
        state.allocations = {
            (a["network_id"], a["endpoint_id"]): _known(Allocation, a) for a in doc["allocations"]
        }
        state.keyrings = {k: _known(KeyRing, v) for k, v in doc["keyrings"].items()}
        state.applied_index = doc["applied_index"]
        state.recent = {str(k): v for k, v in doc.get("recent", [])}
        state.removed = [str(x) for x in doc.get("removed", [])]
        return state


def _known(kind: type[T], doc: dict[str, Any]) -> T:
    """A record from a snapshot, without the fields a newer version added: a node that
    has not been upgraded yet still reads the state of one that has (rolling upgrades)."""
    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    return kind(**{k: v for k, v in doc.items() if k in names})


def _check_node_version(given: Any, node: Node) -> None:
    """An update based on any version since the node's spec last changed: the status a
    session reports (ready, address, ESP epoch) moves the version too, and a `docker node
    update` read just before such a report must not fail with 'out of sequence' (it did,
    right after a demotion). A spec changed since the read still conflicts."""
    if given is None:
        raise InvalidParameter("invalid node version: the version parameter is required")
    if not isinstance(given, int) or not node.spec_version <= given <= node.version:
        raise SystemError_("rpc error: code = Unknown desc = update out of sequence")


def _check_version(kind: str, given: Any, current: int) -> None:
    """Docker's optimistic concurrency: an update names the version it was based on."""
    if given is None:
        raise InvalidParameter(f"invalid {kind} version: the version parameter is required")
    if given != current:
        # swarmkit's code Unknown: dockerd answers it with a 500.
        raise SystemError_("rpc error: code = Unknown desc = update out of sequence")
