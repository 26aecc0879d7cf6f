"""The daemon process: engine up, API listeners up, READY=1, wait for a signal, clean stop.

The HTTP application is handed in by the caller (the api layer builds it), so this
module needs nothing above the daemon layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import signal
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from daemon.config import Config, parse_tcp_host
from daemon.engine import Engine
from daemon.logs import get_logger
from daemon.sdnotify import notify

log = get_logger("overlayd.process")

SOCKET_GROUP = "overlayd"
AppFactory = Callable[[Engine], web.Application]


class StartupError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


def _prepare_socket_path(path: str) -> None:
    sock = Path(path)
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if sock.exists() or sock.is_symlink():
        if not stat.S_ISSOCK(sock.lstat().st_mode):
            raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


def _secure_socket(path: str) -> None:
    """0660, group `overlayd` when that group exists (like docker's `docker` group)."""
    try:
        gid = grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        gid = -1
    if gid >= 0:
        os.chown(path, -1, gid)
    os.chmod(path, 0o660)


def _tls_context(cfg: Config) -> ssl.SSLContext:
    assert cfg.tls is not None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.tls.ca_cert)
    ctx.load_cert_chain(cfg.tls.cert, cfg.tls.key)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: clients must present a cert from our CA
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set `stop` — in this process only.

    Not loop.add_signal_handler: its wakeup fd is inherited by the short-lived children
    pyroute2 forks to enter namespaces, and the SIGTERM that ends such a child would be
    read here as our own.
    """
    loop = asyncio.get_running_loop()
    main_pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


async def serve(cfg: Config, build_app: AppFactory) -> None:
    stop = asyncio.Event()
    _install_stop_signals(stop)

    tls = _tls_context(cfg) if cfg.hosts else None  # fail before touching anything
    engine = Engine(cfg)
    runner: web.AppRunner | None = None
    try:
        await engine.start()
        runner = web.AppRunner(build_app(engine), handle_signals=False, access_log=None)
        await runner.setup()
        _prepare_socket_path(cfg.socket)
        await web.UnixSite(runner, cfg.socket).start()
        _secure_socket(cfg.socket)
        for host in cfg.hosts:
            addr, port = parse_tcp_host(host)
            await web.TCPSite(runner, addr, port, ssl_context=tls).start()
        log.info("overlayd ready", socket=cfg.socket, hosts=list(cfg.hosts))
        notify("READY=1")
        await stop.wait()
        log.info("shutting down")
        notify("STOPPING=1")
    finally:
        engine.events.close()  # open /events streams end, so the runner can stop at once
        if runner is not None:
            await runner.cleanup()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cfg.socket)
        await engine.stop()
