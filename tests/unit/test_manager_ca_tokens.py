import datetime as dt
import hashlib
import random

import pytest
from cryptography.hazmat.primitives import serialization

from manager import ca, certs, tokens

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def test_root_ca_and_node_certificate() -> None:
    root = ca.RootCA.create(NOW)
    assert root.cert.not_valid_after_utc - NOW > dt.timedelta(days=365 * 19)
    key = ca.new_key()
    cert = root.issue(ca.make_csr(key), node_id="n1", role="worker", cluster_id="c1", now=NOW)
    assert cert.not_valid_after_utc - NOW == ca.NODE_VALIDITY
    ident = ca.identity_of(cert, root.cert, NOW)
    assert ident == ca.NodeIdentity("n1", "worker", "c1")
    # Round trip through PEM as stored on disk.
    assert ca.load_cert(ca.cert_pem(cert)) == cert
    assert ca.load_key(ca.key_pem(key)).public_key() == key.public_key()


def test_foreign_and_expired_certificates_are_refused() -> None:
    root, other = ca.RootCA.create(NOW), ca.RootCA.create(NOW)
    cert = other.issue(
        ca.make_csr(ca.new_key()), node_id="x", role="manager", cluster_id="c", now=NOW
    )
    with pytest.raises(ca.CertificateError, match="not issued by this swarm"):
        ca.identity_of(cert, root.cert, NOW)
    mine = root.issue(
        ca.make_csr(ca.new_key()), node_id="x", role="manager", cluster_id="c", now=NOW
    )
    with pytest.raises(ca.CertificateError, match="expired"):
        ca.identity_of(mine, root.cert, NOW + dt.timedelta(days=91))


def test_unknown_role_and_verify_only_ca() -> None:
    root = ca.RootCA.create(NOW)
    with pytest.raises(ca.CertificateError):
        root.issue(ca.make_csr(ca.new_key()), node_id="n", role="king", cluster_id="c", now=NOW)
    verifier = ca.RootCA(root.cert, None)
    with pytest.raises(ca.CertificateError, match="no CA key"):
        verifier.issue(
            ca.make_csr(ca.new_key()), node_id="n", role="worker", cluster_id="c", now=NOW
        )


def test_renewal_between_50_and_80_percent() -> None:
    root = ca.RootCA.create(NOW)
    cert = root.issue(
        ca.make_csr(ca.new_key()), node_id="n", role="worker", cluster_id="c", now=NOW
    )
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    facts = certs.CertFacts(certs.NodeIdentity("n", "worker", "c"),
                            cert.not_valid_before_utc, cert.not_valid_after_utc)  # fmt: skip
    rng = random.Random(7)
    for _ in range(100):
        at = certs.renewal_time(facts, rng)
        frac = (at - cert.not_valid_before_utc) / life
        assert 0.5 <= frac <= 0.8


def test_token_format_and_checks() -> None:
    root = ca.RootCA.create(NOW)
    token = tokens.generate(root.digest)
    text = str(token)
    assert text.startswith("SWMTKN-1-")
    _, _, digest, secret = text.split("-")
    assert len(digest) == 50 and len(secret) == 25
    parsed = tokens.parse(text)
    assert parsed == token
    assert parsed.matches_ca(root.digest)
    assert not parsed.matches_ca(ca.RootCA.create(NOW).digest)
    assert parsed.same_secret(token)
    assert not parsed.same_secret(tokens.generate(root.digest))


@pytest.mark.parametrize(
    "text",
    ["", "SWMTKN-1-abc-def", "SWMTKN-2-" + "0" * 50 + "-" + "0" * 25,
     "SWMTKN-1-" + "Z" * 50 + "-" + "0" * 25, "SWMTKN-1-" + "z" * 50 + "-" + "0" * 25],
)  # fmt: skip
def test_bad_tokens(text: str) -> None:
    with pytest.raises(tokens.TokenError):
        tokens.parse(text)


def test_base36_round_trip() -> None:
    for n in (0, 1, 35, 36, 2**128 - 1):
        data = n.to_bytes(16, "big")
        assert tokens.from_base36(tokens.base36(data, 25)) == n


def test_identity_from_a_verified_peer_certificate() -> None:
    """ssl's decoded form of a verified certificate: exactly one CN, OU and O."""
    subject = ((("commonName", "n1"),), (("organizationalUnitName", "swarm-worker"),),
               (("organizationName", "cl"),))  # fmt: skip
    assert certs.identity_from_peercert({"subject": subject}) == certs.NodeIdentity(
        "n1", "worker", "cl"
    )
    with pytest.raises(certs.CertificateError, match="unknown role"):
        wrong_ou = (subject[0], (("organizationalUnitName", "swarm-admin"),), subject[2])
        certs.identity_from_peercert({"subject": wrong_ou})
    with pytest.raises(certs.CertificateError, match="not a swarm node's"):
        certs.identity_from_peercert({"subject": (*subject, (("commonName", "n2"),))})
    with pytest.raises(certs.CertificateError, match="not a swarm node's"):
        certs.identity_from_peercert({"subject": subject[1:]})


def test_digest_is_over_der_and_rejects_junk() -> None:
    root = ca.RootCA.create(NOW)
    der = root.cert.public_bytes(serialization.Encoding.DER)
    assert certs.digest(root.pem) == hashlib.sha256(der).digest()
    with pytest.raises(certs.CertificateError):
        certs.digest(b"not a certificate")


def test_only_a_single_strictly_encoded_certificate_is_read() -> None:
    """What the token's digest covers is all a joiner trusts: no second certificate, no
    bytes the lenient base64 decoder would skip."""
    one, two = ca.RootCA.create(NOW).pem, ca.RootCA.create(NOW).pem
    assert certs.canonical_pem(b"\n" + one + b"\n") == one
    for bad in (one + two, one + b"junk", one.replace(b"\n-----END", b"=AAAA\n-----END"),
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----"):  # fmt: skip
        with pytest.raises(certs.CertificateError):
            certs.digest(bad)
