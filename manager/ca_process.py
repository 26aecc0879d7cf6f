"""Certificate work (keys, requests, signatures) in a short-lived child process.

cryptography's Rust extension carries its own OpenSSL: once imported it keeps ~8 MB
resident for the rest of the daemon's life, for work done at init, join and renewal only.
So that work runs in `python -m manager.ca_process` (one JSON request on stdin, one JSON
reply on stdout, ~80 ms), and the daemon reads certificates with the standard library's
ssl alone (certs.py). Keys travel through the pipe, never through argv or files.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Any

from manager.certs import CertificateError

TIMEOUT = 30.0


class HelperError(RuntimeError):
    """The child itself failed (could not start, crashed, timed out): not the request's fault."""

# A burst of joins must not start a child (~27 MB each) per join at once.
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class Minted:
    """A new cluster's root and its first (manager) node's credentials."""

    ca_cert_pem: bytes
    ca_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes


class _Child:
    """One child process: it loads cryptography at once, then serves one request."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls) -> _Child:
        try:
            proc = await asyncio.create_subprocess_exec(
                # -P: not the working directory first on sys.path; nothing there may shadow us
                sys.executable, "-P", "-m", "manager.ca_process",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            raise HelperError(f"could not start the certificate helper: {exc}") from exc
        return cls(proc)

    async def run(self, request: bytes) -> dict[str, Any]:
        proc = self.proc
        try:
            async with asyncio.timeout(TIMEOUT):
                out, err = await proc.communicate(request)
        except TimeoutError as exc:
            await self.discard()
            raise HelperError(f"the certificate helper did not answer in {TIMEOUT:.0f} s") from exc
        except BaseException:
            await self.discard()
            raise
        try:
            reply = json.loads(out)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            lines = err.decode(errors="replace").strip().splitlines()
            raise HelperError(
                f"certificate helper failed: {lines[-1] if lines else f'exit {proc.returncode}'}"
            )
        return reply

    async def discard(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


@dataclass
class _Warm:
    child: asyncio.Task[_Child]
    expiry: asyncio.TimerHandle


WARM_FOR = 5.0  # seconds a prepared child waits for its request
_WARM: dict[asyncio.AbstractEventLoop, _Warm] = {}  # emptied by use, expiry or discard_prepared


def prepare() -> None:
    """Work is probably coming (a joiner asked for the root CA and will send its request
    in ~50 ms): start a child now, so that signing then costs a pipe round trip instead of
    a process start. At most one waits; unused, it goes after WARM_FOR seconds."""
    loop = asyncio.get_running_loop()
    if loop in _WARM:
        return
    task = loop.create_task(_Child.spawn())
    _WARM[loop] = _Warm(task, loop.call_later(WARM_FOR, _expire, loop, task))


def _expire(loop: asyncio.AbstractEventLoop, task: asyncio.Task[_Child]) -> None:
    warm = _WARM.get(loop)
    if warm is not None and warm.child is task:
        del _WARM[loop]
        loop.create_task(_discard(task))


async def _discard(task: asyncio.Task[_Child]) -> None:
    with contextlib.suppress(Exception):
        await (await task).discard()


async def discard_prepared() -> None:
    """Stop a prepared child now (the daemon is stopping): it would wait out WARM_FOR."""
    warm = _WARM.pop(asyncio.get_running_loop(), None)
    if warm is not None:
        warm.expiry.cancel()
        await _discard(warm.child)


async def _run(op: str, **args: Any) -> dict[str, Any]:
    request = json.dumps({"op": op, **args}).encode()
    loop = asyncio.get_running_loop()
    warm = _WARM.pop(loop, None)
    child = None
    if warm is not None:
        warm.expiry.cancel()
        with contextlib.suppress(HelperError):
            child = await warm.child  # if it failed to start, a fresh one gets its chance
    if child is not None:
        reply = await child.run(request)
    else:
        slots = _SLOTS.setdefault(loop, asyncio.Semaphore(2))
        async with slots:
            reply = await (await _Child.spawn()).run(request)
    if "error" in reply:
        raise CertificateError(str(reply["error"]))
    return reply


async def new_cluster(node_id: str, cluster_id: str, now: dt.datetime) -> Minted:
    r = await _run("new_cluster", node_id=node_id, cluster_id=cluster_id, now=now.isoformat())
    return Minted(*(r[k].encode() for k in ("ca_cert", "ca_key", "cert", "key")))


async def new_request() -> tuple[bytes, str]:
    """A fresh private key and a certificate request for it: (key PEM, CSR PEM)."""
    r = await _run("new_request")
    return r["key"].encode(), r["csr"]


async def issue(
    ca_cert_pem: bytes, ca_key_pem: bytes, csr_pem: str, *, node_id: str, role: str,
    cluster_id: str, now: dt.datetime, validity: dt.timedelta,
) -> bytes:  # fmt: skip
    r = await _run(
        "issue", ca_cert=ca_cert_pem.decode(), ca_key=ca_key_pem.decode(), csr=csr_pem,
        node_id=node_id, role=role, cluster_id=cluster_id, now=now.isoformat(),
        validity=validity.total_seconds(),
    )  # fmt: skip
    return r["cert"].encode()


async def issuer_info(ca_cert_pem: bytes) -> tuple[bytes, bytes]:
    """The root's subject and public key (DER), as Docker's TLSInfo shows them."""
    import base64

    r = await _run("issuer_info", ca_cert=ca_cert_pem.decode())
    return base64.b64decode(r["subject"]), base64.b64decode(r["public_key"])


# --- the child ---------------------------------------------------------------------------


def _serve(req: dict[str, Any]) -> dict[str, Any]:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from manager import ca

    op = req.get("op") if isinstance(req, dict) else None
    if op == "new_cluster":
        now = dt.datetime.fromisoformat(req["now"])
        root = ca.RootCA.create(now)
        key = ca.new_key()
        cert = root.issue(ca.make_csr(key), node_id=req["node_id"], role="manager",
                          cluster_id=req["cluster_id"], now=now)  # fmt: skip
        assert root.key is not None
        return {"ca_cert": root.pem.decode(), "ca_key": ca.key_pem(root.key).decode(),
                "cert": ca.cert_pem(cert).decode(), "key": ca.key_pem(key).decode()}  # fmt: skip
    if op == "new_request":
        key = ca.new_key()
        csr = ca.make_csr(key).public_bytes(serialization.Encoding.PEM)
        return {"key": ca.key_pem(key).decode(), "csr": csr.decode()}
    if op == "issue":
        root = ca.RootCA(ca.load_cert(req["ca_cert"].encode()), ca.load_key(req["ca_key"].encode()))
        try:
            csr = x509.load_pem_x509_csr(str(req["csr"]).encode())
        except ValueError as exc:
            raise ca.CertificateError("not a PEM certificate request") from exc
        cert = root.issue(
            csr, node_id=req["node_id"], role=req["role"], cluster_id=req["cluster_id"],
            now=dt.datetime.fromisoformat(req["now"]),
            validity=dt.timedelta(seconds=float(req["validity"])),
        )  # fmt: skip
        return {"cert": ca.cert_pem(cert).decode()}
    if op == "issuer_info":
        cert = ca.load_cert(req["ca_cert"].encode())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"subject": base64.b64encode(cert.subject.public_bytes()).decode(),
                "public_key": base64.b64encode(spki).decode()}  # fmt: skip
    raise ca.CertificateError(f"unknown operation {op!r}")


def main() -> None:
    from manager import ca  # noqa: F401  loaded before the request comes (prepare())

    data = sys.stdin.buffer.read()
    if not data:
        return  # a prepared child nobody needed
    try:
        reply = _serve(json.loads(data))
    except (CertificateError, ValueError, KeyError, TypeError) as exc:
        reply = {"error": str(exc) if isinstance(exc, CertificateError) else repr(exc)}
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    os._exit(0)  # the reply is out; tearing down the interpreter would only delay it


if __name__ == "__main__":
    main()
