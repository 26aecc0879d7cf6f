"""Joining a swarm: trust the manager only through the token, then get a certificate.

1. The joiner connects without a certificate (transport.bootstrap_context) and asks for
   the root CA. It accepts that CA only if its digest is the one in the token.
2. It connects again, now verifying the manager's certificate against that CA: no trust
   on first use, and the token goes to a manager of that swarm only. There it sends the
   token and a certificate request (made meanwhile, in a child process: ca_process.py).
   The manager checks the token's secret against the current worker and manager tokens
   (constant time); the token that matches decides the role. A wrong or rotated token gets one error and learns nothing about the
   cluster. Otherwise the manager registers the node (through raft, by the callback) and
   signs the certificate; from then on the node talks only mutual TLS.

Messages are JSON objects in transport frames.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from manager import ca_process, certs, tokens, transport
from manager.errors import InvalidParameter, OverlaydError
from manager.ids import new_node_id
from manager.transport import Connection

log = logging.getLogger("overlayd.manager")

INVALID_TOKEN = (
    "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster"
)
@dataclass(frozen=True)
class JoinRequest:
    hostname: str
    advertise_addr: str
    node_id: str


@dataclass(frozen=True)
class Joined:
    node_id: str
    role: str
    cluster_id: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    managers: list[str]  # "ip:port" of the managers, for failover


async def _ask(conn: Connection, message: dict[str, Any]) -> dict[str, Any]:
    await conn.send(json.dumps(message).encode())
    reply = json.loads(await conn.recv())
    if not isinstance(reply, dict):
        raise InvalidParameter("malformed reply from the manager")
    if "error" in reply:
        raise InvalidParameter(str(reply["error"]))
    return reply


async def join(host: str, port: int, token_text: str, req: JoinRequest) -> Joined:
    """The joiner's side. OSError/TimeoutError: the manager could not be reached."""
    token = tokens.parse(token_text)
    request = asyncio.create_task(ca_process.new_request())  # ~50 ms, while we connect
    try:
        conn = await transport.connect(host, port, transport.bootstrap_context())
        try:
            offered = str((await _ask(conn, {"type": "root_ca"}))["ca"]).encode()
        finally:
            await conn.close()
        try:
            matches = token.matches_ca(certs.digest(offered))
        except certs.CertificateError:
            matches = False  # e.g. a second certificate smuggled in after the real one
        if not matches:
            raise InvalidParameter(
                "remote CA does not match fingerprint. Expected: " + token.ca_digest
            )
        ca_pem = certs.canonical_pem(offered)  # from now on only the bytes the token pins
        try:
            conn = await transport.connect(host, port, transport.verifying_context(ca_pem))
        except ssl.SSLCertVerificationError as exc:
            raise InvalidParameter(
                f"the manager's certificate is not valid for that CA: {exc.verify_message}"
            ) from exc
        try:
            if conn.server is None or conn.server.role != "manager":
                raise InvalidParameter("the node reached is not a swarm manager")
            key_pem, csr = await request
            reply = await _ask(conn, {
                "type": "join", "token": token_text, "csr": csr, "hostname": req.hostname,
                "advertise_addr": req.advertise_addr, "node_id": req.node_id,
            })  # fmt: skip
        finally:
            await conn.close()
    finally:
        if not request.done():
            request.cancel()
            await asyncio.wait([request])  # lets a cancel of join() itself through
    cert_pem = str(reply["cert"]).encode()
    me = transport.certificate_facts(ca_pem, cert_pem, key_pem).identity
    return Joined(
        node_id=me.node_id,
        role=me.role,
        cluster_id=me.cluster_id,
        ca_pem=ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        managers=list(reply.get("managers", [])),
    )


Register = Callable[[str, str, JoinRequest], Awaitable[list[str]]]


@dataclass
class JoinService:
    """The manager's side. `tokens()` returns the current (worker, manager) tokens;
    `register(node_id, role, request)` commits the node and returns manager addresses."""

    ca_cert_pem: bytes
    ca_key_pem: bytes
    cluster_id: str
    current_tokens: Callable[[], tuple[str, str]]
    register: Register
    now: Callable[[], dt.datetime]
    validity: Callable[[], dt.timedelta] = lambda: certs.NODE_VALIDITY

    def role_for(self, token_text: str) -> str | None:
        try:
            token = tokens.parse(token_text)
        except tokens.TokenError:
            return None
        if not token.matches_ca(certs.digest(self.ca_cert_pem)):
            return None
        worker, manager = (tokens.parse(t) for t in self.current_tokens())
        # Compare against both so the time taken does not tell which one matched.
        is_worker, is_manager = token.same_secret(worker), token.same_secret(manager)
        return "manager" if is_manager else "worker" if is_worker else None

    async def handle(self, conn: Connection) -> None:
        """Serve one anonymous connection: root CA requests, then at most one join."""
        while True:
            try:
                message = json.loads(await conn.recv())
            except ValueError:
                return
            if not isinstance(message, dict):
                return
            kind = message.get("type")
            if kind == "root_ca":
                ca_process.prepare()  # its join request follows in ~50 ms
                await conn.send(json.dumps({"ca": self.ca_cert_pem.decode()}).encode())
            elif kind == "join":
                await conn.send(json.dumps(await self._join(message)).encode())
                return
            else:
                await conn.send(json.dumps({"error": "not allowed before joining"}).encode())
                return

    async def _join(self, message: dict[str, Any]) -> dict[str, Any]:
        role = self.role_for(str(message.get("token", "")))
        if role is None:
            return {"error": INVALID_TOKEN}
        node_id = str(message.get("node_id") or new_node_id())
        req = JoinRequest(
            hostname=str(message.get("hostname", ""))[:255],
            advertise_addr=str(message.get("advertise_addr", "")),
            node_id=node_id,
        )
        try:
            cert = await ca_process.issue(
                self.ca_cert_pem, self.ca_key_pem, str(message.get("csr", "")),
                node_id=node_id, role=role, cluster_id=self.cluster_id, now=self.now(),
                validity=self.validity(),
            )  # fmt: skip
        except certs.CertificateError as exc:
            return {"error": f"invalid certificate request: {exc}"}
        except (ca_process.HelperError, OSError, TimeoutError) as exc:
            log.error("could not sign a joining node's certificate: %r", exc)
            return {"error": f"the manager could not sign the certificate: {exc}"}
        try:
            managers = await self.register(node_id, role, req)
        except OverlaydError as exc:
            return {"error": str(exc)}
        return {"cert": cert.decode(), "managers": managers}
