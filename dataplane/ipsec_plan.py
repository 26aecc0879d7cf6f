"""Encrypted overlays: the ESP SAs and policies this host needs, and the diff. Pure.

Encrypted networks' vxlan devices use a VXLAN port of their own (the data-path port + 1,
see daemon.swarm_networks), so policies on that UDP port select exactly their traffic:
no packet marking, no VNI matching, no netfilter. Two policies, for every address:
outbound (the kernel encrypts with the SA for the destination, or drops the packet while
there is none: never cleartext, whatever the order of changes) and inbound (what one of
our SAs did not decrypt is dropped: nobody can inject cleartext into an encrypted
network; a cleartext packet to the plain port finds no device with an encrypted VNI).

SAs with every other node of the swarm while it has an encrypted network: one outbound
(the primary key), one inbound per key of the ring (a peer may still send with the
previous primary, or already with the next). Not only with the current peers of some
network: a peer that flaps must not have its SAs re-created. SPI and key are derived
from (ring key, sender, receiver, the sender's epoch) with HMAC-SHA256, so both ends
compute the same SA without a word between them; the epoch is random and changes
whenever a host starts sending from scratch (a reboot), so no key is ever used by two SA
instances (GCM must never see a nonce twice), and the receiver's replay window starts
fresh with the sender's sequence numbers.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address

from .model import SANDBOX_VXLAN, Desired, Observed, ProgramXfrm, XfrmObserved
from .xfrmmsg import AEAD_KEY_BYTES, POLICY_PRIORITY, REQID, PolicyEntry, SaEntry

_LABEL = b"overlayd esp v2"


def derive(key: bytes, src: IPv4Address, dst: IPv4Address, epoch: str) -> tuple[int, bytes]:
    """(SPI, AEAD key) for packets src -> dst under one ring key and the sender's epoch.
    SPIs below 256 are reserved (RFC 4303)."""
    msg = _LABEL + src.packed + dst.packed + epoch.encode()
    mac = hmac.new(key, msg, hashlib.sha256).digest()
    spi = 0x100 + int.from_bytes(mac[:4], "big") % (0xFFFFFFFF - 0x100)
    return spi, mac[4 : 4 + AEAD_KEY_BYTES]


def _policies(port: int) -> set[PolicyEntry]:
    return {PolicyEntry(port, outbound, REQID, POLICY_PRIORITY) for outbound in (True, False)}


def wanted(desired: Desired, observed: Observed) -> tuple[XfrmObserved, list[str]]:
    """The SAs and policies desired, and why some cannot be had. Policies also stay for
    as long as a sandbox still holds a vxlan device on their port (one being removed)."""
    spec = desired.ipsec
    if spec is not None and spec.hold:
        return observed.xfrm, []
    problems: list[str] = []
    policies: set[PolicyEntry] = set()
    if spec is not None:
        policies |= _policies(spec.port)
    policies |= {p for p in observed.xfrm.policies if p.dport in _vxlan_ports(observed)}
    if spec is None:
        return XfrmObserved(policies=frozenset(policies)), problems
    me = desired.vtep
    if me is None or not spec.keys or not spec.epoch:
        # not known yet (a daemon starting up, keys not yet replicated): the SAs in the
        # kernel stay as they are, so a restart never interrupts encrypted traffic
        what = "no local VTEP address" if me is None else "no data-path keys or epoch yet"
        if any(o.encrypted for o in desired.overlays):
            problems.append(f"encrypted overlays: {what}")
        return XfrmObserved(observed.xfrm.sas, frozenset(policies)), problems
    sas: dict[tuple[IPv4Address, int], SaEntry] = {}
    for peer, epoch in sorted(spec.peers):
        if peer == me:
            continue
        spi, key = derive(spec.primary, me, peer, spec.epoch)
        _add(sas, SaEntry(me, peer, spi, key, REQID, spec.port), problems)
        if not epoch:
            continue  # it has not told its epoch yet: nothing it sends can be decrypted
        for ring_key in spec.keys:
            spi, key = derive(ring_key, peer, me, epoch)
            _add(sas, SaEntry(peer, me, spi, key, REQID, spec.port), problems)
    return XfrmObserved(frozenset(sas.values()), frozenset(policies)), problems


def _vxlan_ports(observed: Observed) -> set[int]:
    ports = set()
    for sandbox in observed.sandboxes.values():
        link = sandbox.links.get(SANDBOX_VXLAN)
        if link is not None and link.vxlan is not None:
            ports.add(link.vxlan.port)
    return ports


def _add(sas: dict[tuple[IPv4Address, int], SaEntry], sa: SaEntry, problems: list[str]) -> None:
    """SAs are looked up by (destination, SPI): two derived alike (odds ~n^2/2^33) cannot
    both exist; the first (in sorted order, the same every time) wins and it is said."""
    other = sas.get((sa.dst, sa.spi))
    if other is None:
        sas[(sa.dst, sa.spi)] = sa
    elif other != sa:
        problems.append(f"ESP SPI 0x{sa.spi:08x} towards {sa.dst} derived twice "
                        f"({other.src} and {sa.src}); the next key rotation ends it")  # fmt: skip


def plan_xfrm(desired: Desired, observed: Observed) -> tuple[list[ProgramXfrm],
                                                             list[ProgramXfrm], list[str]]:  # fmt: skip
    """(early, late, problems): what is missing, added before the vxlan devices that send
    through it; what is not wanted, removed after the devices have gone. An SA whose
    (dst, spi) is taken by a different one of ours is replaced early (a new one would be
    refused as existing)."""
    want, problems = wanted(desired, observed)
    have = observed.xfrm
    add = want.sas - have.sas
    taken = {(s.dst, s.spi) for s in add}
    drop = have.sas - want.sas
    replaced = {s for s in drop if (s.dst, s.spi) in taken}
    put = want.policies - have.policies
    early: list[ProgramXfrm] = []
    if replaced:
        early.append(ProgramXfrm(del_sas=tuple(sorted(replaced, key=_sa_order))))
    if add or put:
        early.append(ProgramXfrm(
            add_sas=tuple(sorted(add, key=lambda s: (s.src == desired.vtep, *_sa_order(s)))),
            put_policies=tuple(sorted(put, key=_policy_order)),
        ))  # fmt: skip
    late: list[ProgramXfrm] = []
    del_p = have.policies - want.policies
    del_s = drop - replaced
    if del_p or del_s:
        late.append(ProgramXfrm(del_policies=tuple(sorted(del_p, key=_policy_order)),
                                del_sas=tuple(sorted(del_s, key=_sa_order))))  # fmt: skip
    return early, late, problems


def policies_ready(xfrm: XfrmObserved, port: int) -> bool:
    """Both policies of an encrypted port are in the kernel: a vxlan device on it can only
    ever send and receive ESP."""
    return _policies(port) <= xfrm.policies


def _sa_order(s: SaEntry) -> tuple[int, int, int]:
    return (int(s.src), int(s.dst), s.spi)


def _policy_order(p: PolicyEntry) -> tuple[int, bool]:
    return (p.dport, p.outbound)
