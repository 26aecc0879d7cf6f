"""The swarm's edges on real daemons: a whole cluster restarted keeps its state, a
manager cut off cannot write while the majority can (and catches up), and nothing
but a member of this swarm with a valid certificate gets past the 2377 listener."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.cluster import Cluster, cluster_of, form_swarm
from tests.integration.harness import wait_for


@pytest.fixture(scope="module")
def managers() -> Iterator[Cluster]:
    with cluster_of(3, tag="rs") as c:
        form_swarm(c, "manager")
        yield c


def names(host) -> set[str]:  # type: ignore[no-untyped-def]
    return set(host.docker("network", "ls", "--format", "{{.Name}}", check=False).stdout.split())


def test_whole_cluster_restart_keeps_state(managers: Cluster) -> None:
    h = managers.hosts
    h[0].docker("network", "create", "-d", "overlay", "before-restart")
    wait_for(lambda: all("before-restart" in names(x) for x in h), timeout=10, what="replicated")
    before = h[1].docker("node", "ls", "--format", "{{.ID}}").stdout.split()
    for host in h:
        host.stop()
    for host in h:
        host.start()
    wait_for(lambda: h[2].docker("node", "ls", check=False).returncode == 0, timeout=20,
             what="a leader after the restart")  # fmt: skip
    after = h[2].docker("node", "ls", "--format", "{{.ID}}").stdout.split()
    assert sorted(before) == sorted(after)
    assert all("before-restart" in names(x) for x in h)
    h[1].docker("network", "create", "-d", "overlay", "after-restart")


def test_cut_off_manager_cannot_write_majority_can_then_it_catches_up(managers: Cluster) -> None:
    h = managers.hosts
    h[2].ns.sh("ip", "link", "set", "eth0", "down")
    try:
        res = h[2].docker("network", "create", "-d", "overlay", "minority", check=False, timeout=30)
        assert res.returncode != 0 and "does not have a leader" in res.stderr
        wait_for(lambda: h[0].docker("network", "create", "-d", "overlay", "majority",
                                     check=False).returncode == 0, timeout=15,
                 what="the majority to accept a write")  # fmt: skip
    finally:
        h[2].ns.sh("ip", "link", "set", "eth0", "up")
    wait_for(lambda: "majority" in names(h[2]), timeout=15, what="the cut-off manager to catch up")
    assert "minority" not in names(h[0])


def _tls_client(host_ns: str, addr: str, ctx_code: str, payload_code: str) -> subprocess.CompletedProcess:
    """Run a TLS client inside a namespace; prints what happened."""
    code = (
        "import socket, ssl, struct, sys\n" + ctx_code +
        f"s = socket.create_connection(('{addr}', 2377), 3)\n"
        "try:\n"
        "    t = ctx.wrap_socket(s)\n"
        "except (ssl.SSLError, OSError) as e:\n"
        "    print('handshake refused', type(e).__name__); sys.exit(0)\n"
        + payload_code
    )
    return subprocess.run(["nsenter", f"--net=/run/netns/{host_ns}", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


def _forge(key_path: Path, cert_path: Path) -> None:
    """A self-signed certificate that claims to be a swarm manager."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-manager")])  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))  # fmt: skip
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_forged_certificates_anonymous_raft_and_garbage_are_refused(managers: Cluster) -> None:
    h = managers.hosts
    target = managers.addr(0)
    with tempfile.TemporaryDirectory() as tmp:
        key, crt = Path(tmp, "k.pem"), Path(tmp, "c.pem")
        _forge(key, crt)
        forged = _tls_client(h[1].ns.name, target, (
            "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False\n"
            "ctx.verify_mode = ssl.CERT_NONE\n"
            f"ctx.load_cert_chain('{crt}', '{key}')\n"
        ), (
            "try:\n"
            "    t.sendall(struct.pack('>I', 15) + b'{\"type\":\"raft\"}'); d = t.recv(10)\n"
            "    print('closed' if not d else 'answered', d)\n"
            "except (ssl.SSLError, OSError) as e:\n"
            "    print('closed', type(e).__name__)\n"
        ))
    assert "answered" not in forged.stdout, forged.stdout + forged.stderr
    anonymous = _tls_client(h[1].ns.name, target, (
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False\n"
        "ctx.verify_mode = ssl.CERT_NONE\n"
    ), (
        "t.sendall(struct.pack('>I', 15) + b'{\"type\":\"raft\"}')\n"
        "n = struct.unpack('>I', t.recv(4))[0]; print(t.recv(n).decode())\n"
    ))
    assert "not allowed before joining" in anonymous.stdout, anonymous.stdout + anonymous.stderr

    # A real member's credentials sending fuzzed raft frames: the connection may die,
    # the manager must not.
    sw = Path(h[1].state_dir) / "swarm"
    rng = random.Random(4)
    frames = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(50)]
    frames += [b'{"t":"App"}', b"[]", b"{}", b'{"t":"Vote","term":-1}', b"\xff" * 64]
    payload = "frames = " + repr(frames) + "\n" + (
        "t.sendall(struct.pack('>I', 27) + b'{\"type\":\"raft\",\"addr\":\"x\"}')\n"
        "for f in frames:\n"
        "    try:\n"
        "        t.sendall(struct.pack('>I', len(f)) + f)\n"
        "    except OSError:\n"
        "        break\n"
        "print('sent')\n"
    )
    member = _tls_client(h[1].ns.name, target, (
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False\n"
        f"ctx.load_verify_locations('{sw / 'ca.pem'}')\n"
        f"ctx.load_cert_chain('{sw / 'cert.pem'}', '{sw / 'key.pem'}')\n"
    ), payload)
    assert "sent" in member.stdout or "refused" in member.stdout, member.stdout + member.stderr
    assert h[0].proc is not None and h[0].proc.poll() is None, "the manager crashed"
    h[0].docker("network", "create", "-d", "overlay", "after-fuzz")  # and still works


