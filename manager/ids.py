"""Raft IDs derived from node IDs, so no table maps one to the other."""

from __future__ import annotations

import hashlib


def raft_id_of(node_id: str) -> int:
    """A non-zero 63-bit ID every member computes alike from the swarm node ID."""
    value = int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:8], "big") >> 1
    return value or 1
