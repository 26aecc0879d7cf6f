"""Framed messages over mutual TLS on the swarm port (2377).

Every member talks TLS with a certificate from the swarm's CA, and each side learns who
the other is from that certificate (node ID, role, cluster). A node that is still
joining has no certificate yet: the server accepts it without one, but such a
connection may only ask for the root CA and present a join token (see join.py); the
handler sees `peer is None` and must refuse everything else.

Frames: 4-byte big-endian length, then the payload. A frame over MAX_FRAME, a
truncated frame or a TLS error closes that connection and nothing else.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import ssl
import struct
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from manager import certs

log = logging.getLogger("overlayd.manager")

MAX_FRAME = 16 << 20

# asyncio gives every TLS connection a read buffer of SSLProtocol.max_size (256 KiB,
# zero-filled, so resident); a manager holds one connection per node, 25 MB for 100
# workers. A TLS record carries at most 16 KiB, so 32 KiB reads lose nothing.
asyncio.sslproto.SSLProtocol.max_size = 32 * 1024
_LEN = struct.Struct(">I")


class FrameError(ConnectionError):
    """The peer sent something that is not a frame we accept; the connection is closed."""


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl only loads key material from files; keep them private and short-lived.
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        ctx.load_cert_chain(cert_path, key_path)


def server_context(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """Members must present a certificate of our CA; joiners may present none."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx.verify_mode = ssl.CERT_OPTIONAL
    # No session tickets: a resumed session skips the certificate checks, so a member
    # whose certificate expired (or was replaced on a role change) could go on with it.
    ctx.num_tickets = 0
    _load_chain(ctx, cert_pem, key_pem)
    return ctx


def client_context(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A member dialling another: verify the server against our CA, show our certificate.
    Host names are not checked: identity is the node ID in the certificate."""
    ctx = verifying_context(ca_pem)
    _load_chain(ctx, cert_pem, key_pem)
    return ctx


def verifying_context(ca_pem: bytes) -> ssl.SSLContext:
    """A joiner that has checked the CA against its token: verify the server against it,
    show no certificate (it has none yet)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def certificate_facts(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> certs.CertFacts:
    """Our own certificate as a peer sees it: a TLS handshake in memory between our server
    context and a client that trusts only `ca_pem`. OpenSSL checks what it checks for any
    peer (issued by that CA, valid now, the key matches) and decodes the subject."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        server = server_context(ca_pem, cert_pem, key_pem).wrap_bio(
            to_server, to_client, server_side=True
        )
        client = verifying_context(ca_pem).wrap_bio(to_client, to_server)
        pending = [client, server]
        for _ in range(8):  # TLS 1.3 needs two round trips, 1.2 three
            for side in list(pending):
                try:
                    side.do_handshake()
                    pending.remove(side)
                except ssl.SSLWantReadError:
                    pass
            if not pending:
                return certs.facts_from_peercert(client.getpeercert())
    except ssl.SSLError as exc:
        raise certs.CertificateError(f"certificate not usable with this swarm's CA: {exc}") from exc
    raise certs.CertificateError("certificate check did not complete")


def bootstrap_context() -> ssl.SSLContext:
    """A joiner that trusts nothing yet: encryption now, trust after the token's CA
    digest has been checked against what the server sends (join.py)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Connection:
    """One TLS stream carrying frames; `peer` is who the certificate says is talking."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: certs.NodeIdentity | None,
        server: certs.NodeIdentity | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = peer
        self.server = server  # client side: who the server is, if its certificate was verified

    async def send(self, payload: bytes) -> None:
        if len(payload) > MAX_FRAME:
            raise FrameError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
        self._writer.write(_LEN.pack(len(payload)) + payload)
        await self._writer.drain()

    async def recv(self) -> bytes:
        try:
            header = await self._reader.readexactly(_LEN.size)
            (size,) = _LEN.unpack(header)
            if size > MAX_FRAME:
                raise FrameError(f"peer announced a frame of {size} bytes")
            return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise FrameError("connection closed mid-frame" if exc.partial else "closed") from exc

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def _peer_identity(writer: asyncio.StreamWriter) -> certs.NodeIdentity | None:
    """Who the verified peer is; None if it showed no certificate or was not verified
    (a joiner, or our side of a bootstrap connection)."""
    sslobj = writer.get_extra_info("ssl_object")
    cert = sslobj.getpeercert() if sslobj is not None else None
    return certs.identity_from_peercert(cert) if cert else None


Handler = Callable[[Connection], Awaitable[None]]


async def serve(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    handler: Handler,
) -> asyncio.Server:
    """Accept connections; each runs `handler` until it returns or the peer misbehaves."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = None
        try:
            conn = Connection(reader, writer, _peer_identity(writer))
            await handler(conn)
        except (FrameError, certs.CertificateError, ConnectionError, ssl.SSLError, OSError):
            pass  # one bad peer costs one connection
        except Exception as exc:  # a handler bug costs one connection, not the listener
            log.error("swarm connection handler failed: %r", exc)
        finally:
            if conn is not None:
                await conn.close()
            else:
                writer.close()

    return await asyncio.start_server(on_connect, host, port, ssl=ctx)


async def connect(host: str, port: int, ctx: ssl.SSLContext, timeout: float = 5.0) -> Connection:
    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races with
    # completion, and a caller being stopped would then carry on (e.g. a session loop).
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        return Connection(reader, writer, None, _peer_identity(writer))
    except BaseException:
        writer.close()
        raise
