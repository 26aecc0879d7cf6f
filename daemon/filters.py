"""Docker's `filters` query parameter: parsing both JSON forms and the match rules.

The Go CLI sends `{"key":{"value":true}}`, docker-py sends `{"key":["value"]}`; moby's
api/types/filters accepts both, so do we.

`name` and `id` values are regular expressions. Docker runs them with Go's regexp, whose
time is linear in the input; Python's `re` backtracks, and `^([0-9a-f]+)+x` against a
64-character ID would hold the event loop for good. So patterns run on RE2 (the engine Go's
regexp follows), loaded only when a value holds a metacharacter (≈ 2.7 MB resident; a
plain `name=web` is a substring test).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from daemon.errors import InvalidParameter


class Filters:
    """Parsed filters: key → set of values."""

    def __init__(self, fields: Mapping[str, Iterable[str]] | None = None) -> None:
        self.fields: dict[str, set[str]] = {k: set(v) for k, v in (fields or {}).items()}

    def __bool__(self) -> bool:
        return bool(self.fields)

    def get(self, key: str) -> set[str]:
        return self.fields.get(key, set())

    def contains(self, key: str) -> bool:
        return key in self.fields

    def validate(self, accepted: Iterable[str]) -> None:
        allowed = set(accepted)
        for key in self.fields:
            if key not in allowed:
                raise InvalidParameter(f"invalid filter '{key}'")

    def exact_match(self, key: str, value: str) -> bool:
        """True when the key is absent or one of its values equals `value`."""
        values = self.fields.get(key)
        return not values or value in values

    def match(self, key: str, source: str) -> bool:
        """Docker's Args.Match: exact, else any value as an unanchored regexp."""
        values = self.fields.get(key)
        if not values or source in values:
            return True
        return any(_search(pattern, source) for pattern in values)

    def match_kv_list(self, key: str, labels: Mapping[str, str]) -> bool:
        """Docker's Args.MatchKVList: every `k` or `k=v` value must hold on the labels."""
        values = self.fields.get(key)
        if not values:
            return True
        for item in values:
            name, sep, want = item.partition("=")
            if name not in labels:
                return False
            if sep and labels[name] != want:
                return False
        return True


_REGEX_META = frozenset("\\.+*?()|[]{}^$")


def _search(pattern: str, source: str) -> bool:
    """Go's regexp.MatchString; a pattern that does not compile matches nothing."""
    if not _REGEX_META.intersection(pattern):
        return pattern in source
    compiled = _compile(pattern)
    return compiled is not None and compiled.search(source) is not None


@functools.lru_cache(maxsize=64)
def _compile(pattern: str) -> Any:
    import re2  # google-re2: linear time, Go's syntax

    options = re2.Options()
    options.log_errors = False  # a client's bad pattern is not the daemon's log line
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


def parse_filters(raw: str | None) -> Filters:
    if not raw:
        return Filters()
    # dockerd answers any undecodable filter with just this text (filters.FromJSON).
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidParameter("invalid filter") from exc
    if not isinstance(doc, dict):
        raise InvalidParameter("invalid filter")
    fields: dict[str, set[str]] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            if not all(isinstance(v, str) for v in value) or not all(
                isinstance(b, bool) for b in value.values()
            ):
                raise InvalidParameter("invalid filter")
            fields[key] = {v for v, on in value.items() if on}
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            fields[key] = set(value)
        else:
            raise InvalidParameter("invalid filter")
    return Filters(fields)
