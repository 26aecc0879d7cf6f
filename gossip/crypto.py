"""Authenticated encryption of every datagram and stream: keyring + replay window.

Frame: version (1) | sender id (8) | epoch (u32) | seq (u32) | nonce (24) |
XChaCha20-Poly1305 ciphertext + tag (16). The 17-byte clear header is the
AEAD's associated data, so it is authenticated but readable before any
decryption work.

Keyring (memberlist `keyring.go` semantics): the primary key encrypts, every
key decrypts (rotation loses nothing: install the new key everywhere, then
make it primary, then remove the old one); the primary cannot be removed.

Replay protection, chosen over a timestamp window because it needs no clock
agreement between hosts: every sender numbers its frames `(epoch, seq)`; the
receiver keeps, per authenticated sender id, the highest `(epoch, seq)` seen
and a 1024-bit bitmap of recent sequence numbers (IPsec/DTLS style). A frame
with an older epoch, a seq below the window or a seq already seen is dropped
before decryption; the window moves only after the tag verified. The epoch is
the shell's job: it must grow across restarts (boot wall-clock seconds, or a
persisted counter + 1); the sequence wrapping bumps it too. Memory is bounded:
one small record per sender, at most `max_senders` (oldest evicted).

Nothing here raises on bad input: `open` returns None and counts why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 24
TAG_SIZE = 16
HEADER_SIZE = 1 + 8 + 4 + 4
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
WINDOW = 1024
_SEQ_MAX = 0xFFFFFFFF
_WINDOW_MASK = (1 << WINDOW) - 1


class KeyringError(ValueError):
    """A key operation that would break the ring (bad size, removing the primary)."""


def sender_id(name: str) -> bytes:
    """8-byte id of a node name: the replay window's key."""
    return blake2b(name.encode(), digest_size=8).digest()


class Keyring:
    """Ordered keys; index 0 is the primary and the only one that encrypts."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one key")
        self._keys: list[bytes] = []
        for key in keys:
            self.add(key)

    @property
    def primary(self) -> bytes:
        return self._keys[0]

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(self._keys)

    def add(self, key: bytes) -> None:
        """Install a key for decryption (a no-op if present)."""
        if len(key) != KEY_SIZE:
            raise KeyringError(f"keys are {KEY_SIZE} bytes, got {len(key)}")
        if key not in self._keys:
            self._keys.append(bytes(key))

    def use(self, key: bytes) -> None:
        """Make an installed key the primary."""
        if key not in self._keys:
            raise KeyringError("key not installed")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> None:
        if key == self._keys[0]:
            raise KeyringError("cannot remove the primary key")
        if key in self._keys:
            self._keys.remove(key)


@dataclass(slots=True)
class CryptoStats:
    """Why frames were dropped (counters for metrics)."""

    sealed: int = 0
    opened: int = 0
    truncated: int = 0
    oversize: int = 0
    bad_version: int = 0
    replayed: int = 0
    unauthenticated: int = 0

    @property
    def dropped(self) -> int:
        return (
            self.truncated + self.oversize + self.bad_version + self.replayed + self.unauthenticated
        )


@dataclass(slots=True)
class _Window:
    epoch: int
    top: int
    seen: int = field(default=1)  # bit i set: seq (top - i) seen


class Channel:
    """Seals outgoing and opens incoming frames for one node."""

    def __init__(
        self,
        keyring: Keyring,
        name: str,
        epoch: int,
        *,
        nonce_source: Callable[[int], bytes] = os.urandom,
        max_senders: int = 65536,
    ) -> None:
        self.keyring = keyring
        self.sender = sender_id(name)
        self.epoch = epoch & _SEQ_MAX
        self.seq = 0
        self._nonce = nonce_source
        self._windows: dict[bytes, _Window] = {}
        self._max_senders = max_senders
        self.stats = CryptoStats()

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt with the primary key under the next (epoch, seq)."""
        if self.seq == _SEQ_MAX:
            self.epoch = (self.epoch + 1) & _SEQ_MAX
            self.seq = 0
        self.seq += 1
        header = b"".join(
            (
                bytes((VERSION,)),
                self.sender,
                self.epoch.to_bytes(4, "big"),
                self.seq.to_bytes(4, "big"),
            )
        )
        nonce = self._nonce(NONCE_SIZE)
        ct = crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, header, nonce, self.keyring.primary
        )
        self.stats.sealed += 1
        return header + nonce + ct

    def open(self, frame: bytes, max_size: int) -> bytes | None:
        """Plaintext of an authentic, fresh frame of at most `max_size` bytes; else None (counted)."""
        st = self.stats
        if len(frame) > max_size:
            st.oversize += 1
            return None
        if len(frame) < OVERHEAD:
            st.truncated += 1
            return None
        if frame[0] != VERSION:
            st.bad_version += 1
            return None
        sender = bytes(frame[1:9])
        epoch = int.from_bytes(frame[9:13], "big")
        seq = int.from_bytes(frame[13:17], "big")
        if not self._fresh(sender, epoch, seq):
            st.replayed += 1
            return None
        header = bytes(frame[:HEADER_SIZE])
        nonce = bytes(frame[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE])
        ct = bytes(frame[HEADER_SIZE + NONCE_SIZE :])
        for key in self.keyring.keys:
            try:
                plain = crypto_aead_xchacha20poly1305_ietf_decrypt(ct, header, nonce, key)
            except CryptoError:
                continue
            self._mark(sender, epoch, seq)
            st.opened += 1
            return plain
        st.unauthenticated += 1
        return None

    def _fresh(self, sender: bytes, epoch: int, seq: int) -> bool:
        w = self._windows.get(sender)
        if w is None or epoch > w.epoch or seq > w.top:
            return epoch >= (w.epoch if w else 0)
        if epoch < w.epoch:
            return False
        age = w.top - seq
        return age < WINDOW and not (w.seen >> age) & 1

    def _mark(self, sender: bytes, epoch: int, seq: int) -> None:
        w = self._windows.get(sender)
        if w is None:
            if len(self._windows) >= self._max_senders:
                del self._windows[next(iter(self._windows))]
            self._windows[sender] = _Window(epoch, seq)
        elif epoch > w.epoch:
            w.epoch, w.top, w.seen = epoch, seq, 1
        elif seq > w.top:
            shift = seq - w.top
            w.seen = 1 if shift >= WINDOW else ((w.seen << shift) | 1) & _WINDOW_MASK
            w.top = seq
        else:
            w.seen |= 1 << (w.top - seq)
