"""Keyring semantics, sealing, replay window, and fuzzed decryption (drop and count, never raise)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip.crypto import OVERHEAD, WINDOW, Channel, Keyring, KeyringError

K1, K2, K3 = b"1" * 32, b"2" * 32, b"3" * 32
MAX = 1400


def pair(ring_a: Keyring, ring_b: Keyring, epoch: int = 1) -> tuple[Channel, Channel]:
    rng = random.Random(0)
    return (
        Channel(ring_a, "a", epoch, nonce_source=rng.randbytes),
        Channel(ring_b, "b", 1, nonce_source=rng.randbytes),
    )


def test_keyring_primary_encrypts_all_decrypt() -> None:
    ring = Keyring([K1, K2])
    assert ring.primary == K1
    ring.add(K3)
    assert ring.keys == (K1, K2, K3)
    ring.use(K3)
    assert ring.primary == K3
    assert set(ring.keys) == {K1, K2, K3}


def test_keyring_refuses_bad_operations() -> None:
    ring = Keyring([K1, K2])
    with pytest.raises(KeyringError):
        ring.remove(K1)
    with pytest.raises(KeyringError):
        ring.add(b"short")
    with pytest.raises(KeyringError):
        ring.use(K3)
    with pytest.raises(KeyringError):
        Keyring([])
    ring.remove(K2)
    assert ring.keys == (K1,)


def test_seal_open_and_overhead() -> None:
    a, b = pair(Keyring([K1]), Keyring([K1]))
    frame = a.seal(b"hello")
    assert len(frame) == 5 + OVERHEAD == 5 + 1 + 16 + 24 + 16
    assert b.open(frame, MAX) == b"hello"
    assert b.stats.opened == 1


def test_rotation_loses_nothing() -> None:
    """Old sender (primary K1) and new sender (primary K2) both understood by a ring holding both."""
    ra, rb = Keyring([K1]), Keyring([K1])
    a, b = pair(ra, rb)
    rb.add(K2)  # step 1: install everywhere
    assert b.open(a.seal(b"old"), MAX) == b"old"
    ra.add(K2)
    ra.use(K2)  # step 2: switch primaries
    assert b.open(a.seal(b"new"), MAX) == b"new"
    ra.remove(K1)  # step 3: drop the old key
    assert b.open(a.seal(b"newer"), MAX) == b"newer"


def test_wrong_key_dropped_and_counted() -> None:
    a, b = pair(Keyring([K1]), Keyring([K2]))
    assert b.open(a.seal(b"x"), MAX) is None
    assert b.stats.unauthenticated == 1


def test_replay_dropped() -> None:
    a, b = pair(Keyring([K1]), Keyring([K1]))
    f1, f2 = a.seal(b"1"), a.seal(b"2")
    assert b.open(f2, MAX) == b"2"
    assert b.open(f1, MAX) == b"1"  # reordered, inside the window: fine
    assert b.open(f1, MAX) is None
    assert b.open(f2, MAX) is None
    assert b.stats.replayed == 2


def test_replay_window_edge() -> None:
    a, b = pair(Keyring([K1]), Keyring([K1]))
    first = a.seal(b"first")
    frames = [a.seal(b"%d" % i) for i in range(WINDOW)]
    assert b.open(frames[-1], MAX) is not None
    assert b.open(first, MAX) is None  # WINDOW behind the top: too old
    assert b.open(frames[0], MAX) is not None  # WINDOW - 1 behind: still accepted


def test_new_epoch_resets_old_epoch_refused() -> None:
    ring = Keyring([K1])
    old, b = pair(ring, ring, epoch=5)
    stale = old.seal(b"before restart")
    restarted = Channel(ring, "a", 6, nonce_source=random.Random(1).randbytes)
    assert b.open(restarted.seal(b"after"), MAX) == b"after"
    assert b.open(stale, MAX) is None


def test_forged_header_fails_authentication() -> None:
    a, b = pair(Keyring([K1]), Keyring([K1]))
    frame = bytearray(a.seal(b"payload"))
    frame[16] ^= 1  # seq is associated data: tampering breaks the tag
    assert b.open(bytes(frame), MAX) is None
    assert b.stats.unauthenticated == 1
    assert b.open(a.seal(b"next"), MAX) == b"next"  # the forgery did not move the window


def test_truncated_and_oversize_counted() -> None:
    a, b = pair(Keyring([K1]), Keyring([K1]))
    frame = a.seal(b"x" * 100)
    assert b.open(frame[: OVERHEAD - 1], MAX) is None
    assert b.open(frame, 50) is None
    assert b.open(b"\x09" + frame[1:], MAX) is None
    assert (b.stats.truncated, b.stats.oversize, b.stats.bad_version) == (1, 1, 1)
    assert b.stats.dropped == 3


def test_sender_table_bounded() -> None:
    ring = Keyring([K1])
    b = Channel(ring, "b", 1, max_senders=4)
    for i in range(10):
        assert b.open(Channel(ring, f"s{i}", 1).seal(b"x"), MAX) == b"x"
    assert len(b._windows) == 4


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_frames(data: bytes) -> None:
    b = Channel(Keyring([K1]), "b", 1)
    assert b.open(data, MAX) is None
    assert b.stats.dropped == 1


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64), st.integers(0, 200), st.binary(min_size=1, max_size=4))
def test_fuzz_mutated_frames(payload: bytes, pos: int, junk: bytes) -> None:
    a, b = pair(Keyring([K1]), Keyring([K1, K2]))
    frame = bytearray(a.seal(payload))
    i = pos % len(frame)
    frame[i : i + len(junk)] = bytes(x ^ 0xA5 for x in junk)
    out = b.open(bytes(frame), MAX)
    assert out is None or out == payload
    if out is None:
        assert b.stats.dropped == 1
