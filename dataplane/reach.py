"""Does a host's kernel still answer? An ICMP echo over the underlay.

Gossip tells us a peer's daemon stopped answering; that alone must not cut traffic,
because the kernel keeps forwarding VXLAN while the daemon restarts. An echo reply
from the peer's underlay address says the host is up, so its endpoints stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

_ECHO_REQUEST = 8
_ECHO_REPLY = 0


def inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (ICMP)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    payload = b"overlayd-reach"
    header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident, seq)
    csum = inet_checksum(header + payload)
    return struct.pack("!BBHHH", _ECHO_REQUEST, 0, csum, ident, seq) + payload


async def host_answers(addr: str, timeout: float = 0.35, tries: int = 3) -> bool:
    """True when `addr` answers an ICMP echo within `timeout`; `tries` echoes go out
    spread over the first part of it, so one lost packet does not decide."""
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError:
        return False  # no raw sockets: we cannot tell, so say no (the safe default)
    sock.setblocking(False)
    ident = (os.getpid() ^ id(sock)) & 0xFFFF

    async def send_all() -> None:
        for seq in range(tries):
            with contextlib.suppress(OSError):
                await loop.sock_sendto(sock, _echo(ident, seq), (addr, 0))
            await asyncio.sleep(timeout / (tries + 1))

    sender = asyncio.create_task(send_all())
    deadline = loop.time() + timeout
    try:
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    data, src = await loop.sock_recvfrom(sock, 2048)
            except (TimeoutError, OSError):
                return False
            ihl = (data[0] & 0x0F) * 4
            if src[0] != addr or len(data) < ihl + 8:
                continue
            kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if kind == _ECHO_REPLY and rid == ident:
                return True
        return False
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        sock.close()
