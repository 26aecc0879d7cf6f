"""The shipped unit passes systemd's own checks and keeps the properties we rely on."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "overlayd.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keep key case
    parser.read(UNIT)
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's real entry point.
    overlayd = Path(sys.executable).with_name("overlayd")
    assert overlayd.exists(), "the overlayd console script is not installed in this venv"
    text = UNIT.read_text().replace("/usr/local/bin/overlayd", str(overlayd))
    copy = tmp_path / "overlayd.service"
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "overlayd.service" not in result.stderr, result.stderr


def test_unit_properties() -> None:
    svc = _unit()["Service"]
    assert svc["Type"] == "notify"
    assert svc["Restart"] == "on-failure"
    assert svc["StateDirectory"] == "overlayd"
    assert svc["RuntimeDirectory"] == "overlayd"
    caps = set(svc["CapabilityBoundingSet"].split())
    assert {"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_RAW"} <= caps
    # Sandbox netns bind mounts must outlive the process: no private mount namespace.
    for key in ("PrivateTmp", "ProtectSystem", "ProtectHome", "PrivateDevices", "PrivateMounts"):
        assert key not in svc, f"{key} would give overlayd a private mount namespace"
