"""The sysctls the data plane reads and writes.

/proc/sys/net is per network namespace, resolved for the thread that opens it: these act
on the namespace overlayd runs in (the host), like every other dataplane call, except
bridge_netfilter_off, which runs on a thread that entered a sandbox (nsenter's `then`).
"""

from __future__ import annotations

import os
import subprocess

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def ip_forward() -> bool:
    with open(IP_FORWARD) as f:
        return f.read().strip() == "1"


def enable_ip_forward() -> None:
    """Masquerading bridges route out through the host; never switched off again (like Docker)."""
    with open(IP_FORWARD, "w") as f:
        f.write("1\n")


# br_netfilter (loaded wherever Docker or kube-proxy runs) makes every bridge hand its frames
# to iptables. A sandbox has no rules, so that is pure cost on every overlay frame (~5 % of
# the throughput here). The switches are per network namespace (Linux >= 5.3).
BRIDGE_NETFILTER = tuple(
    f"/proc/sys/net/bridge/bridge-nf-call-{t}" for t in ("iptables", "ip6tables", "arptables")
)


def bridge_netfilter_off() -> None:
    """Inside a sandbox (called on the thread that entered it)."""
    for knob in BRIDGE_NETFILTER:
        try:
            with open(knob, "w") as f:
                f.write("0\n")
        except FileNotFoundError:
            return  # br_netfilter is not loaded: bridges skip netfilter anyway


def bridge_netfilter_on() -> bool:
    try:
        with open(BRIDGE_NETFILTER[0]) as f:
            return f.read().strip() == "1"
    except FileNotFoundError:
        return False  # the module is not loaded


def enable_bridge_netfilter() -> None:
    """In the host namespace: load br_netfilter if needed, then have bridged IPv4 frames go
    through the ip hooks (bridge-nf-call-iptables only, as Docker)."""
    if not os.path.exists(BRIDGE_NETFILTER[0]):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
    try:
        with open(BRIDGE_NETFILTER[0], "w") as f:
            f.write("1\n")
    except FileNotFoundError as e:
        raise OSError("br_netfilter is not available: icc=false cannot be enforced") from e


def flush_routes() -> None:
    """Routes cached before an xfrm policy changed (the vxlan devices keep one per remote)
    would go on bypassing it: a flush makes every socket route, and look policies up, again."""
    with open("/proc/sys/net/ipv4/route/flush", "w") as f:
        f.write("1\n")


_CONF = "/proc/sys/net/ipv4/conf"


def policy_bypasses() -> list[str]:
    """Sysctls under which the kernel skips xfrm policies (disable_policy: arriving packets
    are not checked; disable_xfrm: leaving ones are not transformed): cleartext could pass
    there unless something else drops it."""
    out = []
    for name in sorted(os.listdir(_CONF)):
        if name in ("default", "lo"):
            continue  # default: for interfaces made later (checked once they exist); lo
            # has both set by the kernel itself, and nothing from another host arrives there
        for knob in ("disable_policy", "disable_xfrm"):
            try:
                with open(f"{_CONF}/{name}/{knob}") as f:
                    on = f.read().strip() == "1"
            except OSError:
                continue
            if on:
                out.append(f"net.ipv4.conf.{name}.{knob}")
    return out
