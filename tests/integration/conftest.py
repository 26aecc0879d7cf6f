"""Fixtures for tests that run real overlayd processes in namespaces (root needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.harness import Host, make_host

pytestmark = pytest.mark.kernel


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (network namespaces)")
        for item in items:
            if "tests/integration" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
def host() -> Iterator[Host]:
    """A fresh host namespace with overlayd running in it."""
    h = make_host()
    try:
        h.start()
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def shared_host() -> Iterator[Host]:
    """One overlayd for a whole module of API tests that don't care about each other."""
    h = make_host("m")
    try:
        h.start()
        yield h
    finally:
        h.close()
