"""The ICMP reachability probe against loopback; a silent host is exercised by the
integration tests (a killed host in a namespace), never from the root namespace."""

from __future__ import annotations

import os

import pytest

from dataplane.reach import host_answers, inet_checksum

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")


async def test_loopback_answers() -> None:
    assert await host_answers("127.0.0.1")


def test_checksum_of_a_known_header() -> None:
    # RFC 1071 example words: 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2 -> ~ = 0x220d
    assert inet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
