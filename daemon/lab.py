"""`overlayd lab`: several overlayd hosts on one machine, to try swarm and overlay networks.

A lab with prefix P (default `ovlab-`) is:

    netns P+"underlay"    bridge `ul0`; per host k the underlay end `host<k>` of a veth pair
    netns P+"host<k>"     lo up, `eth0` = 192.0.2.<k>/24 (MTU 1500), no default route,
                          `overlayd run --advertise-addr 192.0.2.<k>` started in it
    /run/overlayd-lab/P+"host<k>".{sock,pid,log}     /var/lib/overlayd-lab/P+"host<k>"

The root network namespace gets nothing: every veth pair is created inside the underlay
namespace with its peer put straight into the host's, so no device, address or route
ever appears in root, and traffic never leaves the machine (192.0.2.0/24 is TEST-NET-1).

Daemons are started with `nsenter --net=`, not `ip netns exec`, so they stay in this mount
namespace as overlayd does on a real host (DESIGN.md: sandboxes it bind-mounts must be
visible to everyone and outlive the process). They run in their own session and outlive
`lab up`; `lab down` finds them again through pid files and by scanning /proc for every
process whose network namespace is one of the lab's.

Tests and scripts use `lab_hosts(prefix)` for host records (netns, addr, socket, ...).
The lab is tooling, not the data path, so it drives the kernel with `ip` subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from daemon.config import LOG_LEVELS
from dataplane.layout import run_dir_for

DEFAULT_PREFIX = "ovlab-"
RUN_DIR = "/run/overlayd-lab"
STATE_ROOT = "/var/lib/overlayd-lab"
NETNS_DIR = "/run/netns"
UNDERLAY = IPv4Network("192.0.2.0/24")
BRIDGE = "ul0"
HOST_IFNAME = "eth0"
MTU = 1500
MAX_HOSTS = UNDERLAY.num_addresses - 2  # host k is 192.0.2.<k>: 1..254
UP_TIMEOUT = 30.0
DOWN_TIMEOUT = 10.0

_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_MNT_DETACH = 2


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message says why and what to do next."""


@dataclass(frozen=True)
class LabHost:
    """One lab host: where it lives and how to reach its daemon (paths are derived, not probed)."""

    name: str  # "host1"
    index: int
    netns: str  # "ovlab-host1"
    addr: str  # "192.0.2.1" (prefix length: UNDERLAY.prefixlen)
    socket: str
    state_dir: str
    log: str
    pid_file: str

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for docker CLI / docker-py talking to this host's daemon."""
        return {**(os.environ if base is None else base), "DOCKER_HOST": self.docker_host}

    def argv(self, *cmd: str) -> list[str]:
        """argv running cmd inside this host's network namespace (keeping our mount namespace)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *cmd]


@dataclass
class HostStatus:
    host: LabHost
    pid: int | None
    state: str  # "ready", "not answering", "stopped"
    action: str = ""  # what `up` did: "started", "running", ""

    def as_dict(self) -> dict[str, Any]:
        h = self.host
        return {
            "name": h.name, "netns": h.netns, "addr": h.addr, "socket": h.socket,
            "state_dir": h.state_dir, "log": h.log, "pid": self.pid, "state": self.state,
        }  # fmt: skip


def check_prefix(prefix: str) -> str:
    """Prefixes become namespace and file names: keep them short and path-safe."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise LabError(
            f"prefix {prefix!r}: use 1-32 letters, digits, '-', '_' or '.', starting with a "
            "letter or digit"
        )
    return prefix


