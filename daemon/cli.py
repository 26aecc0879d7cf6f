"""`overlayd` command line: argv → Config → the daemon process."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from daemon import lab
from daemon.config import (
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    build_config,
    load_toml,
)
from daemon.logs import configure, get_logger
from daemon.process import AppFactory, StartupError, serve

DESCRIPTION = """\
overlayd gives containers (network namespaces) on one or many hosts a shared network,
the way Docker's bridge and swarm overlay drivers do, behind a Docker-Engine-compatible
API: point the docker CLI, docker-py or curl at its socket
(DOCKER_HOST=unix:///run/overlayd/overlayd.sock docker network ls)."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="overlayd",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground (what the systemd unit starts)",
        description="Run the overlayd daemon in the foreground until SIGTERM or SIGINT. "
        "Every flag can also be set in the TOML file given by --config "
        '(same names without the dashes prefix, e.g. state-dir = "/srv/overlayd"); '
        "flags win over the file.",
    )
    run.add_argument("--config", metavar="FILE", help="TOML config file")
    run.add_argument(
        "--socket", metavar="PATH", help=f"unix socket of the API (default {DEFAULT_SOCKET})"
    )
    run.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"where networks and endpoints are persisted (default {DEFAULT_STATE_DIR})",
    )
    run.add_argument(
        "--advertise-addr",
        metavar="IP",
        help="address other hosts reach this one at (default: the default-route interface's)",
    )
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="json lines (journald), console, or auto: console on a terminal (default auto)",
    )
    run.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    run.add_argument(
        "--host",
        dest="hosts",
        action="append",
        metavar="tcp://ADDR:PORT",
        help="also listen on TCP; needs --tlscacert, --tlscert and --tlskey (mutual TLS)",
    )
    run.add_argument(
        "--tlscacert", metavar="FILE", help="CA that client certificates must chain to"
    )
    run.add_argument("--tlscert", metavar="FILE", help="server certificate for --host")
    run.add_argument(
        "--iptables",
        choices=("true", "false"),
        help="false: write no nftables rules (no NAT, no isolation between bridge networks), "
        "for hosts whose firewall is managed elsewhere, as dockerd's --iptables=false "
        "(default true)",
    )
    run.add_argument("--tlskey", metavar="FILE", help="server private key for --host")
    run.add_argument("--hostname", help="node name reported by the API (default: the host name)")
    lab.add_parser(sub)
    return top


def main(argv: Sequence[str] | None = None, build_app: AppFactory | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        return _run(args, build_app)
    if args.command == "lab":
        return lab.main(args)
    return 2


def _run(args: argparse.Namespace, build_app: AppFactory | None) -> int:
    flags = {
        "socket": args.socket,
        "state_dir": args.state_dir,
        "advertise_addr": args.advertise_addr,
        "log_format": args.log_format,
        "log_level": args.log_level,
        "hosts": tuple(args.hosts) if args.hosts else None,
        "tlscacert": args.tlscacert,
        "tlscert": args.tlscert,
        "tlskey": args.tlskey,
        "hostname": args.hostname,
        "iptables": None if args.iptables is None else args.iptables == "true",
    }
    try:
        file_values = load_toml(args.config) if args.config else {}
        cfg = build_config(file_values, flags)
    except ConfigError as exc:
        print(f"overlayd: {exc}", file=sys.stderr)
        return 2
    configure(cfg.log_format, cfg.log_level)
    if build_app is None:
        print("overlayd: no API application given", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(cfg, build_app))
    except StartupError as exc:
        get_logger("overlayd").error("cannot start", error=str(exc))
        return 1
    return 0
