"""Daemon configuration: defaults, then the TOML file given by --config, then flags.

Frozen so every layer sees one consistent view for the life of the process.
"""

from __future__ import annotations

import ipaddress
import socket as _socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = "/run/overlayd/overlayd.sock"
DEFAULT_STATE_DIR = "/var/lib/overlayd"
LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """Invalid configuration: the daemon refuses to start and says why."""


@dataclass(frozen=True)
class TLSConfig:
    ca_cert: str
    cert: str
    key: str


@dataclass(frozen=True)
class Config:
    socket: str = DEFAULT_SOCKET
    state_dir: str = DEFAULT_STATE_DIR
    advertise_addr: str = ""  # empty: the default-route interface's address, found at start
    log_format: str = "auto"  # auto = console on a terminal, JSON lines otherwise
    log_level: str = "info"
    hosts: tuple[str, ...] = ()  # extra listeners: tcp://ADDR:PORT (mutual TLS only)
    tls: TLSConfig | None = None
    hostname: str = field(default_factory=_socket.gethostname)
    # dockerd's --iptables: False leaves the host's firewall alone (no NAT, no isolation
    # rules) for hosts whose firewall something else manages
    iptables: bool = True

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)


# TOML keys (as written in the file) → Config field names.
_TOML_KEYS = {
    "socket": "socket",
    "state-dir": "state_dir",
    "advertise-addr": "advertise_addr",
    "log-format": "log_format",
    "log-level": "log_level",
    "host": "hosts",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "hostname": "hostname",
    "iptables": "iptables",
}


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = _TOML_KEYS.get(key) or _TOML_KEYS.get(key.replace("_", "-"))
        if name is None:
            known = ", ".join(sorted(_TOML_KEYS))
            raise ConfigError(f"config file {path}: unknown key {key!r} (known: {known})")
        out[name] = value
    return out


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> Config:
    """Merge file and flag values (flags win; None means "not given") and validate."""
    merged: dict[str, Any] = {k: v for k, v in file_values.items()}
    merged.update({k: v for k, v in flag_values.items() if v is not None})

    hosts = merged.pop("hosts", ())
    if isinstance(hosts, str):
        hosts = (hosts,)
    tls_parts = [merged.pop(k, None) for k in ("tlscacert", "tlscert", "tlskey")]
    known = {f.name for f in fields(Config)}
    cfg = Config(**{k: v for k, v in merged.items() if k in known})
    tls = TLSConfig(*tls_parts) if all(tls_parts) else None
    cfg = replace(cfg, hosts=tuple(hosts), tls=tls)
    _validate(cfg, any(tls_parts))
    return cfg


def _validate(cfg: Config, some_tls: bool) -> None:
    for name in ("socket", "state_dir", "log_format", "log_level", "hostname"):
        if not isinstance(getattr(cfg, name), str):
            raise ConfigError(f"{name.replace('_', '-')} must be a string")
    if not isinstance(cfg.iptables, bool):
        raise ConfigError("iptables must be true or false")
    if cfg.log_format not in LOG_FORMATS:
        raise ConfigError(f"log-format must be one of {', '.join(LOG_FORMATS)}")
    if cfg.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log-level must be one of {', '.join(LOG_LEVELS)}")
    if cfg.advertise_addr:
        try:
            ipaddress.ip_address(cfg.advertise_addr)
        except ValueError as exc:
            raise ConfigError(
                f"advertise-addr {cfg.advertise_addr!r} is not an IP address"
            ) from exc
    if not cfg.socket.startswith("/"):
        raise ConfigError("socket must be an absolute path")
    for host in cfg.hosts:
        parse_tcp_host(host)
    if cfg.hosts and cfg.tls is None:
        raise ConfigError(
            "refusing to listen on TCP without mutual TLS: an unauthenticated TCP socket "
            "gives root on this host to anyone who can reach it; pass --tlscacert, "
            "--tlscert and --tlskey"
        )
    if some_tls and cfg.tls is None:
        raise ConfigError("--tlscacert, --tlscert and --tlskey must be given together")


def parse_tcp_host(host: str) -> tuple[str, int]:
    """`tcp://ADDR:PORT` → (addr, port); anything else is a ConfigError."""
    if not host.startswith("tcp://"):
        raise ConfigError(f"host {host!r}: only tcp://ADDR:PORT is supported")
    rest = host[len("tcp://") :]
    addr, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"host {host!r}: expected tcp://ADDR:PORT")
    addr = addr.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(addr)
    except ValueError as exc:
        raise ConfigError(f"host {host!r}: {addr!r} is not an IP address") from exc
    return addr, int(port)
