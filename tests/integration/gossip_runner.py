"""Real GossipAgent processes in network namespaces: the child (`main`) and the lab (`GossipLab`).

Child: `python -m tests.integration.gossip_runner --name N --bind IP --key HEX ...` runs one
GossipAgent and prints one JSON object per line on stdout, each with `t` =
time.monotonic() (CLOCK_MONOTONIC is machine-wide, so the parent and every child
compare timestamps directly):

    {"ev": "ready", "addr": "192.0.2.11:7946"}       after start()
    {"ev": "joined", "n": 1}                         after a join that reached a seed
    {"ev": "member", "kind": "dead", "node": ..., "inc": ..., "accuser": ...}
    {"ev": "entry", "change": "added", "net": ..., "id": ..., "owner": ..., "ip": ...}
    {"ev": "put", "id": ...}                         `t` taken just before put_entry()

and reads JSON commands on stdin: {"cmd": "put", "net", "id", "ip"}, {"cmd": "delete", "net",
"id"}, {"cmd": "join_network", "net"}, {"cmd": "members"}, {"cmd": "stats"},
{"cmd": "stop", "leave": bool}. EOF on stdin stops it without a leave.

Parent: `gossip_lab(n)` makes an underlay namespace holding a bridge and n host
namespaces, each with a veth `eth0` on that bridge and 192.0.2.(10+i)/24; nothing
is touched in the root namespace. `GossipLab.start_cluster()` runs one child per
host; `add_loss()` installs an nftables rule inside a host's namespace. Closing the
lab kills every child and deletes every namespace, also after a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gossip.agent import GossipAgent  # noqa: E402
from gossip.events import (  # noqa: E402
    EndpointEvent,
    MemberAlive,
    MemberDead,
    MemberEvent,
    MemberLeft,
    MemberSuspect,
)
from gossip.messages import EndpointRecord  # noqa: E402

PORT = 7946
SUBNET = "192.0.2"
LAB_KEY = bytes(range(100, 132))


# --- child -------------------------------------------------------------------------------------


def _emit(ev: str, t: float | None = None, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"t": time.monotonic() if t is None else t, "ev": ev, **fields}))
    sys.stdout.write("\n")
    sys.stdout.flush()


def _on_member(ev: MemberEvent) -> None:
    t = time.monotonic()
    kind = {MemberAlive: "alive", MemberSuspect: "suspect", MemberDead: "dead", MemberLeft: "left"}
    _emit(
        "member",
        t,
        kind=kind[type(ev)],
        node=ev.name,
        inc=ev.incarnation,
        accuser=getattr(ev, "accuser", ""),
    )


def _on_entry(ev: EndpointEvent) -> None:
    t = time.monotonic()
    _emit(
        "entry",
        t,
        change=ev.change.value,
        net=ev.network,
        id=ev.endpoint_id,
        owner=ev.owner,
        ip=ev.record.ip,
    )


def _mac(ip: str) -> str:
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


async def _child(args: argparse.Namespace) -> None:
    agent = GossipAgent(
        args.name,
        [bytes.fromhex(k) for k in args.key],
        bind_addr=args.bind,
        bind_port=args.port,
        on_member=_on_member,
        on_entry=_on_entry,
    )
    await agent.start()
    for net in args.network:
        agent.join_network(net)
    _emit("ready", addr=f"{agent.addr[0]}:{agent.addr[1]}")
    if args.seed:
        deadline = time.monotonic() + args.join_timeout
        while True:
            n = await agent.join(args.seed)
            if n or time.monotonic() > deadline:
                _emit("joined", n=n)
                break
            await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    leave = False
    while line := await reader.readline():
        try:
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "put":
                ip = cmd["ip"]
                rec = EndpointRecord(cmd["id"], ip, _mac(ip), agent.advertise_addr)
                t = time.monotonic()
                agent.put_entry(cmd["net"], cmd["id"], rec)
                _emit("put", t, id=cmd["id"])
            elif op == "delete":
                agent.delete_entry(cmd["net"], cmd["id"])
            elif op == "join_network":
                agent.join_network(cmd["net"])
            elif op == "members":
                rows = [[m.name, m.state.name.lower(), m.incarnation] for m in agent.members()]
                _emit("members", members=rows)
            elif op == "stats":
                _emit("stats", stats=agent.stats(), tables=agent.table_sizes())
            elif op == "stop":
                leave = bool(cmd.get("leave", True))
                break
        except Exception as exc:  # a bad command must not kill the node under test
            _emit("error", error=repr(exc))
    await agent.stop(leave=leave)
    _emit("stopped")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, default=PORT)
    ap.add_argument("--key", action="append", required=True, help="hex; first is the primary")
    ap.add_argument("--seed", action="append", default=[])
    ap.add_argument("--network", action="append", default=[])
    ap.add_argument("--join-timeout", type=float, default=10.0)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(_child(ap.parse_args(argv)))


# --- parent ------------------------------------------------------------------------------------


@dataclass
class Node:
    """One child process: its stdout lines are collected by a thread as they arrive."""

    host: int
    name: str
    ip: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    lines: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                obj = json.loads(raw)
                with self.lock:
                    self.lines.append(obj)

    @property
    def seed(self) -> str:
        return f"{self.ip}:{PORT}"

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def events(self, ev: str | None = None, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            lines = list(self.lines)
        return [
            x
            for x in lines
            if (ev is None or x.get("ev") == ev) and all(x.get(k) == v for k, v in match.items())
        ]

    def first(self, ev: str, **match: Any) -> dict[str, Any] | None:
        found = self.events(ev, **match)
        return found[0] if found else None

    def wait(self, ev: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        return wait_for(
            lambda: self.first(ev, **match), timeout, f"{self.name}: {ev} {match}", self
        )

    def ask(self, cmd: str, timeout: float = 5.0) -> dict[str, Any]:
        """Send a query command and wait for its (next) answer line."""
        n = len(self.events(cmd))
        self.send(cmd=cmd)
        return wait_for(
            lambda: self.events(cmd)[n] if len(self.events(cmd)) > n else None,
            timeout,
            f"{self.name}: answer to {cmd}",
            self,
        )

    def alive_view(self) -> set[str]:
        """Who this node currently holds alive, replayed from its member events."""
        state: dict[str, str] = {}
        for x in self.events("member"):
            state[x["node"]] = x["kind"]
        return {n for n, k in state.items() if k in ("alive", "suspect")} | {self.name}

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def wait_for(check: Callable[[], Any], timeout: float, what: str, node: Node | None = None) -> Any:
    """Poll check() every 10 ms until truthy; AssertionError (with the child's stderr) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if node is not None and node.proc.poll() is not None:
            raise AssertionError(
                f"{node.name} exited ({node.proc.returncode}): {node.stderr_tail()}"
            )
        if time.monotonic() > deadline:
            tail = f"\nstderr of {node.name}:\n{node.stderr_tail()}" if node else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(0.01)


class GossipLab:
    """n hosts on one bridge; see the module docstring. Build with `gossip_lab()`."""

    def __init__(self, world: Any, n: int) -> None:
        self.world = world
        self.nodes: list[Node] = []
        self.underlay = world.netns("ul")
        self.underlay.run("ip", "link", "add", "br0", "type", "bridge")
        self.underlay.run("ip", "link", "set", "br0", "up")
        self.hosts: list[Any] = []
        for i in range(1, n + 1):
            ns = world.netns(f"h{i}")
            self.underlay.run(
                "ip",
                "link",
                "add",
                f"p{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.path,
            )
            self.underlay.run("ip", "link", "set", f"p{i}", "master", "br0", "up")
            ns.run("ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            ns.run("ip", "link", "set", "eth0", "up")
            self.hosts.append(ns)
        self.tmp = Path(tempfile.mkdtemp(prefix=world.prefix))

    @staticmethod
    def ip(host: int) -> str:
        return f"{SUBNET}.{10 + host}"

    def start(
        self,
        host: int,
        name: str,
        seeds: tuple[str, ...] = (),
        networks: tuple[str, ...] = (),
        keys: tuple[bytes, ...] = (LAB_KEY,),
    ) -> Node:
        ns = self.hosts[host - 1]
        argv = [
            sys.executable,
            "-m",
            "tests.integration.gossip_runner",
            "--name",
            name,
            "--bind",
            self.ip(host),
            "--port",
            str(PORT),
        ]
        for k in keys:
            argv += ["--key", k.hex()]
        for s in seeds:
            argv += ["--seed", s]
        for net in networks:
            argv += ["--network", net]
        err = self.tmp / f"{name}.stderr"
        with open(err, "wb") as errf:
            proc = subprocess.Popen(
                ns.argv(*argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errf,
                cwd=str(REPO),
                start_new_session=True,
            )
        self.world.procs.append(proc)
        node = Node(host, name, self.ip(host), proc, err)
        self.nodes.append(node)
        return node

    def start_cluster(
        self, tag: str, hosts: int | None = None, networks: tuple[str, ...] = ()
    ) -> list[Node]:
        """Kill whatever runs, start `tag-h<i>` on hosts 1..n joined through host 1, converge."""
        self.kill_all()
        n = hosts or len(self.hosts)
        first = self.start(1, f"{tag}-h1", networks=networks)
        first.wait("ready")
        nodes = [first] + [
            self.start(i, f"{tag}-h{i}", seeds=(first.seed,), networks=networks)
            for i in range(2, n + 1)
        ]
        for node in nodes[1:]:
            joined = node.wait("joined", timeout=20)
            assert joined["n"] == 1, f"{node.name} could not join: {node.stderr_tail()}"
        names = {x.name for x in nodes}
        for node in nodes:
            wait_for(
                lambda node=node: node.alive_view() == names, 10, f"{node.name} sees all", node
            )
        return nodes

    def kill9(self, node: Node) -> float:
        """SIGKILL; returns the time.monotonic() just before the signal."""
        t = time.monotonic()
        node.proc.kill()
        node.proc.wait(timeout=10)
        return t

    def kill_all(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(timeout=10)
        self.nodes.clear()

    def add_loss(self, host: int, percent: int) -> None:
        """Drop `percent` % of the host's packets, in and out, with nftables inside its netns."""
        rules = f"""
table inet ovgloss {{
    chain in {{ type filter hook input priority 0; policy accept;
        iifname "eth0" numgen random mod 100 < {percent} counter drop
    }}
    chain out {{ type filter hook output priority 0; policy accept;
        oifname "eth0" numgen random mod 100 < {percent} counter drop
    }}
}}
"""
        self.hosts[host - 1].run("nft", "-f", "-", input=rules)

    def clear_loss(self, host: int) -> None:
        self.hosts[host - 1].run("nft", "delete", "table", "inet", "ovgloss", check=False)

    def loss_counters(self, host: int) -> int:
        """Packets dropped so far by `add_loss` on this host."""
        out = self.hosts[host - 1].run("nft", "-j", "list", "table", "inet", "ovgloss").stdout
        total = 0
        for obj in json.loads(out)["nftables"]:
            for expr in obj.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    total += expr["counter"]["packets"]
        return total

    def close(self) -> None:
        self.kill_all()
        shutil.rmtree(self.tmp, ignore_errors=True)


def have_nft() -> bool:
    return shutil.which("nft") is not None


@contextmanager
def gossip_lab(n: int, tag: str = "ovg") -> Iterator[GossipLab]:
    """A GossipLab whose processes and namespaces are removed however the block ends."""
    from tests.integration.nshelpers import Lab

    if os.geteuid() != 0:
        raise PermissionError("gossip_lab needs root (network namespaces)")
    world = Lab(tag)
    try:
        glab = GossipLab(world, n)
        try:
            yield glab
        finally:
            glab.close()
    finally:
        world.close()


if __name__ == "__main__":
    main()