class Lab:
    """The lab with one prefix: its namespaces, daemons and files."""

    def __init__(
        self, prefix: str = DEFAULT_PREFIX, run_dir: str = RUN_DIR, state_root: str = STATE_ROOT
    ) -> None:
        self.prefix = check_prefix(prefix)
        self.run_dir = run_dir
        self.state_root = state_root
        self._host_re = re.compile(re.escape(prefix) + r"host([1-9][0-9]{0,2})")

    # -- naming ---------------------------------------------------------------------------
    @property
    def underlay_netns(self) -> str:
        return self.prefix + "underlay"

    def host(self, k: int) -> LabHost:
        if not 1 <= k <= MAX_HOSTS:
            raise LabError(f"host index {k} out of range 1..{MAX_HOSTS}")
        netns = f"{self.prefix}host{k}"
        base = os.path.join(self.run_dir, netns)
        return LabHost(
            name=f"host{k}", index=k, netns=netns, addr=str(UNDERLAY.network_address + k),
            socket=base + ".sock", state_dir=os.path.join(self.state_root, netns),
            log=base + ".log", pid_file=base + ".pid",
        )  # fmt: skip

    def resolve(self, name: str) -> LabHost:
        """`3`, `host3` or `<prefix>host3` → host 3 (it must exist)."""
        m = re.fullmatch(r"(?:" + re.escape(self.prefix) + r")?(?:host)?([0-9]+)", name)
        if m is None or not 1 <= int(m.group(1)) <= MAX_HOSTS:
            raise LabError(f"{name!r} is not a lab host name (expected e.g. host1)")
        host = self.host(int(m.group(1)))
        if not _netns_exists(host.netns):
            raise LabError(
                f"no host {host.name} in lab {self.prefix!r} (see `overlayd lab status`)"
            )
        return host

    def hosts(self) -> list[LabHost]:
        """Hosts whose namespace exists, by index."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(NETNS_DIR):
                m = self._host_re.fullmatch(name)
                if m and int(m.group(1)) <= MAX_HOSTS:
                    found.append(int(m.group(1)))
        return [self.host(k) for k in sorted(found)]

    def _known_indices(self) -> set[int]:
        """Hosts with a namespace or any file left: what `down` must clean."""
        found = {h.index for h in self.hosts()}
        for root in (self.run_dir, self.state_root):
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(root):
                    stem = name.rsplit(".", 1)[0] if root == self.run_dir else name
                    m = self._host_re.fullmatch(stem)
                    if m and int(m.group(1)) <= MAX_HOSTS:
                        found.add(int(m.group(1)))
        return found

    def exists(self) -> bool:
        """Any of the lab's namespaces is there (logs and state alone are not a lab)."""
        return _netns_exists(self.underlay_netns) or bool(self.hosts())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One lab command at a time (a concurrent `up` and `down` would undo each other)."""
        os.makedirs(self.run_dir, mode=0o755, exist_ok=True)
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- up -------------------------------------------------------------------------------
    def up(
        self,
        n: int,
        timeout: float = UP_TIMEOUT,
        log_level: str = "info",
        log_format: str = "json",
    ) -> list[HostStatus]:
        """Make hosts 1..n exist and answer /_ping; what already exists is kept as is."""
        if not 1 <= n <= MAX_HOSTS:
            raise LabError(f"number of hosts must be 1..{MAX_HOSTS}, not {n}")
        with self._locked():
            self._ensure_underlay()
            wanted = [self.host(k) for k in range(1, n + 1)]
            for host in wanted:
                self._ensure_host_network(host)
            actions: dict[str, str] = {}
            procs: dict[str, subprocess.Popen[bytes]] = {}
            for host in wanted:
                if (pid := daemon_pid(host)) is not None:
                    Path(host.pid_file).write_text(f"{pid}\n")  # in case it was lost
                    actions[host.name] = "running"
                else:
                    procs[host.name] = _start_daemon(host, log_level, log_format)
                    actions[host.name] = "started"
            self._wait_ready(wanted, procs, timeout)
            statuses = self.status()
        for st in statuses:
            st.action = actions.get(st.host.name, "")
        return statuses

    def _ensure_underlay(self) -> None:
        ul = self.underlay_netns
        _ensure_netns(ul)
        if not _link_exists(ul, BRIDGE):
            _ip("-n", ul, "link", "add", BRIDGE, "mtu", str(MTU), "type", "bridge")
        _ip("-n", ul, "link", "set", BRIDGE, "up")

    def _ensure_host_network(self, host: LabHost) -> None:
        ul, port = self.underlay_netns, host.name
        _ensure_netns(host.netns)
        have_port, have_eth = _link_exists(ul, port), _link_exists(host.netns, HOST_IFNAME)
        if not (have_port and have_eth):
            # half a pair (someone deleted or moved an end): start that link over
            if have_port:
                _ip("-n", ul, "link", "del", port)
            if have_eth:
                _ip("-n", host.netns, "link", "del", HOST_IFNAME)
            _ip("-n", ul, "link", "add", port, "mtu", str(MTU), "type", "veth",
                "peer", "name", HOST_IFNAME, "mtu", str(MTU), "netns", host.netns)  # fmt: skip
        _ip("-n", ul, "link", "set", port, "master", BRIDGE, "up")
        _ip("-n", host.netns, "addr", "replace", f"{host.addr}/{UNDERLAY.prefixlen}",
            "dev", HOST_IFNAME)  # fmt: skip
        _ip("-n", host.netns, "link", "set", HOST_IFNAME, "mtu", str(MTU), "up")

    def _wait_ready(
        self, hosts: list[LabHost], procs: dict[str, subprocess.Popen[bytes]], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(hosts)
        while waiting:
            for host in list(waiting):
                proc = procs.get(host.name)
                if proc is not None and proc.poll() is not None:
                    raise LabError(
                        f"overlayd on {host.name} exited with status {proc.returncode}; "
                        f"last lines of {host.log}:\n{_tail(host.log)}\n"
                        f"(the lab is left as it is: `{self._cmd('down')}` removes it)"
                    )
                if ping(host.socket):
                    waiting.remove(host)
            if not waiting:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(h.name for h in waiting)
                logs = "\n".join(f"--- {h.log}\n{_tail(h.log)}" for h in waiting)
                raise LabError(
                    f"no answer to GET /_ping within {timeout:g}s from {names}\n{logs}\n"
                    f"(the lab is left as it is: `{self._cmd('down')}` removes it)"
                )
            time.sleep(0.05)

    # -- status ---------------------------------------------------------------------------
    def status(self) -> list[HostStatus]:
        out = []
        for host in self.hosts():
            pid = daemon_pid(host)
            state = "ready" if pid and ping(host.socket) else "not answering" if pid else "stopped"
            out.append(HostStatus(host, pid, state))
        return out

    # -- down -----------------------------------------------------------------------------
    def down(self, purge: bool = False, timeout: float = DOWN_TIMEOUT) -> list[str]:
        """Remove everything of the lab; returns what was removed, for the user."""
        with self._locked():
            return self._down(purge, timeout)

    def _down(self, purge: bool, timeout: float) -> list[str]:
        done: list[str] = []
        hosts = [self.host(k) for k in sorted(self._known_indices())]
        namespaces = [h.netns_path for h in hosts if _netns_exists(h.netns)]
        if _netns_exists(self.underlay_netns):
            namespaces.append(f"{NETNS_DIR}/{self.underlay_netns}")
        sandboxes = [m for h in hosts for m in _mounts_below(run_dir_for(h.state_dir))]

        pids = {p for h in hosts if (p := daemon_pid(h)) is not None}
        pids |= set(pids_in_netns(namespaces + sandboxes))
        if pids:
            _terminate(pids, timeout)
            done.append(f"stopped {len(pids)} process(es): {' '.join(map(str, sorted(pids)))}")

        for mount in sorted(sandboxes, reverse=True):
            _umount(mount)
        for h in hosts:
            shutil.rmtree(run_dir_for(h.state_dir), ignore_errors=True)
        if sandboxes:
            done.append(f"removed {len(sandboxes)} overlay sandbox namespace(s)")

        ul = self.underlay_netns
        if _netns_exists(ul):
            # explicit, so links go even if something still pins a namespace
            for h in hosts:
                if _link_exists(ul, h.name):
                    _ip("-n", ul, "link", "del", h.name, check=False)
            _ip("-n", ul, "link", "del", BRIDGE, check=False)
        for h in hosts:
            if _netns_exists(h.netns):
                _ip("netns", "del", h.netns)
                done.append(f"removed netns {h.netns}")
        if _netns_exists(ul):
            _ip("netns", "del", ul)
            done.append(f"removed netns {ul}")

        for h in hosts:
            for path in (h.socket, h.pid_file):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            if purge and (os.path.exists(h.log) or os.path.isdir(h.state_dir)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(h.log)
                shutil.rmtree(h.state_dir, ignore_errors=True)
                done.append(f"removed log and state dir of {h.name}")
        kept = [p for h in hosts for p in (h.log, h.state_dir) if os.path.exists(p)]
        if done and kept:
            done.append(f"kept {len(kept)} log(s) and state dir(s) (`--purge` removes them)")
        return done

    def _cmd(self, action: str) -> str:
        flag = "" if self.prefix == DEFAULT_PREFIX else f" --prefix {self.prefix}"
        return f"overlayd lab {action}{flag}"


def lab_hosts(prefix: str = DEFAULT_PREFIX) -> list[LabHost]:
    """The hosts of the lab with this prefix that exist now (namespace present), by index.

    For tests and scripts: `nsenter --net=<h.netns_path>` or `ip netns exec <h.netns>` runs a
    command in host h; `h.env()` points the docker CLI at its daemon.
    """
    return Lab(prefix).hosts()


# -- daemons ------------------------------------------------------------------------------
def daemon_command() -> list[str]:
    """How to start overlayd with this interpreter: its console script, else the module.

    The module is named as a command, not imported: the api layer sits above this one.
    """
    script = Path(sys.executable).with_name("overlayd")
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "api.main"]


def _start_daemon(host: LabHost, log_level: str, log_format: str) -> subprocess.Popen[bytes]:
    os.makedirs(os.path.dirname(host.socket), mode=0o755, exist_ok=True)
    os.makedirs(host.state_dir, mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "DOCKER_HOST")}
    env["PYTHONUNBUFFERED"] = "1"
    pkg_root = str(Path(__file__).resolve().parents[1])  # for the `-m` fallback
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    cmd = host.argv(
        *daemon_command(), "run", "--socket", host.socket, "--state-dir", host.state_dir,
        "--advertise-addr", host.addr, "--hostname", host.name,
        "--log-format", log_format, "--log-level", log_level,
    )  # fmt: skip
    with open(host.log, "ab") as log:
        log.write(f"--- overlayd lab: starting {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/",
            env=env, start_new_session=True,  # outlives `lab up`, and its terminal's ^C
        )  # fmt: skip
    # nsenter execs (no fork): proc.pid is overlayd's own pid
    Path(host.pid_file).write_text(f"{proc.pid}\n")
    return proc


def daemon_pid(host: LabHost) -> int | None:
    """The pid of the overlayd serving host's socket, if one is alive."""
    try:
        pid = int(Path(host.pid_file).read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and _is_daemon_of(pid, host):
        return pid
    for pid in pids_in_netns([host.netns_path]) if _netns_exists(host.netns) else []:
        if _is_daemon_of(pid, host):  # the pid file was lost: found the daemon anyway
            return pid
    return None


def _is_daemon_of(pid: int, host: LabHost) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _alive(pid) and b"run" in args and host.socket.encode() in args


def ping(sock: str, timeout: float = 1.0) -> bool:
    """GET /_ping on a unix socket answers 200?"""
    conn = _UnixHTTPConnection(sock, timeout)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


# -- processes and namespaces -----------------------------------------------------------
def pids_in_netns(paths: list[str]) -> list[int]:
    """Processes whose network namespace is one of these netns files (`ip netns pids`, batched)."""
    keys = set()
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            keys.add((st.st_dev, st.st_ino))
    if not keys:
        return []
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in keys:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Running and not a zombie (a killed daemon waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _terminate(pids: set[int], timeout: float) -> None:
    """SIGTERM (overlayd stops cleanly), then SIGKILL whatever is left at the deadline."""
    _signal_all(pids, signal.SIGTERM)
    if not _wait_gone(pids, timeout):
        _signal_all(pids, signal.SIGKILL)
        _wait_gone(pids, 5.0)


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: set[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _netns_exists(name: str) -> bool:
    return os.path.exists(f"{NETNS_DIR}/{name}")


def _ensure_netns(name: str) -> None:
    if not _netns_exists(name):
        _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")


def _link_exists(netns: str, ifname: str) -> bool:
    return _ip("-n", netns, "link", "show", "dev", ifname, check=False).returncode == 0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def _mounts_below(directory: str) -> list[str]:
    """Mount points strictly below directory (overlayd's sandbox namespaces)."""
    prefix = directory.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [_unescape(line.split()[4]) for line in f]
    return sorted({p for p in points if p.startswith(prefix)})


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _umount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.umount2(path.encode(), _MNT_DETACH)  # an already-gone mount is fine


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


# -- command line -------------------------------------------------------------------------
LAB_DESCRIPTION = f"""\
Run several overlayd "hosts" on this machine, to try swarm and overlay networks without
more machines. Each host is a network namespace ({DEFAULT_PREFIX}host<k>) with eth0 =
192.0.2.<k>/24 on a bridge that lives in a namespace of its own ({DEFAULT_PREFIX}underlay),
running its own overlayd (socket {RUN_DIR}/{DEFAULT_PREFIX}host<k>.sock, state
{STATE_ROOT}/{DEFAULT_PREFIX}host<k>, log next to the socket). Nothing is added to this
machine's own network namespace. Needs root.

  overlayd lab up 3                    # create (or extend) the lab, wait until all answer
  eval "$(overlayd lab env host1)"     # point docker at host1's daemon
  docker swarm init
  ip netns exec {DEFAULT_PREFIX}host2 ping -c1 192.0.2.1
  overlayd lab status
  overlayd lab down --purge            # remove everything, state included"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `lab` subcommand of `overlayd`."""
    lab = sub.add_parser(
        "lab",
        help="run several overlayd hosts in network namespaces on this machine (try a swarm)",
        description=LAB_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"name prefix of the lab's namespaces and files, so several labs can coexist "
        f"(default {DEFAULT_PREFIX})",
    )
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        parents=[common],
        help="create hosts 1..N (keeping any that exist) and wait until each daemon answers",
        description="Create hosts 1..N and their underlay, start overlayd in each and wait "
        "until every daemon answers GET /_ping. Running it again is safe: existing hosts "
        "and running daemons are kept, missing ones are added, a stopped daemon is started.",
    )
    up.add_argument("n", type=int, metavar="N", help=f"number of hosts (1..{MAX_HOSTS})")
    up.add_argument(
        "--timeout", type=float, default=UP_TIMEOUT, metavar="SECONDS",
        help=f"how long to wait for the daemons to answer (default {UP_TIMEOUT:g})",
    )  # fmt: skip
    up.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="the daemons' (default info)"
    )
    up.add_argument(
        "--log-format", default="json", choices=("json", "console"),
        help="the daemons' log format in their log files (default json)",
    )  # fmt: skip
    down = actions.add_parser(
        "down",
        parents=[common],
        help="stop the daemons and remove the namespaces, links, sockets and pid files",
        description="Stop every process in the lab's namespaces (SIGTERM, then SIGKILL after "
        "--timeout), remove the overlay sandboxes the daemons made, the namespaces, links, "
        "sockets and pid files. Logs and state dirs stay unless --purge is given.",
    )
    down.add_argument("--purge", action="store_true", help="also remove state dirs and logs")
    down.add_argument(
        "--timeout", type=float, default=DOWN_TIMEOUT, metavar="SECONDS",
        help=f"grace period after SIGTERM before SIGKILL (default {DOWN_TIMEOUT:g})",
    )  # fmt: skip
    status = actions.add_parser(
        "status",
        parents=[common],
        help="show the hosts and whether each daemon answers (exit 1 if not all do)",
        description="List the lab's hosts, their daemons and whether each answers GET /_ping. "
        "Exit status 0 when the lab exists and every daemon answers, 1 otherwise.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    env = actions.add_parser(
        "env",
        parents=[common],
        help='print `export DOCKER_HOST=...` for a host: eval "$(overlayd lab env host1)"',
        description="Print the shell line that points the docker CLI at HOST's daemon.",
    )
    env.add_argument("host", metavar="HOST", help="host1, or just 1")


def main(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Run one `overlayd lab` action; errors become a message and exit status 1."""
    try:
        lab = Lab(args.prefix)
        if args.lab_command == "env":
            out(f"export DOCKER_HOST={lab.resolve(args.host).docker_host}")
            return 0
        _require_root_and_tools()
        if args.lab_command == "up":
            statuses = lab.up(args.n, args.timeout, args.log_level, args.log_format)
            out(render_table(lab, statuses))
            out(render_usage(lab, statuses))
            return 0
        if args.lab_command == "down":
            done = lab.down(purge=args.purge, timeout=args.timeout)
            for line in done or [f"no lab with prefix {lab.prefix!r}: nothing to do"]:
                out(line)
            return 0
        if args.lab_command == "status":
            return _status(lab, args.json, out)
    except LabError as exc:
        print(f"overlayd lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("overlayd lab: interrupted; `overlayd lab down` removes what exists", file=sys.stderr)
        return 130
    return 2


def _status(lab: Lab, as_json: bool, out: Callable[[str], None]) -> int:
    statuses = lab.status() if lab.exists() else []
    healthy = bool(statuses) and all(s.state == "ready" for s in statuses)
    if as_json:
        doc = {
            "prefix": lab.prefix,
            "underlay": {
                "netns": lab.underlay_netns, "present": _netns_exists(lab.underlay_netns),
                "bridge": BRIDGE, "subnet": str(UNDERLAY),
            },
            "hosts": [s.as_dict() for s in statuses],
        }  # fmt: skip
        out(json.dumps(doc, indent=2))
    elif not statuses:
        out(f"no lab with prefix {lab.prefix!r} (create one with `{lab._cmd('up 3')}`)")
    else:
        out(render_table(lab, statuses))
    return 0 if healthy else 1


def render_table(lab: Lab, statuses: list[HostStatus]) -> str:
    ul = "present" if _netns_exists(lab.underlay_netns) else "MISSING"
    head = (
        f"lab {lab.prefix!r}: {len(statuses)} host(s) on {UNDERLAY} "
        f"(bridge {BRIDGE} in netns {lab.underlay_netns}: {ul})"
    )
    rows = [("HOST", "NETNS", "ADDRESS", "PID", "DAEMON", "SOCKET")]
    for s in statuses:
        state = f"{s.state} ({s.action})" if s.action else s.state
        rows.append((s.host.name, s.host.netns, f"{s.host.addr}/{UNDERLAY.prefixlen}",
                     str(s.pid or "-"), state, s.host.socket))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([head, "", *lines])


def render_usage(lab: Lab, statuses: list[HostStatus]) -> str:
    hosts = [s.host for s in statuses]
    if not hosts:
        return ""
    first, other = hosts[0], hosts[1] if len(hosts) > 1 else hosts[0]
    lines = ["", "Talk to a host's daemon with the docker CLI (or docker-py, curl):"]
    lines += [f"  export DOCKER_HOST={h.docker_host}   # {h.name}" for h in hosts]
    lines += [
        f'  eval "$({lab._cmd("env " + first.name)})"      # the same, for one host',
        "Run a command inside a host (its network namespace):",
        f"  ip netns exec {first.netns} ping -c1 {other.addr}",
        f"Logs: {lab.run_dir}/{lab.prefix}host<k>.log   "
        f"state: {lab.state_root}/{lab.prefix}host<k>",
        f"Status: {lab._cmd('status')}   tear down: {lab._cmd('down')} [--purge]",
    ]
    return "\n".join(lines)


def _require_root_and_tools() -> None:
    if os.geteuid() != 0:
        raise LabError("needs root (it creates network namespaces); try sudo")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            raise LabError(f"needs `{tool}` (iproute2 / util-linux) on PATH")
