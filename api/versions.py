"""API version bounds and comparisons (Docker's are "major.minor" strings)."""

from __future__ import annotations

from functools import lru_cache

# Highest API version whose network/system shapes overlayd serves as dockerd does.
API_VERSION = "1.51"
MIN_API_VERSION = "1.24"
DEFAULT_VERSION = API_VERSION  # an unprefixed request gets the newest behaviour


@lru_cache(maxsize=256)
def parse(version: str) -> tuple[int, ...]:
    """ "1.41" → (1, 41); like moby's versions.compare, missing parts count as 0."""
    parts = []
    for piece in version.split("."):
        try:
            parts.append(int(piece))
        except ValueError:
            parts.append(0)
    return tuple(parts)


def less_than(a: str, b: str) -> bool:
    pa, pb = parse(a), parse(b)
    width = max(len(pa), len(pb))
    return pa + (0,) * (width - len(pa)) < pb + (0,) * (width - len(pb))


def greater_than(a: str, b: str) -> bool:
    return less_than(b, a)
