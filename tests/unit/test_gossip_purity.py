"""The gossip cores are sans-I/O and import nothing from the layers above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GOSSIP = Path(__file__).resolve().parents[2] / "gossip"
CORE = [
    "swim",
    "suspicion",
    "awareness",
    "queue",
    "tables",
    "codec",
    "crypto",
    "config",
    "messages",
    "events",
    "delegate",
]
FORBIDDEN_IO = {"time", "asyncio", "socket", "selectors", "threading", "datetime"}
FORBIDDEN_LAYERS = {"api", "daemon", "manager", "dataplane"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("mod", CORE)
def test_core_has_no_io_imports(mod: str) -> None:
    assert not imports(GOSSIP / f"{mod}.py") & FORBIDDEN_IO


def test_no_module_level_random_calls() -> None:
    """`random` may be imported for the type; every draw goes through the Random passed in."""
    for mod in CORE:
        text = (GOSSIP / f"{mod}.py").read_text()
        for fn in (
            "random.random(",
            "random.choice(",
            "random.shuffle(",
            "random.randint(",
            "random.uniform(",
        ):
            assert fn not in text, f"{mod}.py calls the global {fn}"


def test_gossip_imports_no_upper_layer() -> None:
    for path in GOSSIP.glob("*.py"):
        assert not imports(path) & FORBIDDEN_LAYERS, path.name
