import pytest

from daemon.errors import InvalidParameter
from daemon.filters import Filters, parse_filters


@pytest.mark.parametrize(
    "raw",
    ['{"driver":{"bridge":true}}', '{"driver":["bridge"]}'],
    ids=["go-cli-map-form", "docker-py-list-form"],
)
def test_both_json_forms(raw: str) -> None:
    assert parse_filters(raw).get("driver") == {"bridge"}


def test_empty_and_disabled_values() -> None:
    assert not parse_filters("")
    assert not parse_filters("{}")
    assert parse_filters('{"name":{"a":false}}').get("name") == set()


@pytest.mark.parametrize("raw", ["{", "[]", '"x"', '{"a":1}', '{"a":[1]}', '{"a":{"b":"yes"}}'])
def test_malformed(raw: str) -> None:
    with pytest.raises(InvalidParameter, match=r"^invalid filter$"):
        parse_filters(raw)


def test_validate_unknown_key() -> None:
    with pytest.raises(InvalidParameter, match=r"^invalid filter 'colour'$"):
        Filters({"colour": ["red"]}).validate(["name"])


def test_match_is_unanchored_regexp_like_docker() -> None:
    f = Filters({"name": ["^net"]})
    assert f.match("name", "network1")
    assert not f.match("name", "mynet")
    assert Filters({"name": ["net"]}).match("name", "mynet")
    # An invalid regexp matches nothing but does not fail.
    assert not Filters({"name": ["("]}).match("name", "x")


def test_label_kv_list() -> None:
    labels = {"a": "1", "b": ""}
    assert Filters({"label": ["a"]}).match_kv_list("label", labels)
    assert Filters({"label": ["a=1", "b"]}).match_kv_list("label", labels)
    assert not Filters({"label": ["a=2"]}).match_kv_list("label", labels)
    assert not Filters({"label": ["c"]}).match_kv_list("label", labels)


def test_a_backtracking_pattern_cannot_hold_the_daemon() -> None:
    """Python's re takes exponential time here on a 64-character ID (the test would hit
    its timeout); RE2, like Go's regexp, answers at once."""
    f = Filters({"id": ["^([0-9a-f]+)+x"]})
    assert not f.match("id", "a" * 64)
    assert Filters({"id": ["^([0-9a-f]+)+$"]}).match("id", "a" * 64)


@pytest.mark.parametrize("pattern", ["a{99999999999}", "(" * 5000, "a\\Kb", "[z-a]", "x(?<"])
def test_patterns_that_do_not_compile_match_nothing_and_raise_nothing(pattern: str) -> None:
    assert not Filters({"name": [pattern]}).match("name", "abc")
    assert Filters({"name": [pattern, "b"]}).match("name", "abc")  # the other value still counts


def test_plain_values_are_substrings_and_go_syntax_works() -> None:
    f = Filters({"name": ["my-net"]})
    assert f.match("name", "xmy-nety") and not f.match("name", "my_net")
    assert Filters({"name": [r"^web\d+$"]}).match("name", "web12")
    assert Filters({"name": ["(?i)^WEB"]}).match("name", "web12")
    assert not Filters({"name": ["^web$"]}).match("name", "web12")
