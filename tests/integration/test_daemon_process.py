"""The overlayd process: help, config refusals, socket permissions, sd_notify, signals, TLS."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.harness import OVERLAYD, Host, make_host, run, wait_for


def test_help_explains_itself() -> None:
    top = run(OVERLAYD, "--help").stdout
    assert "run" in top and "Docker" in top
    sub = run(OVERLAYD, "run", "--help").stdout
    for flag in ("--socket", "--state-dir", "--advertise-addr", "--log-format", "--log-level",
                 "--config", "--host", "--tlscacert", "--tlscert", "--tlskey"):  # fmt: skip
        assert flag in sub


def test_plain_tcp_is_refused(tmp_path: Path) -> None:
    result = run(
        OVERLAYD, "run", "--socket", str(tmp_path / "s.sock"), "--state-dir", str(tmp_path),
        "--host", "tcp://127.0.0.1:23750", check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing to listen on TCP without mutual TLS" in result.stderr
    assert not (tmp_path / "s.sock").exists()


def test_bad_config_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('log-level = "chatty"\n')
    result = run(OVERLAYD, "run", "--config", str(cfg), check=False)
    assert result.returncode == 2
    assert "log-level must be one of" in result.stderr


def test_config_file_and_flags(tmp_path: Path) -> None:
    h = make_host()
    try:
        cfg = h.workdir / "overlayd.toml"
        # The file names one socket; the flag (given by the harness) wins.
        cfg.write_text(f'socket = "{h.workdir}/other.sock"\nlog-level = "warning"\n')
        h.start("--config", str(cfg))
        assert Path(h.socket).exists()
        assert not (h.workdir / "other.sock").exists()
    finally:
        h.close()


def test_socket_mode_notify_and_clean_stop(tmp_path: Path) -> None:
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(20)
    h = make_host()
    try:
        h.start(env={**os.environ, "NOTIFY_SOCKET": notify_path})
        assert listener.recv(256) == b"READY=1"
        mode = os.stat(h.socket).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
        h.docker("network", "create", "keepme")
        assert h.stop(signal.SIGTERM) == 0
        assert listener.recv(256) == b"STOPPING=1"
        assert not Path(h.socket).exists()
        # A clean stop leaves the kernel state: the bridge is still there.
        links = h.ns.sh("ip", "-o", "link", "show", "type", "bridge").stdout
        assert "br-" in links and "overlayd0" in links
    finally:
        listener.close()
        h.close()


def _cert(name: str, issuer_key, issuer_name, key, *, ca: bool, san_ip: str | None = None):  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> str:  # type: ignore[no-untyped-def]
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return str(path)


@pytest.fixture
def tls_host(tmp_path: Path):  # type: ignore[no-untyped-def]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = _cert("test-ca", ca_key, ca_name, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert("server", ca_key, ca_name, srv_key, ca=False, san_ip="127.0.0.1")
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("client", ca_key, ca_name, cli_key, ca=False)
    files = {
        "ca": _write(tmp_path / "ca.pem", cert=ca),
        "cert": _write(tmp_path / "server.pem", cert=srv),
        "key": _write(tmp_path / "server-key.pem", key=srv_key),
        "ccert": _write(tmp_path / "client.pem", cert=cli),
        "ckey": _write(tmp_path / "client-key.pem", key=cli_key),
    }
    h = make_host()
    try:
        h.start("--host", "tcp://127.0.0.1:23760", "--tlscacert", files["ca"],
                "--tlscert", files["cert"], "--tlskey", files["key"])  # fmt: skip
        yield h, files
    finally:
        h.close()


def test_tcp_listener_needs_a_client_certificate(tls_host: tuple[Host, dict[str, str]]) -> None:
    h, f = tls_host
    url = "https://127.0.0.1:23760/_ping"
    ok = h.ns.sh("curl", "-sS", "--cacert", f["ca"], "--cert", f["ccert"], "--key", f["ckey"], url)
    assert ok.stdout == "OK"
    refused = h.ns.sh("curl", "-sS", "--cacert", f["ca"], url, check=False)
    assert refused.returncode != 0
    # The docker CLI speaks to it the same way dockerd's --tlsverify expects.
    env = {**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:23760", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(Path(f["ca"]).parent)}  # fmt: skip
    Path(f["ca"]).parent.joinpath("cert.pem").write_bytes(Path(f["ccert"]).read_bytes())
    Path(f["ca"]).parent.joinpath("key.pem").write_bytes(Path(f["ckey"]).read_bytes())
    result = subprocess.run(
        ["nsenter", f"--net={h.ns.path}", "docker", "network", "ls", "--format", "{{.Name}}"],
        capture_output=True, text=True, env=env, check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"bridge", "host", "none"}


def test_sigint_also_stops_cleanly() -> None:
    h = make_host()
    try:
        h.start()
        assert h.stop(signal.SIGINT) == 0
        wait_for(lambda: not Path(h.socket).exists(), what="socket removed")
    finally:
        h.close()
