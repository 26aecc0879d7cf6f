"""IPAM the way dockerd's default driver does it: subnet choice, IPAM.Config checks, addresses.

Pure logic: no I/O, no clock, no asyncio. The engine persists what it needs (the configs,
the allocated addresses and the serial cursor `AddressPool.last`) and rebuilds a pool from them.

Docker behaviour copied here (moby 25-28, default IPAM, read from source):
- Default pools are split first-fit in address order, skipping anything that overlaps a
  subnet already in use (libnetwork/ipams/defaultipam/address_space.go).
- `IPAM.Config` is validated as a whole first and every problem is reported at once
  (api/types/network/ipam.go ValidateIPAM); then each entry takes its subnet, its gateway,
  then its auxiliary addresses, in that order (libnetwork/network.go ipamAllocateVersion).
- A subnet reserves its network and broadcast address unless it is a /31 or /32
  (defaultipam/allocator.go newPoolData). The gateway, when not given, is the first free
  address of the ip-range (or subnet), exactly like a container's.
- Endpoint addresses are handed out serially: next free after the last one handed out,
  wrapping around (libnetwork/bitmap/sequence.go `curr`), so a freed address is not reused
  at once. (Swarm's allocator asks for serial; local bridge endpoints in dockerd ask for
  first-free. overlayd is serial everywhere, which only ever delays reuse.)

Where overlayd deliberately differs, the code says so (IPv6 entries, overlap with --ip-range).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface
from itertools import chain
from typing import Any

from manager.errors import Forbidden, InvalidParameter, SystemError_, Unavailable

# --- Docker's messages ---------------------------------------------------------------------

# ipamapi.ErrPoolOverlap (libnetwork/ipamapi/contract.go), wrapped by RequestPool in
# libnetwork/ipams/defaultipam/allocator.go as types.ForbiddenErrorf("invalid pool request: %v")
MSG_POOL_OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"
# ipamapi.ErrNoMoreSubnets (libnetwork/ipamapi/contract.go), InvalidParameter; returned by
# allocatePredefinedPool in libnetwork/ipams/defaultipam/address_space.go
MSG_NO_MORE_SUBNETS = "all predefined address pools have been fully subnetted"
# ipamapi.ErrIPAlreadyAllocated (libnetwork/ipamapi/contract.go), Forbidden
MSG_ADDRESS_IN_USE = "Address already in use"
# ipamapi.ErrNoAvailableIPs (libnetwork/ipamapi/contract.go), Unavailable
MSG_NO_AVAILABLE_IPS = "no available addresses on this pool"
# daemon/network.go createNetwork wraps ValidateIPAM's error (errdefs.InvalidParameter);
# api/types/network/ipam.go joins several with "* " bullets, a single one stays bare.
MSG_INVALID_NETWORK_CONFIG = "invalid network config:\n"


def _gateway_error(gateway: str, reason: str) -> SystemError_:
    """libnetwork/network.go ipamAllocateVersion: types.InternalErrorf, so dockerd answers 500."""
    return SystemError_(f"failed to allocate gateway ({gateway}): {reason}")


def _aux_error(name: str, value: str, reason: str) -> SystemError_:
    """libnetwork/network.go ipamAllocateVersion: types.InternalErrorf, so dockerd answers 500."""
    return SystemError_(f"failed to allocate secondary ip address ({name}:{value}): {reason}")


def _not_in_subnets_error(ip: IPv4Address) -> InvalidParameter:
    """libnetwork/endpoint.go assignAddressVersion: types.InvalidParameterErrorf."""
    return InvalidParameter(
        f"invalid address {ip}: It does not belong to any of this network's subnets"
    )


def _exhausted_error(name: str | None, network_id: str) -> SystemError_ | Unavailable:
    """libnetwork/endpoint.go assignAddressVersion (plain fmt.Errorf: 500) when the network is
    known; the bare ipamapi.ErrNoAvailableIPs (503) otherwise."""
    if name is None:
        return Unavailable(MSG_NO_AVAILABLE_IPS)
    return SystemError_(
        f"no available IPv4 addresses on this network's address pools: {name} ({network_id})"
    )


# --- pools -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolSpec:
    """A base network carved into subnets of prefix length `size` (ipamutils.NetworkToSplit)."""

    base: IPv4Network
    size: int

    def __post_init__(self) -> None:
        if not self.base.prefixlen <= self.size <= 32:
            raise ValueError(
                f"pool {self.base}: size /{self.size} outside /{self.base.prefixlen}..32"
            )


def _pool(base: str, size: int) -> PoolSpec:
    return PoolSpec(IPv4Network(base), size)


# libnetwork/ipamutils/utils.go localScopeDefaultNetworks: 172.17/16 .. 172.31/16 one /16
# each, then 192.168.0.0/16 in /20s (31 subnets in all).
DEFAULT_LOCAL_POOLS: tuple[PoolSpec, ...] = (
    _pool("172.17.0.0/16", 16),
    _pool("172.18.0.0/16", 16),
    _pool("172.19.0.0/16", 16),
    _pool("172.20.0.0/14", 16),
    _pool("172.24.0.0/14", 16),
    _pool("172.28.0.0/14", 16),
    _pool("192.168.0.0/16", 20),
)
# libnetwork/ipamutils/utils.go globalScopeDefaultNetworks: swarm's DefaultAddrPool/SubnetSize.
DEFAULT_GLOBAL_POOLS: tuple[PoolSpec, ...] = (_pool("10.0.0.0/8", 24),)


def overlaps(a: IPv4Network, b: IPv4Network) -> bool:
    """True if the two networks share any address (netip.Prefix.Overlaps)."""
    return a.overlaps(b)


def _first_free_subnet(pools: Iterable[PoolSpec], taken: Sequence[IPv4Network]) -> IPv4Network:
    """First fit over the pools in address order (Docker sorts them), skipping overlaps.

    Jumps past each blocking network instead of testing every candidate, so a /8 split in
    /24s with many networks in use stays cheap.
    """
    spans = [(int(n.network_address), int(n.broadcast_address)) for n in taken]
    for pool in sorted(pools, key=lambda p: (p.base.network_address, p.base.prefixlen)):
        step = 1 << (32 - pool.size)
        cand = int(pool.base.network_address)
        last = int(pool.base.broadcast_address)
        while cand + step - 1 <= last:
            end = cand + step - 1
            block_end = max((e for s, e in spans if s <= end and e >= cand), default=None)
            if block_end is None:
                return IPv4Network((cand, pool.size))
            cand = max(cand + step, -(-(block_end + 1) // step) * step)
    raise InvalidParameter(MSG_NO_MORE_SUBNETS)


# --- one IPAM.Config entry ----------------------------------------------------------------------


@dataclass(frozen=True)
class IpamConfig:
    """One entry of a network's IPAM.Config, validated and normalized.

    `gateway` is None only for a network created without a gateway (default_gateway=False).
    `aux_addresses` holds (name, address) pairs sorted by name so the value is hashable;
    a Mapping is accepted at construction. Use `aux` for a dict.
    """

    subnet: IPv4Network
    gateway: IPv4Address | None
    ip_range: IPv4Network | None = None
    aux_addresses: tuple[tuple[str, IPv4Address], ...] = ()

    def __post_init__(self) -> None:
        aux: Any = self.aux_addresses
        pairs = aux.items() if isinstance(aux, Mapping) else aux
        object.__setattr__(self, "aux_addresses", tuple(sorted((str(k), v) for k, v in pairs)))
        if self.gateway is not None and self.gateway not in self.subnet:
            raise ValueError(f"gateway {self.gateway} outside {self.subnet}")
        if self.ip_range is not None and not self.ip_range.subnet_of(self.subnet):
            raise ValueError(f"ip-range {self.ip_range} outside {self.subnet}")
        for name, addr in self.aux_addresses:
            if addr not in self.subnet:
                raise ValueError(f"auxiliary address {name}={addr} outside {self.subnet}")

    @property
    def aux(self) -> dict[str, IPv4Address]:
        return dict(self.aux_addresses)

    @property
    def reserved(self) -> frozenset[IPv4Address]:
        """Addresses no endpoint may take: network/broadcast (not on /31, /32), gateway, aux."""
        out = set(_network_and_broadcast(self.subnet))
        if self.gateway is not None:
            out.add(self.gateway)
        out.update(addr for _, addr in self.aux_addresses)
        return frozenset(out)

    def to_docker(self) -> dict[str, Any]:
        """As `network inspect` shows it: empty keys left out (Go's omitempty), keys in order."""
        doc: dict[str, Any] = {"Subnet": str(self.subnet)}
        if self.ip_range is not None:
            doc["IPRange"] = str(self.ip_range)
        if self.gateway is not None:
            doc["Gateway"] = str(self.gateway)
        if self.aux_addresses:
            doc["AuxiliaryAddresses"] = {k: str(v) for k, v in self.aux_addresses}
        return doc

    @classmethod
    def from_docker(cls, doc: Mapping[str, Any]) -> IpamConfig:
        """Inverse of to_docker, for our own stored records (trusted: raises ValueError)."""
        ip_range = doc.get("IPRange")
        gateway = doc.get("Gateway")
        aux = doc.get("AuxiliaryAddresses") or {}
        return cls(
            subnet=IPv4Network(doc["Subnet"]),
            gateway=IPv4Address(gateway) if gateway else None,
            ip_range=IPv4Network(ip_range) if ip_range else None,
            aux_addresses=tuple((k, IPv4Address(v)) for k, v in aux.items()),
        )


def _network_and_broadcast(subnet: IPv4Network) -> tuple[IPv4Address, ...]:
    """What newPoolData pre-reserves: nothing on a /31 (RFC 3021) or a /32."""
    if subnet.prefixlen >= 31:
        return ()
    return (subnet.network_address, subnet.broadcast_address)


# --- parsing like Go's net/netip -----------------------------------------------------------------

_Addr = IPv4Address | IPv6Address
_Prefix = IPv4Interface | IPv6Interface  # keeps host bits, like netip.Prefix


def _parse_addr(text: str) -> _Addr | None:
    """netip.ParseAddr: dotted quad without leading zeros, or IPv6 (zone allowed)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_prefix(text: str) -> _Prefix | None:
    """netip.ParsePrefix: "addr/bits", decimal bits without sign or leading zero, no zone."""
    addr_text, slash, bits_text = text.rpartition("/")
    if not slash or "%" in addr_text or not (bits_text.isascii() and bits_text.isdigit()):
        return None
    if len(bits_text) > 1 and bits_text[0] == "0":
        return None
    addr = _parse_addr(addr_text)
    if addr is None or int(bits_text) > addr.max_prefixlen:
        return None
    return ipaddress.ip_interface(f"{addr}/{int(bits_text)}")


def _family(value: _Addr | _Prefix) -> str:
    return "IPv4" if value.version == 4 else "IPv6"


def _is_masked(prefix: _Prefix) -> bool:
    return prefix.ip == prefix.network.network_address


def _masked(prefix: _Prefix) -> str:
    return str(prefix.network)


# --- JSON shape checks (what Go's decoder rejects before any validation) --------------------

_FIELDS = {"subnet": "Subnet", "iprange": "IPRange", "gateway": "Gateway"}
_AUX_FIELD = "AuxiliaryAddresses"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_error(value: Any, struct: str, path: str, go_type: str) -> InvalidParameter:
    """api/server/httputils ReadJSON wraps encoding/json's UnmarshalTypeError in "invalid JSON".

    The struct/field naming follows Go's UnmarshalTypeError.Error(); the exact struct name
    Go prints varies between Go releases, so treat this text as best effort.
    """
    return InvalidParameter(
        f"invalid JSON: json: cannot unmarshal {_json_kind(value)} into Go struct field "
        f"{struct}.{path} of type {go_type}"
    )


@dataclass(frozen=True)
class _RawEntry:
    subnet: str
    ip_range: str
    gateway: str
    aux: tuple[tuple[str, str], ...]


def _decode_entries(raw: Any) -> list[_RawEntry]:
    """The request's IPAM.Config as Go would decode it: null is empty, keys match any case."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _type_error(raw, "IPAM", "IPAM.Config", "[]network.IPAMConfig")
    entries = []
    for item in raw:
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise _type_error(item, "IPAM", "IPAM.Config", "network.IPAMConfig")
        values = {"Subnet": "", "IPRange": "", "Gateway": ""}
        aux: dict[str, str] = {}
        for key, value in item.items():
            folded = str(key).casefold()
            if folded in _FIELDS:
                name = _FIELDS[folded]
                if value is not None and not isinstance(value, str):
                    raise _type_error(value, "IPAMConfig", f"IPAM.Config.{name}", "string")
                values[name] = value or ""
            elif folded == _AUX_FIELD.casefold():
                if value is not None and not isinstance(value, dict):
                    raise _type_error(
                        value, "IPAMConfig", f"IPAM.Config.{_AUX_FIELD}", "map[string]string"
                    )
                aux = {}
                for k, v in (value or {}).items():
                    if v is not None and not isinstance(v, str):
                        raise _type_error(v, "IPAMConfig", f"IPAM.Config.{_AUX_FIELD}", "string")
                    aux[str(k)] = v or ""
        entries.append(
            _RawEntry(values["Subnet"], values["IPRange"], values["Gateway"], tuple(aux.items()))
        )
    return entries


# --- ValidateIPAM (api/types/network/ipam.go) ----------------------------------------------------


def _address_problem(text: str, subnet: _Prefix) -> str | None:
    """validateAddress: why `text` can't be a gateway/aux address of `subnet`, or None."""
    addr = _parse_addr(text)
    if addr is None:
        return "invalid address"
    if addr.version != subnet.version:
        return f"parent subnet is an {_family(subnet)} block"
    if addr not in subnet.network:
        return f"parent subnet {subnet} doesn't contain this address"
    return None


def _ip_range_problems(text: str, subnet: _Prefix) -> list[str]:
    """validateIPRange, every message in its order."""
    prefix = _parse_prefix(text)
    if prefix is None:
        return [f"invalid ip-range {text}: invalid CIDR block notation"]
    if prefix.version != subnet.version:
        return [f"invalid ip-range {text}: parent subnet is an {_family(subnet)} block"]
    errs = []
    if prefix.network.prefixlen < subnet.network.prefixlen:
        errs.append(
            f"invalid ip-range {text}: CIDR block is bigger than its parent subnet {subnet}"
        )
    if not _is_masked(prefix):
        errs.append(f"invalid ip-range {prefix}: it should be {_masked(prefix)}")
    if not subnet.network.overlaps(prefix.network):
        errs.append(f"invalid ip-range {text}: parent subnet {subnet} doesn't contain ip-range")
    return errs


def _validate(entries: Sequence[_RawEntry]) -> None:
    """ValidateIPAM: collect every problem of every entry, then fail once (400)."""
    errs: list[str] = []
    for e in entries:
        subnet = _parse_prefix(e.subnet)
        if subnet is None:
            errs.append(f"invalid subnet {e.subnet}: invalid CIDR block notation")
            continue
        if subnet.version == 6:
            # overlayd's own rule: Docker would skip the entry unless EnableIPv6 is set.
            errs.append(f"invalid subnet {e.subnet}: only IPv4 subnets are supported")
            continue
        if not _is_masked(subnet):
            errs.append(f"invalid subnet {subnet}: it should be {_masked(subnet)}")
        if e.ip_range:
            errs.extend(_ip_range_problems(e.ip_range, subnet))
        if e.gateway and (why := _address_problem(e.gateway, subnet)):
            errs.append(f"invalid gateway {e.gateway}: {why}")
        for name, value in e.aux:
            # Docker lets an empty value through to libnetwork ("non parsable secondary ip
            # address (name:) passed for network <name>"); overlayd says it here instead.
            if why := _address_problem(value, subnet) if value else "invalid address":
                errs.append(f"invalid auxiliary address {name}: {why}")
    if len(errs) == 1:
        raise InvalidParameter(MSG_INVALID_NETWORK_CONFIG + errs[0].strip())
    if errs:
        raise InvalidParameter(MSG_INVALID_NETWORK_CONFIG + "* " + "\n* ".join(errs))


# --- parse_ipam_config -------------------------------------------------------------------------


def _first_free(
    span: IPv4Network, taken: set[IPv4Address], start: int | None = None
) -> IPv4Address | None:
    """The bitmap's serial search: first free address of `span` from `start` on, wrapping."""
    lo, hi = int(span.network_address), int(span.broadcast_address)
    begin = start if start is not None and lo < start <= hi else lo
    used = {int(a) for a in taken}
    for n in chain(range(begin, hi + 1), range(lo, begin)):
        if n not in used:
            return IPv4Address(n)
    return None


def parse_ipam_config(
    raw: list[dict[str, Any]] | None,
    *,
    used_subnets: Iterable[IPv4Network],
    pools: Iterable[PoolSpec] = DEFAULT_LOCAL_POOLS,
    default_gateway: bool = True,
    exclude: Iterable[IPv4Network] = (),
) -> list[IpamConfig]:
    """The request's IPAM.Config checked and normalized, or a Docker error; nothing half-done.

    Empty/None: the first free subnet of `pools` (avoiding `used_subnets` and `exclude`, the
    host's own routes as Docker 27+ passes them), gateway = its first host address.
    Otherwise every entry must name an IPv4 subnet; gateways default to the first free
    address of the ip-range (or subnet), as dockerd does. `default_gateway=False` leaves
    networks without a configured gateway gatewayless (dockerd's skipGwAlloc).
    """
    entries = _decode_entries(raw)
    used = list(used_subnets)
    if not entries:
        subnet = _first_free_subnet(pools, [*used, *exclude])
        gateway = _first_free(subnet, set(_network_and_broadcast(subnet)))
        return [IpamConfig(subnet, gateway if default_gateway else None)]

    _validate(entries)
    configs: list[IpamConfig] = []
    for e in entries:
        subnet = IPv4Network(e.subnet)  # validated: IPv4 and masked
        ip_range = IPv4Network(e.ip_range) if e.ip_range else None
        # Docker skips this check when an ip-range is given (moby#46756); we don't: two
        # networks sharing a subnet is never what a bridge or overlay network wants.
        if any(overlaps(subnet, other) for other in (*used, *(c.subnet for c in configs))):
            raise Forbidden(MSG_POOL_OVERLAP)
        taken = set(_network_and_broadcast(subnet))
        gateway: IPv4Address | None = None
        if e.gateway:
            gateway = IPv4Address(e.gateway)
            if gateway in taken:
                raise _gateway_error(e.gateway, MSG_ADDRESS_IN_USE)
        elif default_gateway:
            gateway = _first_free(ip_range or subnet, taken)
            if gateway is None:
                raise _gateway_error("", MSG_NO_AVAILABLE_IPS)
        if gateway is not None:
            taken.add(gateway)
        aux = []
        for name, value in e.aux:
            addr = IPv4Address(value)
            if addr in taken:
                raise _aux_error(name, value, MSG_ADDRESS_IN_USE)
            taken.add(addr)
            aux.append((name, addr))
        configs.append(IpamConfig(subnet, gateway, ip_range, tuple(aux)))
    return configs


# --- addresses of one network ---------------------------------------------------------------------


class AddressPool:
    """Allocation state for one network's addresses (all IpamConfig entries of it).

    Automatic addresses come from the first entry with room (its ip-range, else its subnet),
    serially within each entry like dockerd's bitmap: the search starts after the last
    address handed out there and wraps. Static addresses may be anywhere in a subnet.
    Pass `name`/`network_id` to get dockerd's user-facing exhaustion message (500);
    without them exhaustion is IPAM's own "no available addresses on this pool" (503).
    """

    def __init__(
        self,
        configs: Sequence[IpamConfig],
        *,
        allocated: Iterable[IPv4Address] = (),
        last: IPv4Address | None = None,
        name: str | None = None,
        network_id: str = "",
    ) -> None:
        self._configs = tuple(configs)
        self._reserved = frozenset().union(*(c.reserved for c in self._configs))
        self._name = name
        self._network_id = network_id
        self._allocated: set[IPv4Address] = set()
        for ip in allocated:
            ip = IPv4Address(ip)
            if self._index_of(ip) is None or ip in self._reserved:
                raise ValueError(f"allocated address {ip} is reserved or outside the subnets")
            self._allocated.add(ip)
        # next ordinal to try, per entry (the bitmap's `curr`)
        self._cursor: dict[int, int] = {}
        self._last: IPv4Address | None = None
        if last is not None:
            last = IPv4Address(last)
            index = self._index_of(last)
            if index is None:
                raise ValueError(f"last address {last} outside the subnets")
            self._cursor[index] = int(last) + 1
            self._last = last

    def _index_of(self, ip: IPv4Address) -> int | None:
        for i, cfg in enumerate(self._configs):
            if ip in cfg.subnet:
                return i
        return None

    @property
    def configs(self) -> tuple[IpamConfig, ...]:
        return self._configs

    @property
    def last(self) -> IPv4Address | None:
        """The last address handed out automatically: persist it to keep allocation serial."""
        return self._last

    @property
    def allocated(self) -> frozenset[IPv4Address]:
        """Endpoint addresses in use (reserved ones not included)."""
        return frozenset(self._allocated)

    @property
    def reserved(self) -> frozenset[IPv4Address]:
        """Network/broadcast, gateways and auxiliary addresses of every entry."""
        return self._reserved

    def allocate(self, requested: IPv4Address | None = None) -> IPv4Address:
        """Take `requested`, or the next free address; raise Docker's error otherwise."""
        taken = self._reserved | self._allocated
        if requested is not None:
            requested = IPv4Address(requested)
            if self._index_of(requested) is None:
                raise _not_in_subnets_error(requested)
            if requested in taken:
                raise Forbidden(MSG_ADDRESS_IN_USE)
            self._allocated.add(requested)
            return requested
        for i, cfg in enumerate(self._configs):
            ip = _first_free(cfg.ip_range or cfg.subnet, taken, self._cursor.get(i))
            if ip is not None:
                self._allocated.add(ip)
                self._cursor[i] = int(ip) + 1
                self._last = ip
                return ip
        raise _exhausted_error(self._name, self._network_id)

    def release(self, ip: IPv4Address) -> None:
        """Give an endpoint address back; unknown or reserved addresses are left alone."""
        self._allocated.discard(IPv4Address(ip))


def mac_for(ip: IPv4Address) -> str:
    """Docker's endpoint MAC: 02:42 then the four IPv4 bytes, e.g. 02:42:ac:12:00:02."""
    return "02:42:" + ":".join(f"{b:02x}" for b in IPv4Address(ip).packed)
