"""/_ping, /version, /info, /metrics."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import versions
from api.keys import ENGINE
from api.responses import json_response
from api.swarm import info_section
from daemon.engine import VERSION, Engine
from daemon.networks import rfc3339_nano

GIT_COMMIT = "overlayd"
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _arch() -> str:
    machine = platform.machine()
    return GO_ARCH.get(machine, machine)


async def ping(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    headers = {
        "Builder-Version": "2",
        "Swarm": engine.swarm.ping_header,
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }
    if request.method == "HEAD":
        headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = "0"
        return web.Response(status=200, headers=headers)
    return web.Response(text="OK", content_type="text/plain", charset="utf-8", headers=headers)


def version_doc() -> dict[str, Any]:
    build_time = "2026-11-23T00:00:00.000000000+00:00"
    kernel = platform.release()
    return {
        "Platform": {"Name": "overlayd"},
        "Components": [
            {
                "Name": "Engine",
                "Version": VERSION,
                "Details": {
                    "ApiVersion": versions.API_VERSION,
                    "Arch": _arch(),
                    "BuildTime": build_time,
                    "Experimental": "false",
                    "GitCommit": GIT_COMMIT,
                    "GoVersion": f"python{platform.python_version()}",
                    "KernelVersion": kernel,
                    "MinAPIVersion": versions.MIN_API_VERSION,
                    "Os": "linux",
                },
            }
        ],
        "Version": VERSION,
        "ApiVersion": versions.API_VERSION,
        "MinAPIVersion": versions.MIN_API_VERSION,
        "GitCommit": GIT_COMMIT,
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": kernel,
        "BuildTime": build_time,
    }


async def version(request: web.Request) -> web.Response:
    return json_response(version_doc())


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_release() -> tuple[str, str]:
    try:
        with open("/etc/os-release") as fh:
            fields = dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
    except OSError:
        return "Linux", ""
    return fields.get("PRETTY_NAME", "Linux").strip('"'), fields.get("VERSION_ID", "").strip('"')


async def swarm_info(engine: Engine) -> dict[str, Any]:
    svc = engine.swarm_service
    return info_section(svc, await svc.tls_info() if svc.control_available else {})


async def info(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    os_name, os_version = _os_release()
    doc = {
        "ID": engine.node_identity,
        "Containers": 0,
        "ContainersRunning": 0,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 0,
        "Driver": "none",
        "DriverStatus": [],
        "Plugins": {
            "Volume": [],
            "Network": ["bridge", "host", "null", "overlay"],
            "Authorization": None,
            "Log": [],
        },
        "MemoryLimit": False,
        "SwapLimit": False,
        "CpuCfsPeriod": False,
        "CpuCfsQuota": False,
        "CPUShares": False,
        "CPUSet": False,
        "PidsLimit": False,
        "IPv4Forwarding": _ip_forwarding(),
        "Debug": engine.config.log_level == "debug",
        "NFd": _count_fds(),
        "OomKillDisable": False,
        "NGoroutines": len(__import__("asyncio").all_tasks()),
        "SystemTime": rfc3339_nano(time.time_ns()),
        "LoggingDriver": "none",
        "CgroupDriver": "none",
        "CgroupVersion": "2",
        "NEventsListener": engine.events.listeners,
        "KernelVersion": platform.release(),
        "OperatingSystem": os_name,
        "OSVersion": os_version,
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": None,
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": engine.config.state_dir,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": engine.config.hostname,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": VERSION,
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": await swarm_info(engine),
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": [],
        "Warnings": None,
    }
    return json_response(doc)


def _ip_forwarding() -> bool:
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return False


def _count_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


async def metrics(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body = generate_latest(engine.metrics)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
