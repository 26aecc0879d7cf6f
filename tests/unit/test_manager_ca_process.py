"""Certificate work in the child process: what it makes is what the daemon's ssl-only
reading expects, bad requests come back as errors, and the daemon side never imports
cryptography."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from manager import ca, ca_process, certs, transport

NOW = dt.datetime.now(dt.UTC)


async def test_new_cluster_then_a_joiner_request_signed_by_it() -> None:
    minted = await ca_process.new_cluster("m1", "cl", NOW)
    me = transport.certificate_facts(minted.ca_cert_pem, minted.cert_pem, minted.key_pem)
    assert me.identity == certs.NodeIdentity("m1", "manager", "cl")
    key_pem, csr = await ca_process.new_request()
    cert = await ca_process.issue(
        minted.ca_cert_pem, minted.ca_key_pem, csr, node_id="w1", role="worker",
        cluster_id="cl", now=NOW, validity=dt.timedelta(hours=2),
    )  # fmt: skip
    facts = transport.certificate_facts(minted.ca_cert_pem, cert, key_pem)
    assert facts.identity == certs.NodeIdentity("w1", "worker", "cl")
    assert facts.not_after - facts.not_before == dt.timedelta(hours=2) + ca.BACKDATE


async def test_bad_requests_are_errors_not_certificates() -> None:
    minted = await ca_process.new_cluster("m1", "cl", NOW)
    _, csr = await ca_process.new_request()
    args = dict(node_id="w1", cluster_id="cl", now=NOW, validity=dt.timedelta(days=1))
    with pytest.raises(certs.CertificateError, match="not a PEM certificate request"):
        await ca_process.issue(minted.ca_cert_pem, minted.ca_key_pem, "junk", role="worker", **args)
    with pytest.raises(certs.CertificateError, match="unknown role"):
        await ca_process.issue(minted.ca_cert_pem, minted.ca_key_pem, csr, role="admin", **args)
    with pytest.raises(certs.CertificateError, match="not a PEM private key"):
        await ca_process.issue(minted.ca_cert_pem, b"not a key", csr, role="worker", **args)


async def test_issuer_info_is_the_roots_subject_and_public_key() -> None:
    minted = await ca_process.new_cluster("m1", "cl", NOW)
    subject, public_key = await ca_process.issuer_info(minted.ca_cert_pem)
    root = x509.load_pem_x509_certificate(minted.ca_cert_pem)
    assert subject == root.subject.public_bytes()
    assert public_key == root.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_the_daemons_swarm_code_does_not_load_cryptography() -> None:
    code = (
        "import sys; import api.main, daemon.swarm, manager.manager, manager.join, "
        "manager.ca_process, api.swarm; "
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_prepared_child_serves_the_next_request_or_goes_away_unused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    ca_process.prepare()
    ca_process.prepare()  # at most one waits
    warm = ca_process._WARM[loop]
    child = await warm.child
    _, csr = await ca_process.new_request()
    assert "BEGIN CERTIFICATE REQUEST" in csr
    assert child.proc.returncode == 0 and loop not in ca_process._WARM  # it served that one

    monkeypatch.setattr(ca_process, "WARM_FOR", 0.2)
    ca_process.prepare()
    unused = await ca_process._WARM[loop].child
    async with asyncio.timeout(10):
        assert await unused.proc.wait() in (0, -9)
    assert loop not in ca_process._WARM


async def test_a_child_that_cannot_start_or_dies_is_a_helper_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ca_process.sys, "executable", "/nonexistent/python")
    with pytest.raises(ca_process.HelperError, match="could not start"):
        await ca_process.new_request()
    monkeypatch.setattr(ca_process.sys, "executable", "/bin/false")
    with pytest.raises(ca_process.HelperError, match="certificate helper failed: exit 1"):
        await ca_process.new_request()
