"""resolve_container: names, paths and PIDs to one namespace identity (no root needed)."""

from __future__ import annotations

import os

import pytest

from dataplane.netns import is_netns, resolve_container


def test_pid_and_path_give_the_same_key() -> None:
    by_pid = resolve_container(str(os.getpid()))
    by_path = resolve_container(f"/proc/{os.getpid()}/ns/net")
    assert by_pid.key == by_path.key == resolve_container("/proc/self/ns/net").key
    assert by_pid.path == f"/proc/{os.getpid()}/ns/net"
    assert by_pid.name == f"pid-{os.getpid()}"


def test_missing_name_is_lookup_error() -> None:
    with pytest.raises(LookupError, match="no network namespace"):
        resolve_container("ovt-surely-not-there")


def test_regular_file_is_not_a_netns(tmp_path) -> None:
    f = tmp_path / "net"
    f.write_text("")
    with pytest.raises(LookupError, match="not a network namespace"):
        resolve_container(str(f))
    assert not is_netns(str(f))


@pytest.mark.parametrize("ref", ["", "..", "a b", "x;y", "²", "¹²³", "/proc/self/ns/net\0", "x\0"])
def test_invalid_refs(ref: str) -> None:
    with pytest.raises(LookupError):
        resolve_container(ref)


def test_dead_pid() -> None:
    with pytest.raises(LookupError):
        resolve_container("999999999")
