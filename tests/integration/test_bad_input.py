"""Bad input gets a clear 4xx in Docker's format and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.integration.harness import Host

JSON = {"Content-Type": "application/json"}


def state(host: Host) -> list[dict]:
    return sorted(host.request("GET", "/networks").json(), key=lambda n: n["Name"])


def assert_error(reply, status: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["Content-Type"] == "application/json"
    message = reply.json()["message"]
    assert fragment in message, message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{", "invalid JSON"),
        (b"[1,2]", "invalid JSON"),
        (b'{"Name": 5}', "cannot unmarshal number into Go struct field"),
        (b'{"Name": "x", "Labels": {"a": 1}}', "cannot unmarshal number"),
        (b'{"Name": "x", "Internal": "yes"}', "cannot unmarshal string"),
        (b'{"Name": "x", "IPAM": {"Config": [{"Subnet": 10}]}}', "cannot unmarshal number"),
        (b'{"Name": "x", "IPAM": {"Config": "10.0.0.0/8"}}', "cannot unmarshal string"),
        (b'{"Name": ""}', "invalid name: name is empty"),
        (b"{}", "invalid name: name is empty"),
        (b'{"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.0/40"}]}}', "invalid subnet"),
        (b'{"Name": "x", "IPAM": {"Config": [{"Subnet": "banana"}]}}', "invalid subnet"),
        (b'{"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.5/24"}]}}', "invalid subnet"),
        (b'{"Name": "x", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.8.0.1"}]}}',
         "invalid gateway"),
        (b'{"Name": "x", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24", "IPRange": "10.9.1.0/25"}]}}',
         "invalid ip-range"),
        (b'{"Name": "x", "Options": {"com.docker.network.driver.mtu": "lots"}}', "MTU"),
        (b'{"Name": "x", "Options": {"com.docker.network.bridge.name": "this-name-is-far-too-long"}}',
         "invalid bridge name"),
        # what Go's decoder refuses: the constants, other encodings than UTF-8
        (b'{"Name": "x", "Labels": {"a": NaN}}', "invalid JSON"),
        (b'{"Name": Infinity}', "invalid JSON"),
        ('{"Name": "x"}'.encode("utf-16"), "invalid JSON"),
        # strconv.Atoi / ParseBool take no spaces, underscores or mixed case
        (b'{"Name": "x", "Options": {"com.docker.network.driver.mtu": " 1_500 "}}', "MTU"),
        (b'{"Name": "x", "Options": {"com.docker.network.bridge.enable_icc": "tRuE"}}',
         "ParseBool"),
        # the kernel takes ASCII names only, and never "." or ".."
        (b'{"Name": "x", "Options": {"com.docker.network.bridge.name": "\\u00e9t\\u00e9"}}',
         "invalid bridge name"),
        (b'{"Name": "x", "Options": {"com.docker.network.bridge.name": ".."}}', "invalid bridge name"),
        (b'{"Name": "x", "Options": {"com.docker.network.bridge.name": "br\\n"}}',
         "invalid bridge name"),
    ],
)  # fmt: skip
def test_create_rejects(shared_host: Host, raw: bytes, fragment: str) -> None:
    before = state(shared_host)
    reply = shared_host.request("POST", "/networks/create", raw=raw, headers=JSON)
    assert_error(reply, 400, fragment)
    assert state(shared_host) == before


def test_odd_names(shared_host: Host) -> None:
    # Docker accepts any non-empty name; odd characters are stored and returned as given.
    for name in ("weird name", "ünïcode", "a/b", "x" * 200):
        reply = shared_host.request("POST", "/networks/create", {"Name": name})
        assert reply.status == 201, reply.body
        net_id = reply.json()["Id"]
        assert shared_host.request("GET", f"/networks/{net_id}").json()["Name"] == name
        assert shared_host.request("DELETE", f"/networks/{net_id}").status == 204


def test_go_decoding_of_odd_but_valid_json(shared_host: Host) -> None:
    """A lone UTF-16 surrogate escape is U+FFFD (it was a 500 from the store's encoder), a
    null label value is the empty string: as Go's encoding/json decodes them."""
    raw = b'{"Name": "odd\\ud800", "Labels": {"k": null}}'
    reply = shared_host.request("POST", "/networks/create", raw=raw, headers=JSON)
    assert reply.status == 201, reply.body
    net = shared_host.request("GET", f"/networks/{reply.json()['Id']}").json()
    assert net["Name"] == "odd\ufffd" and net["Labels"] == {"k": ""}
    assert shared_host.request("DELETE", f"/networks/{net['Id']}").status == 204


def test_huge_body_refused(shared_host: Host) -> None:
    before = state(shared_host)
    body = json.dumps({"Name": "big", "Labels": {"k": "v" * (2 << 20)}}).encode()
    reply = shared_host.request("POST", "/networks/create", raw=body, headers=JSON)
    assert reply.status == 413
    assert "too large" in reply.json()["message"]
    assert state(shared_host) == before


def test_body_framing(shared_host: Host) -> None:
    reply = shared_host.request("POST", "/networks/create", raw=b'{"Name":"x"}')
    assert_error(reply, 400, "malformed Content-Type header (): mime: no media type")
    reply = shared_host.request("POST", "/networks/create", raw=b"null", headers=JSON)
    assert_error(reply, 400, "invalid JSON: got EOF while reading request body")
    reply = shared_host.request("POST", "/networks/create", raw=b'{"Name":"x"} {}', headers=JSON)
    assert_error(reply, 400, "unexpected content after JSON")
    # An empty body is the zero value: the name check answers.
    reply = shared_host.request("POST", "/networks/create", raw=b"")
    assert_error(reply, 400, "invalid name: name is empty")


def test_wrong_content_type(shared_host: Host) -> None:
    reply = shared_host.request("POST", "/networks/create", raw=b'{"Name":"ct"}',
                                headers={"Content-Type": "text/plain"})  # fmt: skip
    assert_error(reply, 400, "unsupported Content-Type header (text/plain)")


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("filters=%7B", "invalid filter"),
        ("filters=%7B%22colour%22%3A%5B%22red%22%5D%7D", "invalid filter 'colour'"),
        ("filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D",
         "invalid value for filter 'dangling', must be \"true\" (or \"1\"), or \"false\" (or \"0\")"),
        ("filters=%7B%22dangling%22%3A%5B%22true%22%2C%220%22%5D%7D",
         'got more than one value for filter key "dangling"'),
        ("filters=%7B%22name%22%3A%22x%22%7D", "invalid filter"),
        ("filters=%7B%22type%22%3A%5B%22odd%22%5D%7D", "invalid filter: 'type'='odd'"),
    ],
)
def test_list_filters_rejected(shared_host: Host, query: str, fragment: str) -> None:
    assert_error(shared_host.request("GET", f"/networks?{query}"), 400, fragment)


