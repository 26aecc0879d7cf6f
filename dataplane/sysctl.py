"""The one sysctl the bridge data plane needs: IPv4 forwarding in the host namespace.

/proc/sys/net is per network namespace, resolved for the process that opens it, so this
reads and writes the namespace overlayd runs in (the host), like every other dataplane call.
"""

from __future__ import annotations

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def ip_forward() -> bool:
    with open(IP_FORWARD) as f:
        return f.read().strip() == "1"


def enable_ip_forward() -> None:
    """Masquerading bridges route out through the host; never switched off again (like Docker)."""
    with open(IP_FORWARD, "w") as f:
        f.write("1\n")
