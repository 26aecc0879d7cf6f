"""Raft IDs derived from node IDs, so no table maps one to the other."""

from __future__ import annotations

import hashlib
import secrets

NODE_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def raft_id_of(node_id: str) -> int:
    """A non-zero 63-bit ID every member computes alike from the swarm node ID."""
    value = int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:8], "big") >> 1
    return value or 1


def new_node_id() -> str:
    """25 lowercase base-36 characters, like swarmkit's IDs."""
    return "".join(secrets.choice(NODE_ID_ALPHABET) for _ in range(25))
