"""NetworkService: local networks and their endpoints — decide, persist, then tell the kernel.

Every mutation runs under one lock, validates everything before touching anything,
commits to the store in one transaction, and only then asks the data plane to converge.
If the kernel refuses, the store change is rolled back so nothing is half-applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Protocol

from daemon.errors import Conflict, Forbidden, InvalidParameter, NotFound, SystemError_
from daemon.events import Event, EventBus, parse_timestamp
from daemon.filters import Filters
from daemon.logs import get_logger
from daemon.records import PREDEFINED, EndpointRecord, NetworkRecord
from daemon.store import Store
from dataplane.model import (
    SANDBOX_BRIDGE,
    BridgeSpec,
    Desired,
    EndpointSpec,
    IpsecSpec,
    OverlaySpec,
    PeerSpec,
)
from dataplane.names import valid_ifname
from dataplane.netns import ContainerNetns
from dataplane.xfrmmsg import AEAD_NAME
from manager import ipam

log = get_logger("overlayd.networks")

NOT_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)
DEFAULT_BRIDGE_IFNAME = "overlayd0"
MAX_ALIAS_BYTES = 255
MAX_ALIASES = 255
DEFAULT_MTU = 1500
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_DEFAULT_BRIDGE = "com.docker.network.bridge.default_bridge"
NETWORK_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
PRUNE_FILTERS = ("until", "label", "label!")
LOCAL_DRIVERS = ("bridge",)
HOST_NETWORK_ERROR = (
    "container cannot be disconnected from host network or connected to host network"
)
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
UNSUPPORTED_DRIVERS = ("macvlan", "ipvlan")
GWBRIDGE = "docker_gwbridge"
OPT_ENCRYPTED = "encrypted"  # overlay: VXLAN between hosts through ESP (IPsec)


class Kernel(Protocol):
    """What the service needs from the data plane (dataplane.reconciler.Dataplane fits)."""

    def resolve_container(self, ref: str) -> ContainerNetns: ...

    async def free_ifname(self, netns_path: str, taken: set[str]) -> str: ...

    async def converge(self, desired: Desired, fresh: bool) -> Convergence:
        """Make the kernel match; say what could not be done. `fresh` re-reads the whole
        kernel first; otherwise trust what the last converge left there."""
        ...

    def link_exists(self, ifname: str) -> bool:
        """A device of that name exists in the host namespace."""
        ...

    def host_netns_keys(self) -> frozenset[str]:
        """Namespaces that are the host itself, never a container."""
        ...

    def host_routes(self) -> list[IPv4Network]:
        """Subnets the host already routes to (kept fresh by the engine)."""
        ...

    def esp_support(self) -> str | None:
        """None if this kernel can encrypt overlay traffic (ESP), else why not."""
        ...

    def ipsec_gaps(self) -> list[str]:
        """Settings under which encrypted traffic could pass in cleartext here."""
        ...


class SwarmNetworks(Protocol):
    """The swarm's side of networking, as the NetworkService needs it (daemon.swarm_networks)."""

    def active(self) -> bool: ...

    def state_known(self) -> bool: ...

    def is_manager(self) -> bool: ...

    def network_records(self) -> dict[str, NetworkRecord]: ...

    async def create_network(self, req: CreateNetworkRequest) -> str: ...

    async def remove_network(self, net_id: str) -> None: ...

    async def allocate(
        self, net_id: str, endpoint_id: str, requested: IPv4Address | None, mac: str = ""
    ) -> str: ...

    async def release(self, net_id: str, endpoint_id: str) -> None: ...

    def overlay_spec(self, net: NetworkRecord) -> OverlaySpec | None: ...

    def peers(self, network_ids: set[str]) -> list[PeerSpec]: ...

    def vtep(self) -> IPv4Address | None: ...

    def ipsec_spec(self) -> IpsecSpec | None: ...

    def peer_hosts(self, net_id: str) -> list[tuple[str, str]]: ...

    def orphans(self, local_endpoint_ids: set[str]) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class Convergence:
    gone: frozenset[str] = frozenset()  # endpoint IDs whose container netns no longer exists
    errors: tuple[str, ...] = ()  # what the kernel refused; retried on the next converge
    not_in_place: frozenset[str] = frozenset()  # endpoint IDs the kernel does not hold as wanted
    host_wide_failure: bool = False  # nftables, ip_forward or xfrm: every endpoint's concern


@dataclass
class CreateNetworkRequest:
    name: str
    driver: str = "bridge"
    scope: str = ""
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None
    config_only: bool = False
    config_from: str = ""
    ipam_driver: str = ""
    ipam_config: list[dict[str, object]] | None = None
    ipam_options: dict[str, str] | None = None
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    check_duplicate: bool | None = None


@dataclass
class ConnectRequest:
    container: str
    name: str = ""  # explicit container name; default: the netns name
    ipv4_address: str = ""
    ipv6_address: str = ""
    aliases: list[str] = field(default_factory=list)
    mac_address: str = ""


@dataclass(frozen=True)
class NetworkView:
    """A network with its endpoints, for the API to shape."""

    network: NetworkRecord
    endpoints: tuple[EndpointRecord, ...]
    peers: tuple[tuple[str, str], ...] = ()  # swarm networks: (host name, address) taking part


def rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed."""
    sec, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def container_id_for(netns_key: str) -> str:
    return hashlib.sha256(f"overlayd-netns:{netns_key}".encode()).hexdigest()


def _parse_bool_option(options: dict[str, str], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None or value == "":
        return default
    if value in ("1", "t", "T", "TRUE", "true", "True"):  # Go's strconv.ParseBool, exactly
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidParameter(
        f'failed to parse {key} value: strconv.ParseBool: parsing "{value}": invalid syntax'
    )


def _check_unsupported(req: CreateNetworkRequest, api_version: str) -> None:
    """Requests overlayd cannot honour, for local and swarm networks alike: answered with
    an error, never by creating something other than what was asked."""
    if req.ipam_driver not in ("", "default"):
        raise NotFound(f'plugin "{req.ipam_driver}" not found')
    if req.enable_ipv6:
        raise InvalidParameter("IPv6 networks are not supported by overlayd yet")
    if req.enable_ipv4 is False and _version_at_least(api_version, 1, 48):
        raise InvalidParameter("IPv4 can only be disabled on networks with IPv6 enabled")
    if req.config_only or req.config_from:
        raise InvalidParameter("config-only networks are not supported by overlayd yet")


def _mtu_option(options: dict[str, str]) -> int:
    value = options.get(OPT_MTU)
    if value in (None, ""):
        return DEFAULT_MTU
    if not re.fullmatch(r"[+-]?[0-9]{1,10}", value):  # strconv.Atoi: no spaces, no "_"
        raise InvalidParameter(f'invalid MTU "{value}": not a number')
    mtu = int(value)
    if not 68 <= mtu <= 65535:
        raise InvalidParameter(f"invalid MTU number: {mtu} (must be between 68 and 65535)")
    return mtu


class NetworkService:
    def __init__(
        self,
        store: Store,
        kernel: Kernel,
        events: EventBus,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._kernel = kernel
        self._events = events
        self._clock_ns = clock_ns
        self._lock = asyncio.Lock()  # one mutation at a time
        self._kernel_lock = asyncio.Lock()  # one kernel converge at a time, in order
        self._generation = 0  # bumped by every committed change
        self._applied_generation = -1  # newest generation handed to the kernel
        self.changed = asyncio.Event()  # set when the kernel has catching up to do
        self._local: dict[str, NetworkRecord] = {n.id: n for n in store.networks()}
        self.swarm: SwarmNetworks | None = None  # set by the engine
        self._endpoints: dict[str, EndpointRecord] = {e.id: e for e in store.endpoints()}

    @property
    def _networks(self) -> dict[str, NetworkRecord]:
        """Local networks and, on a swarm node, the swarm's networks."""
        if self.swarm is None:
            return self._local
        return {**self._local, **self.swarm.network_records()}

    # ----- start-up -------------------------------------------------------------------

    async def start(self) -> None:
        """Create the predefined networks on first start, then converge the kernel. What
        cannot be made now (a foreign device in the way, say) is logged and retried by the
        reconcile loop: one bad object must not keep the daemon, and every other
        container's network, down."""
        async with self._lock:
            self._ensure_predefined()
            await self._converge_locked(best_effort=True, fresh=True)

    def _ensure_predefined(self) -> None:
        names = {n.name for n in self._networks.values()}
        created: list[NetworkRecord] = []
        now = self._clock_ns()
        if "bridge" not in names:
            configs = ipam.parse_ipam_config(
                None, used_subnets=self._used_subnets(), exclude=self._foreign_routes()
            )
            created.append(
                NetworkRecord(
                    id=secrets.token_hex(32),
                    name="bridge",
                    driver="bridge",
                    scope="local",
                    created=rfc3339_nano(now),
                    ipam_config=configs,
                    options={
                        OPT_DEFAULT_BRIDGE: "true",
                        OPT_ICC: "true",
                        OPT_MASQUERADE: "true",
                        "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                        OPT_BRIDGE_NAME: DEFAULT_BRIDGE_IFNAME,
                        OPT_MTU: str(DEFAULT_MTU),
                    },
                    ifname=DEFAULT_BRIDGE_IFNAME,
                )
            )
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in names:
                created.append(
                    NetworkRecord(
                        id=secrets.token_hex(32),
                        name=name,
                        driver=driver,
                        scope="local",
                        created=rfc3339_nano(now),
                    )
                )
        if created:
            self._commit(put_networks=created)
            for net in created:
                self._local[net.id] = net

    # ----- queries ----------------------------------------------------------------------

    def _endpoints_of(self, network_id: str) -> tuple[EndpointRecord, ...]:
        return tuple(e for e in self._endpoints.values() if e.network_id == network_id)

    def _view(self, net: NetworkRecord) -> NetworkView:
        peers = self.swarm.peer_hosts(net.id) if net.scope == "swarm" and self.swarm else ()
        return NetworkView(net, self._endpoints_of(net.id), tuple(peers))

    def find(self, term: str, wording: str = "delete") -> NetworkRecord:
        """Docker's lookup order: exact ID, exact name, then unique ID prefix.

        dockerd words an ambiguous match differently per route (`wording`): "inspect"
        (GET), "delete" (DELETE, prune), "attach" (connect/disconnect)."""
        if term in self._networks:
            return self._networks[term]
        by_name = [n for n in self._networks.values() if n.name == term]
        if len(by_name) == 1:
            return by_name[0]
        by_prefix = [n for n in self._networks.values() if term and n.id.startswith(term)]
        if len(by_name) > 1:
            raise InvalidParameter(_ambiguous(term, len(by_name), "name", wording))
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            raise InvalidParameter(_ambiguous(term, len(by_prefix), "ID prefix", wording))
        raise NotFound(f"network {term} not found")

    async def release_orphaned_addresses(self) -> int:
        """Give back swarm addresses allocated to this node that no local endpoint holds:
        a release that failed while the managers were unreachable, or a crash between
        allocation and commit. Left alone, peers would keep routing to them."""
        if self.swarm is None:
            return 0
        async with self._lock:  # a connect in flight holds it from allocate to commit
            orphans = self.swarm.orphans(set(self._endpoints))
        for net_id, ep_id in orphans:
            try:
                await self.swarm.release(net_id, ep_id)
                log.info("released an orphaned swarm address", network=net_id, endpoint=ep_id)
            except Exception as exc:  # retried on the next round
                log.warning("could not release an orphaned swarm address", error=str(exc))
        return len(orphans)

    def swarm_endpoints(self) -> list[EndpointRecord]:
        """Local endpoints on swarm networks: what this host publishes through gossip."""
        if self.swarm is None:
            return []
        swarm_ids = set(self.swarm.network_records())
        return [e for e in self._endpoints.values() if e.network_id in swarm_ids]

    def inspect(self, term: str) -> NetworkView:
        return self._view(self.find(term, "inspect"))

    def list(self, filters: Filters) -> list[NetworkView]:
        filters.validate(NETWORK_FILTERS)
        types = filters.get("type")
        for value in types:
            if value not in ("custom", "builtin"):
                # dockerd builds this with a plain errors.Errorf, which may reach clients
                # as a 500; bad input is a 400 here.
                raise InvalidParameter(f"invalid filter: 'type'='{value}'")
        dangling = _dangling(filters)
        by_network: dict[str, list[EndpointRecord]] = {}
        for ep in self._endpoints.values():
            by_network.setdefault(ep.network_id, []).append(ep)
        out = []
        for net in self._networks.values():
            view = NetworkView(net, tuple(by_network.get(net.id, ())))
            if not filters.match("name", net.name) or not filters.match("id", net.id):
                continue
            if not filters.exact_match("driver", net.driver):
                continue
            if not filters.exact_match("scope", net.scope):
                continue
            if not filters.match_kv_list("label", net.labels):
                continue
            if types and ("builtin" if net.predefined else "custom") not in types:
                continue
            if dangling is not None:
                in_use = net.predefined or bool(view.endpoints)
                if dangling == in_use:
                    continue
            out.append(view)
        return out

    def _foreign_routes(self) -> list[IPv4Network]:
        """Host routes that are not our own bridges' (those are `used` already)."""
        ours = set(self._used_subnets())
        return [r for r in self._kernel.host_routes() if r not in ours]

    def _used_subnets(self, exclude: str = "") -> list[IPv4Network]:
        return [
            c.subnet
            for n in self._networks.values()
            if n.id != exclude and not n.config_only
            for c in n.ipam_config
        ]

    # ----- create / delete ----------------------------------------------------------------

    async def create(self, req: CreateNetworkRequest, api_version: str) -> tuple[str, str]:
        """Validate fully, persist, answer. The bridge is made by the reconciler woken
        here, a few milliseconds later: nothing waits on an empty bridge, and the API
        answers at the speed of one fsync."""
        async with self._lock:
            if self._is_swarm_request(req):
                return await self._create_swarm_network(req, api_version), ""
            net = self._validate_create(req, api_version)
            self._commit(put_networks=[net])
            self._local[net.id] = net
            self.changed.set()
            self._publish("create", net)
            log.info("network created", id=net.id, name=net.name, driver=net.driver)
            return net.id, ""

    def _is_swarm_request(self, req: CreateNetworkRequest) -> bool:
        swarm_kind = (req.driver or "bridge") == "overlay" or req.scope == "swarm" or req.ingress
        return swarm_kind and self.swarm is not None and self.swarm.active()

    async def _create_swarm_network(self, req: CreateNetworkRequest, api_version: str) -> str:
        assert self.swarm is not None
        if not self.swarm.is_manager():
            raise Forbidden(
                "Cannot create a multi-host network from a worker node. Please create the "
                "network from a manager node."
            )
        if not req.name:
            raise InvalidParameter("invalid name: name is empty")
        if req.name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {req.name} network ")
        if (req.driver or "bridge") not in ("overlay",):
            raise InvalidParameter(f'driver "{req.driver}" does not support swarm scope')
        if req.scope not in ("", "swarm"):
            raise InvalidParameter(f"invalid scope: {req.scope}")
        _check_unsupported(req, api_version)  # what the local path refuses, refused here too
        if any(n.name == req.name for n in self._networks.values()):
            raise Conflict(f"network with name {req.name} already exists")
        _mtu_option(dict(req.options))
        net_id = await self.swarm.create_network(req)
        self.changed.set()
        net = self.swarm.network_records().get(net_id)
        if net is not None:
            self._publish("create", net)
        log.info("swarm network created", id=net_id, name=req.name)
        return net_id

    def _validate_create(self, req: CreateNetworkRequest, api_version: str) -> NetworkRecord:
        name = req.name
        if not name:
            raise InvalidParameter("invalid name: name is empty")
        if name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        driver = req.driver or "bridge"
        if driver == "overlay" or req.scope == "swarm":
            if driver == "overlay":  # swarm requests on a swarm node never reach here
                raise Forbidden(NOT_MANAGER)
            raise Forbidden("cannot create a swarm scoped network when swarm is not active")
        if req.scope not in ("", "local"):
            raise InvalidParameter(f"invalid scope: {req.scope}")
        if driver in ("host", "null"):
            raise Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver in UNSUPPORTED_DRIVERS:
            raise NotFound(f'plugin "{driver}" not found')
        if driver not in LOCAL_DRIVERS:
            raise NotFound(f'plugin "{driver}" not found')
        if req.ingress:
            raise Forbidden("cannot create a swarm scoped network when swarm is not active")
        _check_unsupported(req, api_version)
        # dockerd 28 refuses duplicate names whatever CheckDuplicate says (any version).
        if any(n.name == name for n in self._networks.values()):
            raise Conflict(f"network with name {name} already exists")

        options = dict(req.options)
        _mtu_option(options)  # validated now, applied by desired()
        _parse_bool_option(options, OPT_ICC, True)
        _parse_bool_option(options, OPT_MASQUERADE, True)
        net_id = secrets.token_hex(32)
        ifname = options.get(OPT_BRIDGE_NAME) or f"br-{net_id[:12]}"
        if not valid_ifname(ifname):
            raise InvalidParameter(
                f"invalid bridge name {ifname!r}: 1 to 15 characters of a-z, A-Z, 0-9, '-', '_' "
                "or '.' (not '.' or '..')"
            )
        if any(n.ifname == ifname for n in self._networks.values()):
            raise Conflict(f"bridge name {ifname} is already in use by another network")
        if self._kernel.link_exists(ifname):
            raise Conflict(
                f"bridge name {ifname} is already in use by a device overlayd did not create"
            )
        configs = ipam.parse_ipam_config(
            req.ipam_config,
            used_subnets=self._used_subnets(),
            exclude=self._foreign_routes(),
        )
        return NetworkRecord(
            id=net_id,
            name=name,
            driver=driver,
            scope="local",
            created=rfc3339_nano(self._clock_ns()),
            internal=req.internal,
            attachable=req.attachable,
            enable_ipv4=True,
            enable_ipv6=False,
            ipam_driver="default",
            ipam_options=req.ipam_options,
            ipam_config=configs,
            options=options,
            labels=dict(req.labels),
            user_subnet=bool(req.ipam_config),
            ifname=ifname,
        )

    async def delete(self, term: str) -> None:
        async with self._lock:
            net = self.find(term)
            if net.predefined:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            eps = self._endpoints_of(net.id)
            if eps:
                names = ", ".join(
                    f'name:"{e.container_name}" id:"{e.container_id[:12]}"' for e in eps
                )
                raise Forbidden(
                    f"error while removing network: network {net.name} has active endpoints ({names})"
                )
            if net.scope == "swarm":
                assert self.swarm is not None
                if not self.swarm.is_manager():
                    raise Forbidden(
                        f"network {net.name} is a swarm-scoped network and can only be removed "
                        "on a manager node"
                    )
                await self.swarm.remove_network(net.id)
                self.changed.set()
                self._publish("destroy", net)
                return
            await self._remove_networks_locked([net])

    async def _remove_networks_locked(self, nets: Iterable[NetworkRecord]) -> None:
        nets = list(nets)
        self._commit(delete_networks=[n.id for n in nets])
        for net in nets:
            del self._local[net.id]
        await self._converge_locked(best_effort=True)
        for net in nets:
            self._publish("destroy", net)
            log.info("network removed", id=net.id, name=net.name)

    async def prune(self, filters: Filters) -> list[str] | None:
        """Remove unused custom networks; None (JSON null) when nothing went, like dockerd."""
        filters.validate(PRUNE_FILTERS)
        untils = filters.get("until")
        if len(untils) > 1:
            raise InvalidParameter("more than one until filter specified")
        until_ns = None
        for value in untils:
            until_ns = parse_timestamp(value, self._clock_ns() / 1e9)
        async with self._lock:
            victims = []
            for net in self._local.values():
                if net.predefined or self._endpoints_of(net.id):
                    continue
                if until_ns is not None and _created_ns(net.created) > until_ns:
                    continue
                if not filters.match_kv_list("label", net.labels):
                    continue
                if filters.contains("label!") and _any_label(filters.get("label!"), net.labels):
                    continue
                victims.append(net)
            if victims:
                await self._remove_networks_locked(victims)
            self._events.publish(
                Event(
                    type="network",
                    action="prune",
                    actor_id="",
                    attributes={"reclaimed": "0"},
                    time_nano=self._clock_ns(),
                )
            )
            return [n.name for n in victims] or None

    # ----- connect / disconnect -----------------------------------------------------------

    async def connect(self, term: str, req: ConnectRequest) -> EndpointRecord:
        """Attach a container (netns), in dockerd's order of checks."""
        async with self._lock:
            try:
                cns = self._kernel.resolve_container(req.container)
            except LookupError as exc:
                raise NotFound(f"No such container: {req.container}") from exc
            if cns.key in self._kernel.host_netns_keys():
                raise Forbidden(
                    f"{req.container} is the host's own network namespace, not a container"
                )
            cid = container_id_for(cns.key)
            net = self.find(term, "attach")
            siblings = [e for e in self._endpoints.values() if e.container_id == cid]
            if net.driver == "host":
                raise InvalidParameter(HOST_NETWORK_ERROR)
            nets = self._networks
            if net.driver == "null" or any(
                e.network_id in nets and nets[e.network_id].driver == "null" for e in siblings
            ):
                raise InvalidParameter(
                    "container cannot be connected to multiple networks with one of the "
                    "networks in private (none) mode"
                )
            requested = self._validate_endpoint_settings(net, req)
            name = req.name or cns.name
            for ep in self._endpoints_of(net.id):
                if ep.container_id == cid:
                    raise Forbidden(
                        f"endpoint with name {ep.container_name} already exists in network {net.name}"
                    )
            ep_id = secrets.token_hex(32)
            swarm = self.swarm if net.scope == "swarm" else None
            if swarm is not None:
                if not net.attachable:
                    raise Forbidden(
                        f"Could not attach to network {net.name}: rpc error: code = "
                        f"PermissionDenied desc = network {net.name} not manually attachable"
                    )
                if OPT_ENCRYPTED in net.options:
                    self._check_esp(net)
                ip = IPv4Interface(
                    await swarm.allocate(net.id, ep_id, requested, req.mac_address.lower())
                ).ip
                pool = None
            else:
                pool = self._pool(net)
                ip = pool.allocate(requested)
            cfg = _subnet_config(net, ip)
            try:
                ifname = await self._kernel.free_ifname(cns.path, {e.ifname for e in siblings})
            except BaseException:
                if swarm is not None:
                    await swarm.release(net.id, ep_id)
                raise
            gateway = ""
            if (
                swarm is None
                and not net.internal
                and cfg.gateway
                and not any(e.gateway for e in siblings)
            ):
                gateway = str(cfg.gateway)
            gw_ep: EndpointRecord | None = None
            gw_net: NetworkRecord | None = None
            if swarm is not None and not net.internal:
                try:
                    gw_net, gw_ep = await self._gateway_endpoint(cns, cid, siblings, {ifname})
                except BaseException:
                    await swarm.release(net.id, ep_id)
                    raise
            ep = EndpointRecord(
                id=ep_id,
                network_id=net.id,
                container_id=cid,
                container_name=name,
                netns_path=cns.path,
                netns_key=cns.key,
                ifname=ifname,
                ipv4=f"{ip}/{cfg.subnet.prefixlen}",
                mac=req.mac_address.lower() or ipam.mac_for(ip),
                aliases=list(req.aliases),
                gateway=gateway,
            )
            old_last = net.ipam_last
            local_nets = [net] if pool is not None else []
            if pool is not None:
                net.ipam_last = str(pool.last) if pool.last else None
            new_eps = [ep] if gw_ep is None else [ep, gw_ep]
            if gw_net is not None:
                local_nets.append(gw_net)
            self._commit(put_networks=local_nets, put_endpoints=new_eps)
            for e in new_eps:
                self._endpoints[e.id] = e
            try:
                gone = await self._converge_locked(require=[e.id for e in new_eps])
                if ep.id in gone:
                    raise NotFound(f"No such container: {req.container}")
            except Exception:
                for e in new_eps:
                    del self._endpoints[e.id]
                net.ipam_last = old_last
                self._commit(put_networks=local_nets, delete_endpoints=[e.id for e in new_eps])
                await self._converge_locked(best_effort=True)
                if swarm is not None:
                    await swarm.release(net.id, ep.id)
                raise
            if swarm is not None:
                self.changed.set()  # gossip publishes it
            self._publish("connect", net, container=cid)
            log.info("endpoint connected", network=net.name, container=name, ip=ep.ipv4)
            return ep

    async def ensure_gwbridge(self) -> None:
        """Made when this node joins a swarm, as dockerd does."""
        async with self._lock:
            if any(n.name == GWBRIDGE for n in self._local.values()):
                return
            self._gwbridge_locked()
            self.changed.set()

    def _gwbridge_locked(self) -> NetworkRecord:
        """docker_gwbridge: the way out for overlay endpoints (NAT, no traffic between
        its endpoints), made on first need like dockerd does."""
        for net in self._local.values():
            if net.name == GWBRIDGE:
                return net
        req = CreateNetworkRequest(name=GWBRIDGE, options={
            OPT_BRIDGE_NAME: GWBRIDGE, OPT_ICC: "false", OPT_MASQUERADE: "true",
        })  # fmt: skip
        net = self._validate_create(req, "1.51")
        self._commit(put_networks=[net])
        self._local[net.id] = net
        self._publish("create", net)
        log.info("network created", id=net.id, name=net.name, driver=net.driver)
        return net

    async def _gateway_endpoint(
        self, cns: ContainerNetns, cid: str, siblings: list[EndpointRecord], taken: set[str]
    ) -> tuple[NetworkRecord | None, EndpointRecord | None]:
        """The container's docker_gwbridge endpoint, if it has none yet; it carries the
        default route unless another network already does."""
        gw = self._gwbridge_locked()
        if any(e.network_id == gw.id for e in siblings):
            return None, None
        ifname = await self._kernel.free_ifname(cns.path, {e.ifname for e in siblings} | taken)
        pool = self._pool(gw)
        ip = pool.allocate(None)
        gw.ipam_last = str(pool.last) if pool.last else None  # persisted with the endpoint
        cfg = _subnet_config(gw, ip)
        route = cfg.gateway and not any(e.gateway for e in siblings)
        return gw, EndpointRecord(
            id=secrets.token_hex(32),
            network_id=gw.id,
            container_id=cid,
            container_name=f"gateway_{cid[:12]}",
            netns_path=cns.path,
            netns_key=cns.key,
            ifname=ifname,
            ipv4=f"{ip}/{cfg.subnet.prefixlen}",
            mac=ipam.mac_for(ip),
            gateway=str(cfg.gateway) if route else "",
        )

    def _stale_gateway_endpoints(self, cid: str) -> list[EndpointRecord]:
        """The container's gwbridge endpoint once no non-internal overlay needs it."""
        records = self.swarm.network_records() if self.swarm is not None else {}
        mine = [e for e in self._endpoints.values() if e.container_id == cid]
        if any(e.network_id in records and not records[e.network_id].internal for e in mine):
            return []
        gw_ids = {n.id for n in self._local.values() if n.name == GWBRIDGE}
        return [e for e in mine if e.network_id in gw_ids]

    def _validate_endpoint_settings(
        self, net: NetworkRecord, req: ConnectRequest
    ) -> IPv4Address | None:
        """dockerd's validateEndpointSettings: every problem, joined under one prefix."""
        problems: list[str] = []
        requested: IPv4Address | None = None
        default_bridge = net.options.get(OPT_DEFAULT_BRIDGE) == "true"
        if req.ipv4_address:
            try:
                requested = IPv4Address(req.ipv4_address)
            except ValueError:
                problems.append(f"invalid IPv4 address: {req.ipv4_address}")
        if req.ipv6_address:
            problems.append(f"invalid IPv6 address: {req.ipv6_address} (overlayd has no IPv6 yet)")
        if (req.ipv4_address or req.ipv6_address) and default_bridge:
            problems.append("user specified IP address is supported on user defined networks only")
        elif requested is not None and not net.user_subnet:
            problems.append(
                "user specified IP address is supported only when connecting to networks "
                "with user configured subnets"
            )
        elif requested is not None and not any(
            requested in (c.ip_range or c.subnet) or requested in c.subnet for c in net.ipam_config
        ):
            problems.append(f"no configured subnet or ip-range contain the IP address {requested}")
        if req.aliases and default_bridge:
            problems.append(
                "network-scoped alias is supported only for containers in user defined networks"
            )
        # what an endpoint record carries to the other hosts (DNS names are shorter anyway)
        long = [a for a in req.aliases if len(a.encode()) > MAX_ALIAS_BYTES]
        if long:
            problems.append(f"alias {long[0][:40]!r}... is longer than {MAX_ALIAS_BYTES} bytes")
        if len(req.aliases) > MAX_ALIASES:
            problems.append(f"at most {MAX_ALIASES} aliases per endpoint")
        if req.mac_address and not _MAC.fullmatch(req.mac_address):
            raise InvalidParameter(f"invalid MAC address {req.mac_address}")
        if len(problems) == 1:
            raise InvalidParameter(f"invalid endpoint settings:\n{problems[0]}")
        if problems:
            joined = "\n".join(f"* {p}" for p in problems)
            raise InvalidParameter(f"invalid endpoint settings:\n{joined}")
        return requested

    def _pool(self, net: NetworkRecord) -> ipam.AddressPool:
        allocated = [e.ipv4_address for e in self._endpoints_of(net.id) if e.ipv4_address]
        last = IPv4Address(net.ipam_last) if net.ipam_last else None
        return ipam.AddressPool(
            net.ipam_config, allocated=allocated, last=last, name=net.name, network_id=net.id
        )

    def _known_container(self, ref: str) -> str | None:
        """The container ID `ref` names: a live netns, or one we hold endpoints for
        (by container ID, unique ID prefix or name)."""
        try:
            return container_id_for(self._kernel.resolve_container(ref).key)
        except LookupError:
            pass
        ids = {e.container_id for e in self._endpoints.values() if ref == e.container_name}
        ids |= {e.container_id for e in self._endpoints.values() if e.container_id == ref}
        if not ids and len(ref) >= 1:
            ids = {
                e.container_id for e in self._endpoints.values() if e.container_id.startswith(ref)
            }
        return ids.pop() if len(ids) == 1 else None

    async def disconnect(self, term: str, container: str, force: bool = False) -> None:
        async with self._lock:
            cid = self._known_container(container)
            if cid is None and not force:
                raise NotFound(f"No such container: {container}")
            net = self.find(term, "attach")
            if net.driver == "host":
                raise InvalidParameter(HOST_NETWORK_ERROR)
            eps = self._endpoints_of(net.id)
            if cid is None:
                # dockerd's forced clean-up of a stale endpoint by container name.
                ep = next((e for e in eps if e.container_name == container), None)
                if ep is None:
                    raise NotFound(f"endpoint {container} not found")
            else:
                ep = next((e for e in eps if e.container_id == cid), None)
                if ep is None:
                    # A plain fmt.Errorf in dockerd, hence a 500.
                    raise SystemError_(f"container {cid} is not connected to network {net.name}")
            del self._endpoints[ep.id]
            stale = self._stale_gateway_endpoints(ep.container_id) if net.scope == "swarm" else []
            for e in stale:
                del self._endpoints[e.id]
            self._commit(delete_endpoints=[ep.id, *(e.id for e in stale)])
            await self._converge_locked(best_effort=True)
            if net.scope == "swarm" and self.swarm is not None:
                try:
                    await self.swarm.release(net.id, ep.id)
                except Exception as exc:  # the address stays taken; never the endpoint
                    log.warning("could not release a swarm address", error=str(exc))
                self.changed.set()  # gossip withdraws it
            self._publish("disconnect", net, container=ep.container_id)
            log.info("endpoint disconnected", network=net.name, container=ep.container_name)

    async def left_swarm(self) -> int:
        """After `swarm leave`: this host's endpoints on swarm networks go, with the
        docker_gwbridge legs only they needed (their networks and addresses left with the
        node). Kept, they would sit in the store for ever and trip later connects."""
        async with self._lock:
            gone = [e for e in self._endpoints.values() if e.network_id not in self._local]
            if not gone:
                return 0
            for e in gone:
                del self._endpoints[e.id]
            legs = [g for cid in {e.container_id for e in gone}
                    for g in self._stale_gateway_endpoints(cid)]  # fmt: skip
            for e in legs:
                del self._endpoints[e.id]
            self._commit(delete_endpoints=[e.id for e in (*gone, *legs)])
            await self._converge_locked(best_effort=True)
            log.info("left the swarm: its endpoints removed", endpoints=len(gone))
            return len(gone)

    def _check_esp(self, net: NetworkRecord) -> None:
        """An encrypted network on a kernel that cannot encrypt: refuse before anything is
        allocated, rather than send cleartext or nothing at all."""
        why = self._kernel.esp_support()
        if why is not None:
            raise SystemError_(
                f"network {net.name} is encrypted, but this host's kernel refuses ESP with "
                f"{AEAD_NAME} ({why}): it needs CONFIG_INET_ESP and AES-GCM (modules esp4, "
                "aes, gcm)"
            )
        gaps = self._kernel.ipsec_gaps()
        if gaps:
            raise SystemError_(
                f"network {net.name} is encrypted, but this host skips IPsec policies "
                f"({', '.join(gaps)} = 1) and overlayd runs with --iptables false, so "
                "nothing would stop cleartext: set them to 0 or let overlayd manage nftables"
            )

    # ----- kernel ---------------------------------------------------------------------------

    def desired(self) -> Desired:
        bridges = set()
        endpoints = set()
        for net in self._networks.values():
            if net.driver != "bridge" or not net.ipam_config:
                continue
            cfg = net.ipam_config[0]
            mtu = _mtu_option(net.options)
            bridges.add(
                BridgeSpec(
                    network_id=net.id,
                    ifname=net.ifname,
                    gateway=IPv4Interface(f"{cfg.gateway}/{cfg.subnet.prefixlen}"),
                    subnet=cfg.subnet,
                    mtu=mtu,
                    internal=net.internal,
                    masquerade=_parse_bool_option(net.options, OPT_MASQUERADE, True),
                    icc=_parse_bool_option(net.options, OPT_ICC, True),
                )
            )
            for ep in self._endpoints_of(net.id):
                endpoints.add(
                    EndpointSpec(
                        endpoint_id=ep.id,
                        network_id=net.id,
                        bridge=net.ifname,
                        host_ifname=f"ove-{ep.id[:11]}",
                        netns_path=ep.netns_path,
                        ifname=ep.ifname,
                        address=IPv4Interface(ep.ipv4),
                        mac=ep.mac,
                        mtu=mtu,
                        default_gateway=IPv4Address(ep.gateway) if ep.gateway else None,
                        netns_key=ep.netns_key or None,
                    )
                )
        overlays, used = self._overlay_desired(endpoints)
        if self.swarm is None:
            return Desired(bridges=frozenset(bridges), endpoints=frozenset(endpoints))
        # SAs stay while the swarm has encrypted networks, local endpoints or not; a kernel
        # without ESP gets none (its connects to them are refused, _check_esp)
        ipsec = self.swarm.ipsec_spec()
        if ipsec is not None and not ipsec.hold and self._kernel.esp_support() is not None:
            ipsec = None
        if self.swarm.active() and not self.swarm.state_known():
            # without the swarm's state, its networks would look deleted: tearing down the
            # sandboxes would cut every container's overlay traffic until the state is back
            return Desired(bridges=frozenset(bridges), endpoints=frozenset(endpoints),
                           ipsec=ipsec, hold_overlays=True)  # fmt: skip
        if not overlays:
            vtep = self.swarm.vtep() if ipsec is not None else None
            return Desired(bridges=frozenset(bridges), endpoints=frozenset(endpoints),
                           vtep=vtep, ipsec=ipsec)  # fmt: skip
        return Desired(
            bridges=frozenset(bridges),
            endpoints=frozenset(endpoints),
            overlays=frozenset(overlays),
            peers=frozenset(self.swarm.peers(used)),
            vtep=self.swarm.vtep(),
            ipsec=ipsec,
        )

    def _overlay_desired(self, endpoints: set[EndpointSpec]) -> tuple[set[OverlaySpec], set[str]]:
        """Overlay sandboxes for swarm networks with local endpoints, and those endpoints."""
        overlays: set[OverlaySpec] = set()
        if self.swarm is None:
            return overlays, set()
        records = self.swarm.network_records()
        for ep in self._endpoints.values():
            net = records.get(ep.network_id)
            spec = self.swarm.overlay_spec(net) if net is not None else None
            if spec is None:
                continue
            overlays.add(spec)
            endpoints.add(
                EndpointSpec(
                    endpoint_id=ep.id,
                    network_id=net.id,
                    bridge=SANDBOX_BRIDGE,
                    host_ifname=f"ove-{ep.id[:11]}",
                    netns_path=ep.netns_path,
                    ifname=ep.ifname,
                    address=IPv4Interface(ep.ipv4),
                    mac=ep.mac,
                    mtu=spec.mtu,
                    default_gateway=IPv4Address(ep.gateway) if ep.gateway else None,
                    netns_key=ep.netns_key or None,
                )
            )
        return overlays, {o.network_id for o in overlays}

    def _commit(self, **change: Any) -> None:
        """Persist one change; every change makes a new generation of desired state."""
        self._store.commit(**change)
        self._generation += 1

    async def _reconcile(
        self, desired: Desired, generation: int, fresh: bool = False
    ) -> Convergence:
        """Hand one generation of desired state to the kernel, never an older one after
        a newer: a background converge that lost the race must not undo a connect."""
        async with self._kernel_lock:
            if generation < self._applied_generation:
                return Convergence()
            try:
                result = await self._kernel.converge(desired, fresh)
            except Exception as exc:
                result = Convergence(errors=(str(exc),), host_wide_failure=True)
            self._applied_generation = generation
            return result

    async def converge(self, fresh: bool = False) -> None:
        """Background converge (after create; `fresh` every few seconds as a safety net).

        The desired state is read under the lock, the kernel work runs without it, so API
        calls are never queued behind netlink. Endpoints whose container namespace
        vanished are forgotten afterwards."""
        async with self._lock:
            desired, generation = self.desired(), self._generation
        result = await self._reconcile(desired, generation, fresh)
        if result.errors:
            log.warning("kernel converge incomplete; will retry", errors=list(result.errors))
        if result.gone:
            async with self._lock:
                self._forget_gone(result.gone)
            self.changed.set()  # their veths go on the next round

    async def _converge_locked(
        self, best_effort: bool = False, fresh: bool = False, require: Iterable[str] = ()
    ) -> set[str]:
        """Converge now, under the lock, for a change the caller is about to acknowledge.
        Strict mode raises, so the caller can roll back, when an endpoint in `require` is
        not in place or a host-wide op failed; errors about other objects (a foreign
        device on another network's name, say) are logged and retried, not blamed on it."""
        result = await self._reconcile(self.desired(), self._generation, fresh)
        if result.errors:
            concerned = result.host_wide_failure or bool(set(require) & result.not_in_place)
            if not best_effort and concerned:
                raise SystemError_(f"failed to program the kernel: {'; '.join(result.errors)}")
            log.warning("kernel converge incomplete; will retry", errors=list(result.errors))
        if best_effort and result.gone:
            self._forget_gone(result.gone)
            self.changed.set()
        return set(result.gone)

    def _forget_gone(self, gone: Iterable[str]) -> None:
        stale = [self._endpoints[i] for i in gone if i in self._endpoints]
        if not stale:
            return
        self._commit(delete_endpoints=[e.id for e in stale])
        for ep in stale:
            del self._endpoints[ep.id]
            net = self._networks.get(ep.network_id)
            if net is not None:
                self._publish("disconnect", net, container=ep.container_id)
            log.info("endpoint removed: container namespace is gone", endpoint=ep.id)

    def _publish(self, action: str, net: NetworkRecord, **extra: str) -> None:
        attrs = {"name": net.name, "type": net.driver}
        attrs.update(extra)
        self._events.publish(
            Event(
                type="network",
                action=action,
                actor_id=net.id,
                attributes=attrs,
                scope=net.scope,
                time_nano=self._clock_ns(),
            )
        )


