from pathlib import Path

import pytest

from daemon.config import ConfigError, build_config, load_toml


def test_defaults() -> None:
    cfg = build_config({}, {})
    assert cfg.socket == "/run/overlayd/overlayd.sock"
    assert cfg.state_dir == "/var/lib/overlayd"


def test_flags_win_over_file(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text('socket = "/tmp/a.sock"\nstate-dir = "/tmp/s"\nlog-level = "debug"\n')
    cfg = build_config(load_toml(str(path)), {"socket": "/tmp/b.sock", "state_dir": None})
    assert cfg.socket == "/tmp/b.sock"
    assert cfg.state_dir == "/tmp/s"
    assert cfg.log_level == "debug"


def test_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text('sockett = "/x"\n')
    with pytest.raises(ConfigError, match="unknown key 'sockett'"):
        load_toml(str(path))


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text("socket = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(str(path))


def test_plain_tcp_refused() -> None:
    with pytest.raises(ConfigError, match="refusing to listen on TCP without mutual TLS"):
        build_config({}, {"hosts": ("tcp://127.0.0.1:2376",)})


def test_partial_tls_refused() -> None:
    with pytest.raises(ConfigError, match="must be given together"):
        build_config({}, {"tlscert": "/c"})


@pytest.mark.parametrize("host", ["unix:///x", "tcp://host:1", "tcp://1.2.3.4", "tcp://1.2.3.4:0"])
def test_bad_hosts(host: str) -> None:
    with pytest.raises(ConfigError):
        build_config({}, {"hosts": (host,), "tlscacert": "a", "tlscert": "b", "tlskey": "c"})


def test_tls_host_ok() -> None:
    cfg = build_config(
        {}, {"hosts": ("tcp://127.0.0.1:2376",), "tlscacert": "a", "tlscert": "b", "tlskey": "c"}
    )
    assert cfg.tls is not None and cfg.hosts == ("tcp://127.0.0.1:2376",)


@pytest.mark.parametrize(
    ("key", "value"),
    [("log_format", "xml"), ("log_level", "loud"), ("advertise_addr", "nope"), ("socket", "rel")],
)
def test_invalid_values(key: str, value: str) -> None:
    with pytest.raises(ConfigError):
        build_config({}, {key: value})


def test_iptables_switch(tmp_path: Path) -> None:
    assert build_config({}, {}).iptables is True
    path = tmp_path / "o.toml"
    path.write_text("iptables = false\n")
    assert build_config(load_toml(str(path)), {"iptables": None}).iptables is False
    assert build_config(load_toml(str(path)), {"iptables": True}).iptables is True
    path.write_text('iptables = "no"\n')
    with pytest.raises(ConfigError, match="iptables must be true or false"):
        build_config(load_toml(str(path)), {})
