"""Joining over the real transport: the token pins the CA, picks the role, and a wrong
token learns nothing."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable

import pytest
from cryptography.hazmat.primitives import serialization

from manager import ca, ca_process, certs, join, tokens, transport
from manager.errors import InvalidParameter

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(autouse=True)
async def no_prepared_child_left():  # type: ignore[no-untyped-def]
    yield
    await ca_process.discard_prepared()  # a root_ca request prepares a signing child


@pytest.fixture
async def manager_side():  # type: ignore[no-untyped-def]
    root = ca.RootCA.create(NOW)
    key = ca.new_key()
    cert = root.issue(ca.make_csr(key), node_id="m1", role="manager", cluster_id="cl", now=NOW)
    toks = {
        "worker": str(tokens.generate(root.digest)),
        "manager": str(tokens.generate(root.digest)),
    }
    registered: list[tuple[str, str, str]] = []

    async def register(node_id: str, role: str, req: join.JoinRequest) -> list[str]:
        registered.append((node_id, role, req.hostname))
        return ["127.0.0.1:2377"]

    service = join.JoinService(
        root.pem, ca.key_pem(root.key), "cl", lambda: (toks["worker"], toks["manager"]),
        register, lambda: NOW,
    )  # fmt: skip

    async def handler(conn: transport.Connection) -> None:
        if conn.peer is None:
            await service.handle(conn)

    ctx = transport.server_context(root.pem, ca.cert_pem(cert), ca.key_pem(key))
    server = await transport.serve("127.0.0.1", 0, ctx, handler)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, toks, registered, root
    finally:
        server.close()
        await server.wait_closed()


async def _join(port: int, token: str) -> join.Joined:
    return await join.join("127.0.0.1", port, token, join.JoinRequest("host2", "192.0.2.2", ""))


async def test_worker_and_manager_tokens_give_their_roles(manager_side) -> None:  # type: ignore[no-untyped-def]
    port, toks, registered, root = manager_side
    w = await _join(port, toks["worker"])
    m = await _join(port, toks["manager"])
    assert (w.role, m.role) == ("worker", "manager")
    assert w.cluster_id == "cl" and len(w.node_id) == 25 and w.node_id != m.node_id
    assert ca.identity_of(ca.load_cert(w.cert_pem), root.cert, NOW).node_id == w.node_id
    assert transport.certificate_facts(root.pem, w.cert_pem, w.key_pem).identity == (
        certs.NodeIdentity(w.node_id, "worker", "cl")
    )
    assert [r[1:] for r in registered] == [("worker", "host2"), ("manager", "host2")]
    assert w.managers == ["127.0.0.1:2377"]
    # The new identity works on the member transport right away.
    ctx = transport.client_context(w.ca_pem, w.cert_pem, w.key_pem)
    conn = await transport.connect("127.0.0.1", port, ctx)
    await conn.close()


async def test_rotated_or_wrong_token_is_refused(manager_side) -> None:  # type: ignore[no-untyped-def]
    port, toks, registered, root = manager_side
    old = toks["worker"]
    toks["worker"] = str(tokens.generate(root.digest))  # rotate
    with pytest.raises(InvalidParameter, match="A valid join token is necessary"):
        await _join(port, old)
    forged = str(tokens.JoinToken(tokens.parse(old).ca_digest, "0" * 25))
    with pytest.raises(InvalidParameter, match="A valid join token is necessary"):
        await _join(port, forged)
    assert registered == []


async def test_token_of_another_cluster_is_refused_before_anything_is_sent(manager_side) -> None:  # type: ignore[no-untyped-def]
    port, _, registered, _ = manager_side
    other = str(tokens.generate(ca.RootCA.create(NOW).digest))
    with pytest.raises(InvalidParameter, match="remote CA does not match fingerprint"):
        await _join(port, other)
    assert registered == []


async def test_anonymous_peer_may_not_do_anything_else(manager_side) -> None:  # type: ignore[no-untyped-def]
    port, *_ = manager_side
    conn = await transport.connect("127.0.0.1", port, transport.bootstrap_context())
    await conn.send(b'{"type": "raft", "msg": "vote for me"}')
    assert b"not allowed before joining" in await conn.recv()
    await conn.close()


@contextlib.asynccontextmanager
async def impostor(offered_ca: Callable[[bytes], bytes]) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A fake manager: its own CA issued the certificate it shows, and it answers every
    frame with offered_ca(its own CA's PEM). Yields its port and the frames it got."""
    other = ca.RootCA.create(NOW)
    key = ca.new_key()
    fake = other.issue(ca.make_csr(key), node_id="m9", role="manager", cluster_id="cl", now=NOW)
    received: list[bytes] = []

    async def handler(conn: transport.Connection) -> None:
        while True:
            received.append(await conn.recv())
            await conn.send(json.dumps({"ca": offered_ca(other.pem).decode()}).encode())

    ctx = transport.server_context(other.pem, ca.cert_pem(fake), ca.key_pem(key))
    server = await transport.serve("127.0.0.1", 0, ctx, handler)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


async def _raw_join(port: int, root: ca.RootCA, token: str, csr: str) -> dict[str, str]:
    """A join request sent by hand, past the joiner's own checks."""
    conn = await transport.connect("127.0.0.1", port, transport.verifying_context(root.pem))
    await conn.send(json.dumps({"type": "join", "token": token, "csr": csr,
                                "hostname": "h", "advertise_addr": "192.0.2.9"}).encode())  # fmt: skip
    reply = json.loads(await conn.recv())
    await conn.close()
    return reply


async def test_impostor_with_the_real_ca_but_not_its_certificate_never_sees_the_token(manager_side) -> None:  # type: ignore[no-untyped-def]
    """An impostor can hand out the swarm's (public) CA certificate, but cannot show a
    certificate that CA issued: the joiner stops before sending its token."""
    _, toks, _, root = manager_side
    async with impostor(lambda own: root.pem) as (port, received):
        with pytest.raises(InvalidParameter, match="not valid for that CA"):
            await _join(port, toks["worker"])
    assert received == [b'{"type": "root_ca"}']


async def test_malformed_certificate_request_is_refused_and_nothing_registered(manager_side) -> None:  # type: ignore[no-untyped-def]
    port, toks, registered, root = manager_side
    reply = await _raw_join(port, root, toks["worker"], "junk")
    assert reply == {"error": "invalid certificate request: not a PEM certificate request"}
    assert registered == []


async def test_a_second_ca_smuggled_after_the_real_one_is_refused_before_the_token_goes(manager_side) -> None:  # type: ignore[no-untyped-def]
    """The token pins the root CA's digest; an impostor that appends its own CA to the
    real one must not get that CA trusted, nor the token."""
    _, toks, _, root = manager_side
    async with impostor(lambda own: root.pem + own) as (port, received):
        with pytest.raises(InvalidParameter, match="remote CA does not match fingerprint"):
            await _join(port, toks["worker"])
    assert received == [b'{"type": "root_ca"}']


async def test_a_failing_signing_helper_is_the_managers_error_and_registers_nothing(manager_side, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    port, toks, registered, root = manager_side
    csr = ca.make_csr(ca.new_key()).public_bytes(serialization.Encoding.PEM).decode()
    monkeypatch.setattr(ca_process.sys, "executable", "/bin/false")  # the child dies at once
    reply = await _raw_join(port, root, toks["worker"], csr)
    assert reply["error"].startswith("the manager could not sign the certificate: ")
    assert registered == []