def _subnet_config(net: NetworkRecord, ip: IPv4Address) -> ipam.IpamConfig:
    for cfg in net.ipam_config:
        if ip in cfg.subnet:
            return cfg
    raise InvalidParameter(f"no configured subnet contains {ip}")


def _subnet_of(net: NetworkRecord, ip: IPv4Address) -> IPv4Network:
    return _subnet_config(net, ip).subnet


def _version_at_least(version: str, major: int, minor: int) -> bool:
    try:
        a, b = (int(p) for p in version.split(".", 1))
    except ValueError:
        return True
    return (a, b) >= (major, minor)


def _created_ns(created: str) -> int:
    text = created.rstrip("Z")
    base, _, frac = text.partition(".")
    sec = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return int(sec) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def _any_label(items: set[str], labels: dict[str, str]) -> bool:
    for item in items:
        key, sep, value = item.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return True
    return False


def _ambiguous(term: str, count: int, basis: str, wording: str) -> str:
    if wording == "inspect":
        return f"{count} matches found based on {basis}: network {term} is ambiguous"
    if wording == "attach":
        return f"network {term} is ambiguous ({count} matches found on {basis})"
    return f"network {term} is ambiguous ({count} matches found based on {basis})"


def _dangling(filters: Filters) -> bool | None:
    values = filters.get("dangling")
    if not values:
        return None
    if len(values) > 1:
        raise InvalidParameter('got more than one value for filter key "dangling"')
    (value,) = values
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidParameter(
        'invalid value for filter \'dangling\', must be "true" (or "1"), or "false" (or "0")'
    )
