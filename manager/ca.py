"""The swarm's certificate authority: root CA, node certificates, requests.

Shaped like swarmkit's: ECDSA P-256 keys, a 20-year root, 90-day node certificates whose
subject says who the node is (CN = node ID, OU = role, O = cluster ID). Wall-clock time
comes in as an argument: nothing here reads the clock. The daemon runs this module in a
child process only (ca_process.py): cryptography costs ~8 MB resident.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from manager import certs
from manager.certs import NODE_VALIDITY, ROLE_OU, CertificateError, NodeIdentity

ROOT_VALIDITY = dt.timedelta(days=365 * 20)
ROOT_CN = "swarm-ca"
BACKDATE = dt.timedelta(hours=1)  # tolerate clock skew between nodes


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("not an EC private key")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate: {exc}") from exc


def digest(cert: x509.Certificate) -> bytes:
    return certs.digest(cert_pem(cert))


@dataclass(frozen=True)
class RootCA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None  # None on nodes that only verify

    @classmethod
    def create(cls, now: dt.datetime) -> RootCA:
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CN)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + ROOT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def digest(self) -> bytes:
        return digest(self.cert)

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        node_id: str,
        role: str,
        cluster_id: str,
        now: dt.datetime,
        validity: dt.timedelta = NODE_VALIDITY,
    ) -> x509.Certificate:
        """Sign a node certificate. The subject is ours to decide, never the requester's."""
        if self.key is None:
            raise CertificateError("this node holds no CA key")
        if role not in ROLE_OU:
            raise CertificateError(f"unknown role {role!r}")
        if not csr.is_signature_valid:
            raise CertificateError("certificate request signature is invalid")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CertificateError("node keys must be EC keys")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ROLE_OU[role]),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            ]
        )
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(ROLE_OU[role]), x509.DNSName(node_id)]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )


def make_csr(key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    """The joiner's request: only its public key matters; the CA sets the subject."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )


def identity_of(cert: x509.Certificate, root: x509.Certificate, now: dt.datetime) -> NodeIdentity:
    """Who a peer's certificate says it is, after checking it was issued by our root
    and is valid now. TLS already checked the chain; this reads and re-checks the facts
    the swarm relies on."""
    try:
        root.public_key().verify(  # type: ignore[call-arg]
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    except Exception as exc:
        raise CertificateError("certificate not issued by this swarm's CA") from exc
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError("certificate expired or not yet valid")

    def one(oid: x509.ObjectIdentifier) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        if len(values) != 1:
            raise CertificateError("certificate subject is not a swarm node's")
        return str(values[0].value)

    ou = one(NameOID.ORGANIZATIONAL_UNIT_NAME)
    roles = {v: k for k, v in ROLE_OU.items()}
    if ou not in roles:
        raise CertificateError(f"unknown role {ou!r} in certificate")
    return NodeIdentity(one(NameOID.COMMON_NAME), roles[ou], one(NameOID.ORGANIZATION_NAME))
