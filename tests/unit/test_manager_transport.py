"""Mutual TLS framing on loopback: identities, joiners without certificates, bad peers."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import datetime as dt
import ssl
import struct

import pytest

from manager import ca, certs, transport

NOW = dt.datetime.now(dt.UTC)


def member(root: ca.RootCA, node_id: str, role: str = "manager") -> tuple[bytes, bytes]:
    key = ca.new_key()
    cert = root.issue(ca.make_csr(key), node_id=node_id, role=role, cluster_id="cl", now=NOW)
    return ca.cert_pem(cert), ca.key_pem(key)


@pytest.fixture
async def echo_server():  # type: ignore[no-untyped-def]
    root = ca.RootCA.create(NOW)
    cert, key = member(root, "srv")
    seen: list[certs.NodeIdentity | None] = []

    async def handler(conn: transport.Connection) -> None:
        seen.append(conn.peer)
        while True:
            frame = await conn.recv()
            await conn.send(frame.upper())

    server = await transport.serve(
        "127.0.0.1", 0, transport.server_context(root.pem, cert, key), handler
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield root, port, seen
    finally:
        server.close()
        await server.wait_closed()


async def test_members_know_each_other(echo_server) -> None:  # type: ignore[no-untyped-def]
    root, port, seen = echo_server
    cert, key = member(root, "w1", "worker")
    conn = await transport.connect("127.0.0.1", port, transport.client_context(root.pem, cert, key))
    await conn.send(b"hello")
    assert await conn.recv() == b"HELLO"
    assert seen == [certs.NodeIdentity("w1", "worker", "cl")]
    assert conn.server == certs.NodeIdentity("srv", "manager", "cl")
    await conn.close()


async def test_frames_larger_than_the_tls_read_buffer_arrive_whole(echo_server) -> None:  # type: ignore[no-untyped-def]
    root, port, _ = echo_server
    cert, key = member(root, "w2", "worker")
    conn = await transport.connect("127.0.0.1", port, transport.client_context(root.pem, cert, key))
    assert asyncio.sslproto.SSLProtocol.max_size == 32 * 1024
    payload = bytes(range(97, 123)) * 40_000  # ~1 MB: many records, many buffer fills
    for _ in range(3):
        await conn.send(payload)
        assert await conn.recv() == payload.upper()
    await conn.close()


async def test_joiner_without_certificate_is_anonymous(echo_server) -> None:  # type: ignore[no-untyped-def]
    root, port, seen = echo_server
    conn = await transport.connect("127.0.0.1", port, transport.bootstrap_context())
    await conn.send(b"join")
    assert await conn.recv() == b"JOIN"
    assert seen == [None]
    assert conn.server is None  # nothing verified: the joiner trusts no one yet
    await conn.close()
    # Once it has the CA (checked against its token), it verifies the server.
    conn = await transport.connect("127.0.0.1", port, transport.verifying_context(root.pem))
    assert conn.server == certs.NodeIdentity("srv", "manager", "cl")
    await conn.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        await transport.connect(
            "127.0.0.1", port, transport.verifying_context(ca.RootCA.create(NOW).pem)
        )


async def test_expired_member_certificate_is_refused(echo_server) -> None:  # type: ignore[no-untyped-def]
    root, port, seen = echo_server
    key = ca.new_key()
    old = root.issue(ca.make_csr(key), node_id="w9", role="worker", cluster_id="cl",
                     now=NOW - dt.timedelta(days=120))  # fmt: skip
    ctx = transport.client_context(root.pem, ca.cert_pem(old), ca.key_pem(key))
    with pytest.raises((ssl.SSLError, ConnectionError, transport.FrameError)):
        conn = await transport.connect("127.0.0.1", port, ctx)
        await conn.send(b"x")
        await conn.recv()
    assert seen == []


def test_certificate_facts_are_what_a_peer_would_verify() -> None:
    root = ca.RootCA.create(NOW)
    cert, key = member(root, "n1", "worker")
    facts = transport.certificate_facts(root.pem, cert, key)
    assert facts.identity == certs.NodeIdentity("n1", "worker", "cl")
    assert facts.not_before <= NOW < facts.not_after
    assert facts.not_after - facts.not_before == certs.NODE_VALIDITY + ca.BACKDATE
    with pytest.raises(certs.CertificateError, match="signature failure"):
        transport.certificate_facts(ca.RootCA.create(NOW).pem, cert, key)
    with pytest.raises(certs.CertificateError, match="key values mismatch"):
        transport.certificate_facts(root.pem, cert, ca.key_pem(ca.new_key()))


async def test_foreign_certificate_is_refused(echo_server) -> None:  # type: ignore[no-untyped-def]
    root, port, seen = echo_server
    other = ca.RootCA.create(NOW)
    cert, key = member(other, "intruder")
    ctx = transport.client_context(root.pem, cert, key)
    with pytest.raises((ssl.SSLError, ConnectionError, transport.FrameError)):
        conn = await transport.connect("127.0.0.1", port, ctx)
        await conn.send(b"x")  # TLS 1.3: the server's refusal arrives on first use
        await conn.recv()
    assert seen == []


async def test_oversized_frame_costs_only_that_connection(echo_server) -> None:  # type: ignore[no-untyped-def]
    _, port, _ = echo_server
    bad = await transport.connect("127.0.0.1", port, transport.bootstrap_context())
    bad._writer.write(struct.pack(">I", transport.MAX_FRAME + 1))
    await bad._writer.drain()
    with pytest.raises(transport.FrameError):
        await asyncio.wait_for(bad.recv(), 5)
    good = await transport.connect("127.0.0.1", port, transport.bootstrap_context())
    await good.send(b"still here")
    assert await good.recv() == b"STILL HERE"
    await good.close()
    with pytest.raises(transport.FrameError):
        await good.send(b"x" * (transport.MAX_FRAME + 1))
