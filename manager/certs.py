"""What the daemon reads from swarm certificates, with the standard library's ssl only.

Certificates are made rarely (init, join, renewal: ca_process.py, in a child process) but
read all the time: every swarm connection asks who the peer is. OpenSSL verifies the
chain, the validity period and the key during the TLS handshake; what it hands back
(`SSLObject.getpeercert()`, only for a verified certificate) is all the swarm needs:
the subject says node ID (CN), role (OU) and cluster (O), as in swarmkit.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import random
import ssl
from dataclasses import dataclass
from typing import Any

ROLE_OU = {"manager": "swarm-manager", "worker": "swarm-worker"}
NODE_VALIDITY = dt.timedelta(days=90)


class CertificateError(ValueError):
    """A certificate or request that must not be trusted."""


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    role: str
    cluster_id: str


@dataclass(frozen=True)
class CertFacts:
    identity: NodeIdentity
    not_before: dt.datetime
    not_after: dt.datetime


def der_of(cert_pem: bytes) -> bytes:
    """The DER of a PEM holding exactly one certificate, decoded strictly: what a token's
    digest covers must be all that is ever trusted (ssl.PEM_cert_to_DER_cert decodes
    leniently, so a second certificate appended to the real one would pass unseen)."""
    try:
        text = cert_pem.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise CertificateError("not a PEM certificate") from exc
    head, tail = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    if not (text.startswith(head) and text.endswith(tail)) or text.count("-----BEGIN") != 1:
        raise CertificateError("not a single PEM certificate")
    body = "".join(text[len(head) : -len(tail)].split())
    try:
        return binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error as exc:
        raise CertificateError(f"not a PEM certificate: {exc}") from exc


def canonical_pem(cert_pem: bytes) -> bytes:
    """The one certificate in cert_pem, re-encoded from exactly the bytes der_of read."""
    return ssl.DER_cert_to_PEM_cert(der_of(cert_pem)).encode()


def digest(cert_pem: bytes) -> bytes:
    """sha256 over the DER encoding: what a join token pins."""
    return hashlib.sha256(der_of(cert_pem)).digest()


def identity_from_peercert(cert: dict[str, Any]) -> NodeIdentity:
    """Who a verified peer certificate (ssl's decoded form) says it is."""
    attrs: dict[str, list[str]] = {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            attrs.setdefault(key, []).append(value)

    def one(name: str) -> str:
        values = attrs.get(name, [])
        if len(values) != 1:
            raise CertificateError("certificate subject is not a swarm node's")
        return values[0]

    ou = one("organizationalUnitName")
    roles = {v: k for k, v in ROLE_OU.items()}
    if ou not in roles:
        raise CertificateError(f"unknown role {ou!r} in certificate")
    return NodeIdentity(one("commonName"), roles[ou], one("organizationName"))


def facts_from_peercert(cert: dict[str, Any]) -> CertFacts:
    def when(field: str) -> dt.datetime:
        return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert[field]), dt.UTC)

    return CertFacts(identity_from_peercert(cert), when("notBefore"), when("notAfter"))


def renewal_time(facts: CertFacts, rng: random.Random) -> dt.datetime:
    """A random moment between 50 % and 80 % of the certificate's life (swarmkit's rule),
    so a cluster's nodes don't all renew at once."""
    return facts.not_before + (facts.not_after - facts.not_before) * rng.uniform(0.5, 0.8)
