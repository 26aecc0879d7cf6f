"""Network-namespace helpers for integration tests (need root, iproute2 and nsenter).

A Lab makes namespaces whose names share one random prefix (`ovt-<hex>-`), so concurrent
runs never collide and leftovers are recognisable; closing it kills every process it spawned
and deletes every namespace it made, also when the test failed. Commands run in a namespace
through `nsenter --net=`, which (unlike `ip netns exec`) keeps the caller's mount namespace.
Poll with wait_until() instead of sleeping.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

T = TypeVar("T")

NETNS_DIR = "/run/netns"


def require_root() -> None:
    """Skip the calling test unless it can create namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


def wait_until(
    check: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call check() until it returns something truthy (returned) or the deadline passes.

    Exceptions raised by check() count as "not yet"; the last one is chained on timeout.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # polled, not fatal until the deadline
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from last
        time.sleep(interval)


@dataclass(frozen=True)
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.name}"

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *cmd]

    def run(
        self,
        *cmd: str,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd inside the namespace; output captured as text."""
        return subprocess.run(
            self.argv(*cmd),
            check=check,
            timeout=timeout,
            input=input,
            cwd=cwd,
            capture_output=True,
            text=True,
        )

    def ok(self, *cmd: str, timeout: float = 30.0) -> bool:
        return self.run(*cmd, check=False, timeout=timeout).returncode == 0


class Interactive:
    """A line-oriented child process: send_line() to its stdin, read_line() with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._buf = b""

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read_line(self, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no line from pid {self.proc.pid} within {timeout}s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"pid {self.proc.pid} closed its stdout ({self._buf!r})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()


@dataclass
class Lab:
    """Namespaces and processes of one test, removed by close()."""

    tag: str = "ovt"
    prefix: str = field(init=False)
    namespaces: list[Netns] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = f"{self.tag}-{secrets.token_hex(3)}-"

    def netns(self, short: str) -> Netns:
        """Create <prefix><short> with lo up."""
        ns = Netns(self.prefix + short)
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
        self.namespaces.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def delete_netns(self, ns: Netns) -> None:
        subprocess.run(["ip", "netns", "del", ns.name], check=True, capture_output=True)
        self.namespaces.remove(ns)

    def spawn(self, ns: Netns, *cmd: str, interactive: bool = False) -> subprocess.Popen[bytes]:
        """Start cmd in ns in its own session (so close() can kill its whole group)."""
        pipe = subprocess.PIPE if interactive else subprocess.DEVNULL
        proc = subprocess.Popen(
            ns.argv(*cmd), stdin=pipe, stdout=pipe, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def interactive(self, ns: Netns, *cmd: str) -> Interactive:
        return Interactive(self.spawn(ns, *cmd, interactive=True))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        self.procs.clear()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns.name], check=False, capture_output=True)
        self.namespaces.clear()


@contextmanager
def lab(tag: str = "ovt") -> Iterator[Lab]:
    """A Lab that is closed however the block ends."""
    require_root()
    it = Lab(tag)
    try:
        yield it
    finally:
        it.close()
