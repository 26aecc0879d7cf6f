"""Broadcast queue with retransmit limits and invalidation (memberlist `queue.go`).

Order: fewest transmits first, then longest, then newest — so fresh news
goes out first and big messages are packed before small ones fill gaps. A
broadcast with a key replaces the queued one with the same key (a newer
`Alive` about a node makes the older `Suspect` pointless).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Hashable

# (transmits, -len, -id, key, data): a unique id means tuples never compare past it.
_Entry = tuple[int, int, int, Hashable | None, bytes]


class TransmitLimitedQueue:
    """Pending broadcasts; `get_broadcasts` fills one packet and counts a transmit each."""

    __slots__ = ("_by_key", "_entries", "_next_id", "max_len")

    def __init__(self, max_len: int = 4096) -> None:
        self._entries: list[_Entry] = []
        self._by_key: dict[Hashable, _Entry] = {}
        self._next_id = 0
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self._entries)

    def queue(self, data: bytes, key: Hashable | None = None) -> None:
        """Add a broadcast; drop any queued one with the same key."""
        if key is not None:
            old = self._by_key.pop(key, None)
            if old is not None:
                self._remove(old)
        self._next_id += 1
        entry: _Entry = (0, -len(data), -self._next_id, key, data)
        insort(self._entries, entry)
        if key is not None:
            self._by_key[key] = entry
        while len(self._entries) > self.max_len:  # drop the most-sent, oldest
            self._forget(self._entries.pop())

    def get_broadcasts(self, overhead: int, limit: int, retransmit_limit: int) -> list[bytes]:
        """Pick broadcasts whose size plus `overhead` each fit in `limit` bytes."""
        if not self._entries or limit <= overhead:
            return []
        picked: list[_Entry] = []
        rest: list[_Entry] = []
        used = 0
        for entry in self._entries:
            cost = overhead - entry[1]
            if used + cost <= limit:
                used += cost
                picked.append(entry)
            else:
                rest.append(entry)
        if not picked:
            return []
        self._entries = rest
        for old in picked:
            if old[0] + 1 >= retransmit_limit:
                self._forget(old)
                continue
            new: _Entry = (old[0] + 1, old[1], old[2], old[3], old[4])
            insort(self._entries, new)
            if old[3] is not None:
                self._by_key[old[3]] = new
        return [e[4] for e in picked]

    def drop(self, key: Hashable) -> None:
        """Forget the queued broadcast with this key, if any."""
        old = self._by_key.pop(key, None)
        if old is not None:
            self._remove(old)

    def has_key(self, key: Hashable) -> bool:
        return key in self._by_key

    def clear(self) -> None:
        self._entries.clear()
        self._by_key.clear()

    def _remove(self, entry: _Entry) -> None:
        i = bisect_left(self._entries, entry)
        if i < len(self._entries) and self._entries[i] is entry:
            del self._entries[i]

    def _forget(self, entry: _Entry) -> None:
        if entry[3] is not None and self._by_key.get(entry[3]) is entry:
            del self._by_key[entry[3]]
