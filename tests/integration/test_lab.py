"""`overlayd lab`: hosts in namespaces on an underlay, one daemon each, removed without a trace.

Every test uses its own prefix (`ovt<hex>-`), so it never meets a user's lab or another
run's. The fixture runs `overlayd lab down --purge` however the test ends, then scrubs by
name whatever might survive a broken `down` (processes, namespaces, mounts, files).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from daemon.lab import RUN_DIR, STATE_ROOT, LabHost, lab_hosts
from dataplane.layout import run_dir_for
from tests.integration.harness import DOCKER, OVERLAYD, run, wait_for

pytestmark = pytest.mark.kernel

UNDERLAY = IPv4Network("192.0.2.0/24")


def lab(*args: str, prefix: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(OVERLAYD, "lab", *args, "--prefix", prefix, check=check, timeout=60)


def status(prefix: str) -> dict[str, dict]:
    doc = json.loads(lab("status", "--json", prefix=prefix, check=False).stdout)
    return {h["name"]: h for h in doc["hosts"]}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def lab_files(prefix: str) -> list[str]:
    found = []
    for root in (RUN_DIR, STATE_ROOT):
        with suppress(FileNotFoundError):
            found += [f"{root}/{n}" for n in os.listdir(root) if n.startswith(prefix)]
    return found


def lab_netns(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))


def mounts_mentioning(*needles: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if any(n in line for n in needles)]


def root_view() -> tuple[set[tuple[int, str]], set[str], set[str]]:
    """Links, addresses and routes of the root namespace (where the lab must add nothing)."""
    links = {(x["ifindex"], x["ifname"]) for x in json.loads(run("ip", "-j", "link").stdout)}
    addrs = {
        f"{a['ifname']} {i['local']}/{i['prefixlen']}"
        for a in json.loads(run("ip", "-j", "addr").stdout)
        for i in a.get("addr_info", [])
    }
    routes = {
        json.dumps(r, sort_keys=True)
        for r in json.loads(run("ip", "-j", "route", "show", "table", "all").stdout)
    }
    return links, addrs, routes


def assert_root_untouched(before: tuple[set, set, set]) -> None:
    """Nothing of the lab's shape appeared in root: no ul0/eth0/host<k>, nothing in 192.0.2/24.

    Targeted rather than a full diff, so other tests running on this machine concurrently
    can't make it flaky.
    """
    links, addrs, routes = root_view()
    new_links = {name for _, name in links - before[0]}
    assert not {n for n in new_links if n in ("ul0", "eth0") or re.fullmatch(r"host\d+", n)}
    for a in addrs - before[1]:
        assert IPv4Address(a.split()[1].split("/")[0]) not in UNDERLAY, a
    assert not [r for r in routes - before[2] if "192.0.2." in r]


def scrub(prefix: str) -> None:
    """Remove by name what a broken `lab down` might leave (independent of daemon.lab)."""
    with suppress(FileNotFoundError):
        for name in lab_netns(prefix):
            pids = run("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
    for netns in lab_netns(prefix):
        if netns.rsplit("-", 1)[-1].startswith("host"):
            base = run_dir_for(f"{STATE_ROOT}/{netns}")
            for line in reversed(mounts_mentioning(base + "/")):
                run("umount", "-l", line.split()[4], check=False)
            shutil.rmtree(base, ignore_errors=True)
        run("ip", "netns", "del", netns, check=False)
    for path in lab_files(prefix):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with suppress(FileNotFoundError):
                os.unlink(path)


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"ovt{secrets.token_hex(3)}-"
    try:
        yield p
    finally:
        try:
            lab("down", "--purge", "--timeout", "5", prefix=p, check=False)
        finally:
            scrub(p)


def test_help_explains_the_lab() -> None:
    assert "lab" in run(OVERLAYD, "--help").stdout
    text = run(OVERLAYD, "lab", "--help").stdout
    for word in ("up", "down", "status", "env", "192.0.2.", "DOCKER_HOST", "netns"):
        assert word in text
    assert "--purge" in run(OVERLAYD, "lab", "down", "--help").stdout


def test_up_extend_use_and_down_without_a_trace(prefix: str) -> None:
    before = root_view()

    out = lab("up", "2", prefix=prefix).stdout
    assert f"{prefix}host2" in out and "export DOCKER_HOST=unix://" in out
    first = status(prefix)
    assert sorted(first) == ["host1", "host2"]

    out = lab("up", "3", prefix=prefix).stdout  # extends, keeps what runs
    assert "ready (running)" in out and "ready (started)" in out
    st = status(prefix)
    assert [st[h]["pid"] for h in ("host1", "host2")] == [first[h]["pid"] for h in first]
    assert all(h["state"] == "ready" for h in st.values())

    hosts = lab_hosts(prefix)
    assert [(h.name, h.netns, h.addr) for h in hosts] == [
        (f"host{k}", f"{prefix}host{k}", f"192.0.2.{k}") for k in (1, 2, 3)
    ]
    for h in hosts:
        check_host(h, st[h.name]["pid"])

    # the hosts reach each other over the underlay
    for dst in ("192.0.2.2", "192.0.2.3"):
        run(*hosts[0].argv("ping", "-c1", "-W2", dst))
    assert_root_untouched(before)

    again = lab("up", "3", prefix=prefix)  # idempotent: nothing restarted
    assert "started" not in again.stdout
    assert {n: h["pid"] for n, h in status(prefix).items()} == {n: h["pid"] for n, h in st.items()}
    env = lab("env", "host2", prefix=prefix).stdout.strip()
    assert env == f"export DOCKER_HOST=unix://{hosts[1].socket}"

    # something else living in a host namespace goes too
    stray = subprocess.Popen(hosts[1].argv("sleep", "300"), start_new_session=True)
    try:
        wait_for(lambda: stray.pid in ns_pids(hosts[1]), what="stray process in host2")
        down = lab("down", "--purge", prefix=prefix).stdout
        assert "removed netns" in down
        assert stray.wait(timeout=5) == -signal.SIGTERM
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()

    daemons = [h["pid"] for h in st.values()]
    wait_for(lambda: not any(alive(p) for p in daemons), timeout=5, what="daemons gone")
    assert lab_netns(prefix) == []
    assert lab_files(prefix) == []
    assert lab_hosts(prefix) == []
    assert not mounts_mentioning(prefix, *(run_dir_for(h.state_dir) for h in hosts))
    assert not any(os.path.exists(run_dir_for(h.state_dir)) for h in hosts)
    assert_root_untouched(before)
    gone = lab("status", prefix=prefix, check=False)
    assert gone.returncode == 1 and "no lab" in gone.stdout
    assert "nothing to do" in lab("down", prefix=prefix).stdout


def check_host(h: LabHost, pid: int) -> None:
    """Its own daemon answers on its socket; eth0 is as documented; run like a real host."""
    ping = run("curl", "-sS", "--unix-socket", h.socket, "http://localhost/_ping")
    assert ping.stdout == "OK"
    info = run(DOCKER, "info", "--format", "{{.Name}}", env=h.env())
    assert info.stdout.strip() == h.name  # each socket is a different daemon
    assert run(DOCKER, "version", env=h.env()).returncode == 0

    links = {x["ifname"]: x for x in json.loads(run(*h.argv("ip", "-j", "addr")).stdout)}
    assert {"lo", "eth0"} <= set(links)
    assert "UP" in links["lo"]["flags"]
    eth0 = links["eth0"]
    assert eth0["mtu"] == 1500 and "UP" in eth0["flags"]
    assert f"{h.addr}/24" in {f"{i['local']}/{i['prefixlen']}" for i in eth0["addr_info"]}

    assert pid in ns_pids(h)  # runs in the host's netns ...
    assert os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino
    assert Path(h.pid_file).read_text().strip() == str(pid)  # ... in our mount namespace


def ns_pids(h: LabHost) -> set[int]:
    return {int(p) for p in run("ip", "netns", "pids", h.netns).stdout.split()}


def test_up_reports_a_daemon_that_cannot_start(prefix: str) -> None:
    """The daemon's own refusal reaches the user, and `down` still cleans the half-made lab."""
    os.makedirs(RUN_DIR, exist_ok=True)
    Path(f"{RUN_DIR}/{prefix}host2.sock").write_text("not a socket")
    started = time.monotonic()
    result = lab("up", "2", "--timeout", "20", prefix=prefix, check=False)
    assert result.returncode == 1
    assert "host2 exited with status 1" in result.stderr
    assert "not a socket" in result.stderr  # from the daemon's log
    assert f"overlayd lab down --prefix {prefix}" in result.stderr
    assert time.monotonic() - started < 15  # noticed the exit, did not sit out the deadline

    lab("down", "--purge", prefix=prefix)
    assert lab_netns(prefix) == [] and lab_files(prefix) == []
