"""The raft core stays sans-I/O: no clock, socket, event loop or global RNG."""

from __future__ import annotations

import re
from pathlib import Path

RAFT = Path(__file__).resolve().parents[2] / "manager" / "raft"
FORBIDDEN_IMPORT = re.compile(
    r"^\s*(import|from)\s+(time|asyncio|socket|selectors|threading|os|sqlite3)\b", re.M
)
GLOBAL_RANDOM = re.compile(
    r"\brandom\.(random|randint|randrange|uniform|choice|shuffle|seed|sample|getrandbits)\("
)
LAYERS = re.compile(r"^\s*(import|from)\s+(api|daemon|gossip|dataplane)\b", re.M)


def core_files() -> list[Path]:
    files = sorted(RAFT.glob("*.py"))
    assert files, RAFT
    return files


def test_no_io_imports_in_core() -> None:
    bad = [f.name for f in core_files() if FORBIDDEN_IMPORT.search(f.read_text())]
    assert bad == []


def test_no_module_level_random_in_core() -> None:
    bad = [f.name for f in core_files() if GLOBAL_RANDOM.search(f.read_text())]
    assert bad == []


def test_manager_imports_no_upper_or_sibling_layer() -> None:
    bad = [f.name for f in core_files() if LAYERS.search(f.read_text())]
    assert bad == []


def test_checker_itself_catches_offenders() -> None:
    assert FORBIDDEN_IMPORT.search("import time\n")
    assert FORBIDDEN_IMPORT.search("from asyncio import sleep\n")
    assert GLOBAL_RANDOM.search("x = random.random()")
    assert not GLOBAL_RANDOM.search("x = self._rng.random()")
