"""Join tokens: `SWMTKN-1-<root CA digest, base36, 50>-<secret, base36, 25>`.

The first part lets a joiner check, before trusting anything, that the manager it
reached serves the CA the token was made for; the second proves to the manager that
the joiner was given the token. Same format as swarmkit, so `docker swarm join` users
see what they know.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

PREFIX = "SWMTKN"
VERSION = "1"
DIGEST_LEN = 50  # 256 bits in base36
SECRET_LEN = 25  # 128 bits in base36
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class TokenError(ValueError):
    """Malformed token."""


def base36(data: bytes, width: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def from_base36(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 36 + _ALPHABET.index(ch)
    return n


@dataclass(frozen=True)
class JoinToken:
    ca_digest: str  # base36, DIGEST_LEN
    secret: str  # base36, SECRET_LEN

    def __str__(self) -> str:
        return f"{PREFIX}-{VERSION}-{self.ca_digest}-{self.secret}"

    def matches_ca(self, digest: bytes) -> bool:
        return hmac.compare_digest(self.ca_digest, base36(digest, DIGEST_LEN))

    def same_secret(self, other: JoinToken) -> bool:
        return hmac.compare_digest(self.secret, other.secret)


def generate(ca_digest: bytes) -> JoinToken:
    return JoinToken(base36(ca_digest, DIGEST_LEN), base36(secrets.token_bytes(16), SECRET_LEN))


def parse(text: str) -> JoinToken:
    parts = text.strip().split("-")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] != VERSION:
        raise TokenError("invalid join token")
    digest, secret = parts[2], parts[3]
    if len(digest) != DIGEST_LEN or len(secret) != SECRET_LEN:
        raise TokenError("invalid join token")
    if any(c not in _ALPHABET for c in digest + secret):
        raise TokenError("invalid join token")
    if from_base36(digest) >= 1 << 256 or from_base36(secret) >= 1 << 128:
        raise TokenError("invalid join token")
    return JoinToken(digest, secret)
