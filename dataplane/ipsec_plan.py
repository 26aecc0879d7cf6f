"""Encrypted overlays: the ESP SAs and policies this host needs, and the diff. Pure.

Encrypted networks' vxlan devices use a VXLAN port of their own (the data-path port + 1,
see daemon.swarm_networks), so a policy on that UDP port selects exactly their traffic:
no packet marking, no VNI matching, no netfilter at all. Between our VTEP and each
remote VTEP that has an endpoint on an encrypted network we have a local endpoint on:
one outbound SA (the primary key) and one inbound SA per key of the ring (a peer may
still send with the previous primary, or already with the next). Two policies for the
port, whatever the peers: outbound (the kernel encrypts with the destination's SA, or
drops the packet while there is none: never cleartext, whatever the order of changes)
and inbound (what was not decrypted by one of our SAs is dropped: nobody can inject
cleartext into an encrypted network; and a cleartext packet to the plain port finds no
device with an encrypted network's VNI there).
SPIs and SA keys are derived from the ring key and the two addresses (HMAC-SHA256), so
both ends compute the same SA without a word between them, with a different key per pair
and direction. The same scheme as Docker's (keys from the managers, rotated every 12 h,
the second-newest sending), without its per-node-pair SPI exchange.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address

from .model import Desired, ProgramXfrm, XfrmObserved
from .xfrmmsg import AEAD_KEY_BYTES, POLICY_PRIORITY, REQID, PolicyEntry, SaEntry

_LABEL = b"overlayd esp v1"


def derive(key: bytes, src: IPv4Address, dst: IPv4Address) -> tuple[int, bytes]:
    """(SPI, AEAD key) for packets src -> dst under one ring key. SPIs below 256 are
    reserved (RFC 4303)."""
    mac = hmac.new(key, _LABEL + src.packed + dst.packed, hashlib.sha256).digest()
    spi = 0x100 + int.from_bytes(mac[:4], "big") % (0xFFFFFFFF - 0x100)
    return spi, mac[4 : 4 + AEAD_KEY_BYTES]


def encrypted_remotes(desired: Desired) -> frozenset[IPv4Address]:
    nets = {o.network_id for o in desired.overlays if o.encrypted}
    return frozenset(p.vtep for p in desired.peers if p.network_id in nets) - {desired.vtep}


def wanted(desired: Desired) -> tuple[XfrmObserved, list[str]]:
    """The SAs and policies desired, and why some cannot be had."""
    nets = sorted(o.network_id for o in desired.overlays if o.encrypted)
    me = desired.vtep
    if not nets:
        return XfrmObserved(), []
    if me is None:
        return XfrmObserved(), [f"encrypted network {n}: no local VTEP address" for n in nets]
    ports = {o.dstport for o in desired.overlays if o.encrypted}
    policies = {PolicyEntry(me, port, outbound, REQID, POLICY_PRIORITY)
                for port in ports for outbound in (True, False)}  # fmt: skip
    if desired.ipsec is None or not desired.ipsec.keys:
        # the policies alone hold its traffic back: nothing leaves, nothing gets in
        return XfrmObserved(policies=frozenset(policies)), [
            f"encrypted network {n}: no data-path keys from the managers yet" for n in nets]
    sas: set[SaEntry] = set()
    for peer in encrypted_remotes(desired):
        spi, key = derive(desired.ipsec.primary, me, peer)
        sas.add(SaEntry(me, peer, spi, key, REQID))
        for ring_key in desired.ipsec.keys:
            spi, key = derive(ring_key, peer, me)
            sas.add(SaEntry(peer, me, spi, key, REQID))
    return XfrmObserved(frozenset(sas), frozenset(policies)), []


def plan_xfrm(desired: Desired, observed: XfrmObserved) -> tuple[list[ProgramXfrm], list[str]]:
    """At most one op: what is missing added, what is not wanted removed. An SA whose
    (dst, spi) is taken by a different one of ours is removed first (a new one would be
    refused as existing)."""
    want, problems = wanted(desired)
    add = want.sas - observed.sas
    taken = {(s.dst, s.spi) for s in add}
    drop = observed.sas - want.sas
    replaced = tuple(sorted((s for s in drop if (s.dst, s.spi) in taken), key=_sa_order))
    put = want.policies - observed.policies
    del_p = observed.policies - want.policies
    ops: list[ProgramXfrm] = []
    if replaced:
        ops.append(ProgramXfrm(del_sas=replaced))
    if add or put or del_p or drop - set(replaced):
        ops.append(ProgramXfrm(
            add_sas=tuple(sorted(add, key=_inbound_first(desired.vtep))),
            put_policies=tuple(sorted(put, key=_policy_order)),
            del_policies=tuple(sorted(del_p, key=_policy_order)),
            del_sas=tuple(sorted(drop - set(replaced), key=_sa_order)),
        ))  # fmt: skip
    return ops, problems


def _sa_order(s: SaEntry) -> tuple[int, int, int]:
    return (int(s.src), int(s.dst), s.spi)


def _policy_order(p: PolicyEntry) -> tuple[int, int, bool]:
    return (int(p.local), p.dport, p.outbound)


def _inbound_first(me: IPv4Address | None):  # type: ignore[no-untyped-def]
    def key(s: SaEntry) -> tuple[bool, int, int, int]:
        return (s.src == me, *_sa_order(s))

    return key
