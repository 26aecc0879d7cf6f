"""Interface names overlayd will make: what the kernel's dev_valid_name accepts and our
nft rendering can quote, checked the same way at the API and in the planner."""

from __future__ import annotations

import re

_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def valid_ifname(name: str) -> bool:
    """ASCII only (str.isalnum() would let "é" through to a kernel that refuses it); the
    kernel also refuses "." and ".."; fullmatch, so a trailing newline does not pass."""
    return _IFNAME.fullmatch(name) is not None and name not in (".", "..")
