"""Run overlayd as a real process inside a test-made "host" namespace, and talk to it.

A host is a netns with loopback up and an uplink (a veth pair kept inside the namespace,
since this kernel has no dummy links) holding a default route, so overlayd sees a host
like a real one. Everything created here is removed by `close()`, also after failures.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplane.layout import run_dir_for, sandbox_dir

REPO = Path(__file__).resolve().parents[2]
OVERLAYD = str(Path(sys.executable).with_name("overlayd"))
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PREFIX = "ovt"


def run(
    *cmd: str, check: bool = True, timeout: float = 30, **kw: Any
) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> Any:  # fmt: skip
    """Poll until predicate() is truthy; fail with `what` at the deadline (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def unique(tag: str) -> str:
    return f"{PREFIX}{secrets.token_hex(3)}{tag}"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def sh(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return run("nsenter", f"--net={self.path}", *cmd, check=check, timeout=timeout)

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(["nsenter", f"--net={self.path}", *cmd], **kw)


def make_netns(name: str) -> Netns:
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "set", "lo", "up")
    return Netns(name)


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@dataclass
class Host:
    """One test host: a netns, overlayd in it, its socket and state dir."""

    ns: Netns
    workdir: Path
    proc: subprocess.Popen | None = None
    containers: list[Netns] = field(default_factory=list)
    extra_args: tuple[str, ...] = ()

    @property
    def socket(self) -> str:
        return str(self.workdir / "overlayd.sock")

    @property
    def state_dir(self) -> str:
        return str(self.workdir / "state")

    @property
    def log_path(self) -> Path:
        return self.workdir / "overlayd.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    # -- daemon lifecycle ---------------------------------------------------------------
    def start(self, *extra: str, wait: bool = True, env: dict[str, str] | None = None) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = self.ns.popen(
            OVERLAYD, "run", "--socket", self.socket, "--state-dir", self.state_dir,
            "--log-format", "json", "--log-level", "debug", *self.extra_args, *extra,
            stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO), env=env,
        )  # fmt: skip
        log.close()
        if wait:
            wait_for(self._ready, timeout=20, what=f"overlayd in {self.ns.name} to answer")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"overlayd exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.request("GET", "/_ping").status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    # -- clients ------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> Reply:  # fmt: skip
        conn = UnixHTTPConnection(self.socket, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            payload = raw
            if body is not None:
                payload = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=payload, headers=hdrs)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def docker(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, env=self.env, timeout=timeout,
            check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result

    def container(self, tag: str = "c") -> Netns:
        ns = make_netns(unique(tag))
        self.containers.append(ns)
        return ns

    def close(self) -> None:
        try:
            self.stop()
        finally:
            remove_sandboxes(run_dir_for(self.state_dir))
            for ns in self.containers:
                delete_netns(ns.name)
            delete_netns(self.ns.name)
            shutil.rmtree(self.workdir, ignore_errors=True)


def remove_sandboxes(run_dir: str) -> None:
    """overlayd leaves its overlay sandboxes in place when stopped (traffic must survive a
    restart); a test host is gone for good, so its sandbox bind mounts go too."""
    ns_dir = sandbox_dir(run_dir)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(ns_dir):
            path = os.path.join(ns_dir, name)
            subprocess.run(["umount", path], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                os.unlink(path)
    for d in (ns_dir, run_dir):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def make_host(tag: str = "h") -> Host:
    ns = make_netns(unique(tag))
    try:
        ns.sh("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
        ns.sh("ip", "addr", "add", "198.51.100.2/24", "dev", "uplink0")
        ns.sh("ip", "link", "set", "uplink0", "up")
        ns.sh("ip", "link", "set", "uplink1", "up")
        ns.sh("ip", "route", "add", "default", "via", "198.51.100.1")
    except Exception:
        delete_netns(ns.name)
        raise
    workdir = Path(tempfile.mkdtemp(prefix=f"{ns.name}-"))
    return Host(ns=ns, workdir=workdir)