def test_token_of_another_cluster_is_refused() -> None:
    with cluster_of(2, tag="ot") as c:
        a, b = c.hosts
        a.docker("swarm", "init", "--advertise-addr", c.addr(0))
        b.docker("swarm", "init", "--advertise-addr", c.addr(1))
        token_b = b.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        b.docker("swarm", "leave", "--force")
        res = b.docker("swarm", "join", "--token", token_b, f"{c.addr(0)}:2377", check=False)
        assert res.returncode != 0 and "remote CA does not match fingerprint" in res.stderr
        info = json.loads(b.docker("info", "--format", "{{json .Swarm.LocalNodeState}}").stdout)
        assert info == "inactive"


def test_failed_promotion_rolls_back_and_is_retried() -> None:
    """The promoted node cannot listen on 2377: it stays a working worker (its overlay
    endpoint keeps working) and becomes a manager once the port is free."""
    with cluster_of(2, tag="pr") as c:
        h = c.hosts
        form_swarm(c)
        h[0].docker("network", "create", "-d", "overlay", "--attachable", "pr-net")
        wait_for(lambda: h[1].docker("network", "inspect", "pr-net", check=False).returncode == 0,
                 timeout=10, what="pr-net on the worker")  # fmt: skip
        c0, c1 = h[0].container("p0"), h[1].container("p1")
        h[0].docker("network", "connect", "pr-net", c0.name)
        h[1].docker("network", "connect", "pr-net", c1.name)
        ip1 = json.loads(h[1].docker("network", "inspect", "pr-net", "--format",
                                     "{{json .Containers}}").stdout)  # fmt: skip
        ip1 = next(iter(ip1.values()))["IPv4Address"].split("/")[0]

        def reaches() -> bool:
            return c0.sh("ping", "-c", "1", "-W", "1", ip1, check=False).returncode == 0

        wait_for(reaches, timeout=10, what="p0 -> p1")
        squatter = h[1].ns.popen(sys.executable, "-c",
                                 "import socket,time;s=socket.socket();"
                                 "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                                 "s.bind(('0.0.0.0',2377));s.listen();print('up',flush=True);"
                                 "time.sleep(600)", stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert squatter.stdout is not None and squatter.stdout.readline().strip() == "up"
            me = json.loads(h[1].docker("info", "--format", "{{json .Swarm.NodeID}}").stdout)
            h[0].docker("node", "promote", me)
            wait_for(lambda: "role change failed" in h[1].logs(), timeout=15,
                     what="the promotion to fail on the busy port")  # fmt: skip
            info = json.loads(h[1].docker("info", "--format", "{{json .Swarm}}").stdout)
            assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is False
            assert reaches()  # the worker's endpoint never went away
        finally:
            squatter.kill()
            squatter.wait()
        wait_for(lambda: h[1].docker("node", "ls", check=False).returncode == 0, timeout=30,
                 what="the retried promotion to succeed")  # fmt: skip
        assert reaches()