def test_version_bounds_and_unknown_routes(shared_host: Host) -> None:
    assert_error(shared_host.request("GET", "/v1.12/networks"), 400,
                 "client version 1.12 is too old. Minimum supported API version is 1.24")  # fmt: skip
    assert_error(shared_host.request("GET", "/v1.99/networks"), 400,
                 "client version 1.99 is too new. Maximum supported API version is 1.51")  # fmt: skip
    missing = shared_host.request("GET", "/nowhere")
    assert_error(missing, 404, "page not found")
    assert "Api-Version" not in missing.headers  # a router 404 passes no middleware in dockerd
    too_old = shared_host.request("GET", "/v1.12/networks")
    assert too_old.headers["Api-Version"] == "1.51" and "Docker-Experimental" not in too_old.headers
    ok = shared_host.request("GET", "/networks")
    assert ok.headers["Docker-Experimental"] == "false" and ok.headers["Ostype"] == "linux"
    assert_error(shared_host.request("PUT", "/networks"), 404, "page not found")
    for version in ("1.24", "1.41", "1.44", "1.47", "1.51"):
        assert shared_host.request("GET", f"/v{version}/networks").status == 200


def test_verbose_flag_is_strict(shared_host: Host) -> None:
    assert shared_host.request("GET", "/networks/bridge?verbose=true").status == 200
    assert_error(
        shared_host.request("GET", "/networks/bridge?verbose=maybe"),
        400,
        'invalid value for verbose: maybe: strconv.ParseBool: parsing "maybe": invalid syntax',
    )


def test_connect_rejects(shared_host: Host) -> None:
    h = shared_host
    assert (
        h.request(
            "POST",
            "/networks/create",
            {"Name": "cx", "IPAM": {"Config": [{"Subnet": "10.88.0.0/24"}]}},
        ).status
        == 201
    )
    c = h.container("x")
    cases = [
        ({}, 400, "no container specified"),
        ({"Container": 7}, 400, "cannot unmarshal number"),
        ({"Container": "../../etc"}, 404, "No such container"),
        ({"Container": c.name, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "nope"}}}, 400,
         "invalid endpoint settings:\ninvalid IPv4 address: nope"),
        ({"Container": c.name, "EndpointConfig": {"MacAddress": "zz"}}, 400, "invalid MAC address zz"),
        ({"Container": c.name, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.99.0.5"}}}, 400,
         "no configured subnet or ip-range contain the IP address 10.99.0.5"),
        ({"Container": c.name, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.88.0.0"}}}, 403, ""),
        # what an endpoint record can carry to the other hosts
        ({"Container": c.name, "EndpointConfig": {"Aliases": ["a" * 256]}}, 400,
         "is longer than 255 bytes"),
        ({"Container": c.name, "EndpointConfig": {"Aliases": [f"a{i}" for i in range(256)]}}, 400,
         "at most 255 aliases"),
        ({"Container": "²"}, 404, "No such container"),
        ({"Container": "/proc/self/ns/net\u0000"}, 404, "No such container"),
    ]  # fmt: skip
    for body, status, fragment in cases:
        before = h.request("GET", "/networks/cx").json()
        assert_error(h.request("POST", "/networks/cx/connect", body), status, fragment)
        assert h.request("GET", "/networks/cx").json() == before
    assert c.sh("ip", "link", "show", "eth0", check=False).returncode != 0
    assert h.request("DELETE", "/networks/cx").status == 204


def test_connect_to_host_and_none_is_refused(shared_host: Host) -> None:
    c = shared_host.container("hn")
    reply = shared_host.request("POST", "/networks/host/connect", {"Container": c.name})
    assert_error(reply, 400, "container cannot be disconnected from host network or connected to host network")
    reply = shared_host.request("POST", "/networks/none/connect", {"Container": c.name})
    assert_error(reply, 400, "in private (none) mode")
