"""openapi.yaml checked against a real overlayd.

The spec must be valid OpenAPI 3.1 and list exactly the routes the app serves. Then every
route is exercised on a running daemon, success and error paths alike. Each answer must
have a status the spec declares for that operation, carry the headers declared for it,
and have a body valid against the declared schema ($refs resolved, JSON Schema 2020-12,
formats asserted). Request bodies that are meant to be valid are checked against the
declared request schema too, so the request side of the spec is tested as well.
"""

from __future__ import annotations

import json
import re
import time
import types
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_spec
from prometheus_client import CollectorRegistry
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.integration.harness import REPO, Host, Reply, unique, wait_for

pytestmark = pytest.mark.kernel

SPEC_PATH = REPO / "openapi.yaml"
SPEC_URI = "urn:overlayd:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
VERSION_PREFIX = re.compile(r"^/v[0-9.]+(?=/)")
VERSIONED = "/v{version}"
JSON = "application/json"


# ----- the contract ------------------------------------------------------------------------


def _escape(token: str) -> str:
    """One JSON-pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _resolve_pointer(doc: Any, pointer: str) -> Any:
    node = doc
    for token in pointer.lstrip("/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _format_checker() -> FormatChecker:
    """Every format jsonschema knows (date-time needs rfc3339-validator), plus OpenAPI's."""
    checker = FormatChecker()

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return not isinstance(value, int) or -(2**31) <= value < 2**31

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or -(2**63) <= value < 2**63

    return checker


def _walk_formats(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "format" and isinstance(value, str):
                yield value
            else:
                yield from _walk_formats(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_formats(item)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^}]+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


class Contract:
    """Looks up what the spec declares for (method, path template, status) and checks answers."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource(SPEC_URI, resource)
        self.format_checker = _format_checker()
        self.seen: set[tuple[str, str, int]] = set()

    # -- lookups ----------------------------------------------------------------------------
    def deref(self, node: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        """Follow $ref of response/header/parameter objects; returns the node and its pointer."""
        for _ in range(16):
            ref = node.get("$ref")
            if ref is None:
                return node, pointer
            assert ref.startswith("#/"), f"only local $refs are supported, got {ref}"
            pointer = ref[1:]
            node = _resolve_pointer(self.spec, pointer)
        raise AssertionError(f"$ref loop at {pointer}")

    def match(self, method: str, path: str) -> str:
        """The spec's path template for a request path (version prefix and query ignored)."""
        bare = VERSION_PREFIX.sub("", urlsplit(path).path, count=1)
        candidates = [
            template
            for template, item in self.spec["paths"].items()
            if method.lower() in item and _template_regex(template).match(bare)
        ]
        if not candidates:
            pytest.fail(f"{method} {path}: the spec declares no such operation")
        return min(candidates, key=lambda t: t.count("{"))  # literal segments win

    def operation(self, method: str, template: str) -> tuple[dict[str, Any], str]:
        item = self.spec["paths"].get(template)
        if item is None or method.lower() not in item:
            pytest.fail(f"{method} {template}: the spec declares no such operation")
        return item[method.lower()], f"/paths/{_escape(template)}/{method.lower()}"

    def response(self, method: str, template: str, status: int) -> tuple[dict[str, Any], str]:
        op, pointer = self.operation(method, template)
        responses = op["responses"]
        if str(status) not in responses:
            pytest.fail(
                f"{method} {template} answered {status}, which the spec does not declare "
                f"(declared: {', '.join(sorted(responses))})"
            )
        return self.deref(responses[str(status)], f"{pointer}/responses/{status}")

    # -- validation ---------------------------------------------------------------------------
    def validate(self, instance: Any, schema_pointer: str, what: str) -> None:
        validator = Draft202012Validator(
            {"$ref": f"{SPEC_URI}#{schema_pointer}"},
            registry=self.registry,
            format_checker=self.format_checker,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [
                f"  at /{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}"
                for e in errors[:20]
            ]
            shown = json.dumps(instance)[:1500]
            pytest.fail(
                f"{what} does not match {schema_pointer}:\n" + "\n".join(lines) + f"\n{shown}"
            )

    def check_request(self, method: str, template: str, body: Any) -> None:
        op, pointer = self.operation(method, template)
        assert "requestBody" in op, f"{method} {template}: the spec declares no request body"
        request_body, body_pointer = self.deref(op["requestBody"], f"{pointer}/requestBody")
        assert JSON in request_body["content"], f"{method} {template}: no JSON request body"
        schema_pointer = f"{body_pointer}/content/{_escape(JSON)}/schema"
        self.validate(body, schema_pointer, f"request body of {method} {template}")

    def check_response(self, method: str, template: str, reply: Reply) -> Any:
        """Status declared, declared headers present and valid, body valid; returns the body."""
        self.seen.add((method, template, reply.status))
        what = f"{method} {template} → {reply.status}"
        resp, pointer = self.response(method, template, reply.status)
        for name, header in resp.get("headers", {}).items():
            header, header_pointer = self.deref(header, f"{pointer}/headers/{_escape(name)}")
            value = reply.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{what}: header {name} missing"
                continue
            if "schema" in header:
                self.validate(value, f"{header_pointer}/schema", f"{what}: header {name}")
        content = resp.get("content")
        if method == "HEAD" or not content:
            assert reply.body == b"", f"{what}: the spec declares no body, got {reply.body[:200]!r}"
            return None
        ctype = reply.headers.get("Content-Type", "")
        media = ctype.split(";")[0].strip().lower()
        assert media in content, f"{what}: Content-Type {ctype!r}, spec declares {list(content)}"
        media_obj = content[media]
        schema_pointer = f"{pointer}/content/{_escape(media)}/schema"
        if "schema" not in media_obj:
            return reply.body
        if media == JSON:
            if media_obj.get("x-stream") == "json-lines":
                docs = [json.loads(line) for line in reply.body.splitlines() if line.strip()]
                for i, doc in enumerate(docs):
                    self.validate(doc, schema_pointer, f"{what}: stream line {i}")
                return docs
            doc = json.loads(reply.body)
            self.validate(doc, schema_pointer, f"{what}: body")
            return doc
        text = reply.body.decode()
        self.validate(text, schema_pointer, f"{what}: body")
        return text


class Api:
    """Requests to the daemon, each checked against the contract; tracks networks to remove."""

    def __init__(self, host: Host, contract: Contract) -> None:
        self.host = host
        self.contract = contract
        self.created: list[str] = []

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: int,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        request_valid: bool = True,
    ) -> Any:
        template = self.contract.match(method, path)
        if body is not None and request_valid:
            self.contract.check_request(method, template, body)
        reply = self.host.request(method, path, body, raw=raw, headers=headers)
        assert reply.status == expect, (
            f"{method} {path}: expected {expect}, got {reply.status}: {reply.body[:500]!r}"
        )
        return self.contract.check_response(method, template, reply)

    def error(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: int,
        contains: str = "",
        **kw: Any,
    ) -> str:
        doc = self.call(method, path, body, expect=expect, **kw)
        if method == "HEAD":
            return ""
        message = doc["message"]
        assert contains in message, f"{method} {path}: {contains!r} not in {message!r}"
        return message

    def create(self, name: str, *, prefix: str = "", **fields: Any) -> str:
        doc = self.call("POST", f"{prefix}/networks/create", {"Name": name, **fields}, expect=201)
        assert doc["Warning"] == ""
        self.created.append(doc["Id"])
        return doc["Id"]

    def remove(self, net_id: str) -> None:
        self.call("DELETE", f"/networks/{net_id}", expect=204)
        self.created.remove(net_id)

    def inspect(self, ref: str, query: str = "", prefix: str = "") -> dict[str, Any]:
        return self.call("GET", f"{prefix}/networks/{ref}{query}", expect=200)

    def remove_leftovers(self) -> None:
        """Best effort, unchecked: whatever a failed test left behind."""
        for net_id in self.created:
            reply = self.host.request("GET", f"/networks/{net_id}")
            if reply.status != 200:
                continue
            for cid in reply.json().get("Containers") or {}:
                self.host.request(
                    "POST", f"/networks/{net_id}/disconnect", {"Container": cid, "Force": True}
                )
            self.host.request("DELETE", f"/networks/{net_id}")
        self.created.clear()


def filters(doc: dict[str, Any]) -> str:
    return "filters=" + quote(json.dumps(doc))


# ----- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with open(SPEC_PATH) as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def contract(spec: dict[str, Any]) -> Contract:
    return Contract(spec)


@pytest.fixture(scope="module")
def api(shared_host: Host, contract: Contract) -> Iterator[Api]:
    client = Api(shared_host, contract)
    try:
        yield client
    finally:
        client.remove_leftovers()


# ----- the spec itself -------------------------------------------------------------------------


def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate_spec(spec)


def test_every_format_in_the_spec_is_asserted(spec: dict[str, Any], contract: Contract) -> None:
    unchecked = set(_walk_formats(spec)) - set(contract.format_checker.checkers)
    assert not unchecked, f"formats the validator would silently ignore: {sorted(unchecked)}"


def test_spec_declares_exactly_the_routes_the_app_serves(spec: dict[str, Any]) -> None:
    from api.app import build_app

    app = build_app(types.SimpleNamespace(metrics=CollectorRegistry()))  # type: ignore[arg-type]
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    plain = {(m, p) for m, p in served if not p.startswith(VERSIONED)}
    versioned = {(m, p[len(VERSIONED) :]) for m, p in served if p.startswith(VERSIONED)}
    declared = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert declared == plain, (
        f"served, not in the spec: {sorted(plain - declared)}; "
        f"in the spec, not served: {sorted(declared - plain)}"
    )
    for method, path in declared:
        servers = spec["paths"][path].get("servers")
        unversioned_only = servers is not None and all("{version}" not in s["url"] for s in servers)
        assert ((method, path) in versioned) != unversioned_only, (
            f"{method} {path}: the spec says versioned={not unversioned_only}, the app disagrees"
        )
    assert any("{version}" in s["url"] for s in spec["servers"])


# ----- system ----------------------------------------------------------------------------------


def test_ping(api: Api) -> None:
    assert api.call("GET", "/_ping", expect=200) == "OK"
    assert api.call("GET", "/v1.24/_ping", expect=200) == "OK"
    assert api.call("HEAD", "/_ping", expect=200) is None
    assert api.call("HEAD", "/v1.51/_ping", expect=200) is None
    reply = api.host.request("GET", "/_ping")
    assert reply.headers["Swarm"] == "inactive"


def test_version(api: Api) -> None:
    doc = api.call("GET", "/version", expect=200)
    reply = api.host.request("GET", "/version")
    assert doc["ApiVersion"] == reply.headers["Api-Version"]
    assert doc["Components"][0]["Name"] == "Engine"
    api.call("GET", f"/v{doc['MinAPIVersion']}/version", expect=200)
    api.call("GET", f"/v{doc['ApiVersion']}/version", expect=200)


def test_info(api: Api) -> None:
    doc = api.call("GET", "/info", expect=200)
    assert doc["Swarm"]["LocalNodeState"] == "inactive"
    assert doc["OSType"] == "linux"
    api.call("GET", "/v1.41/info", expect=200)


def test_metrics(api: Api) -> None:
    api.call("GET", "/networks", expect=200)
    text = api.call("GET", "/metrics", expect=200)
    assert "overlayd_api_requests_total" in text
    assert 'route="/networks"' in text
    assert api.call("HEAD", "/metrics", expect=200) is None


def test_version_prefix_out_of_range(api: Api) -> None:
    api.error(
        "GET",
        "/v1.23/version",
        expect=400,
        contains="client version 1.23 is too old. Minimum supported API version is 1.24",
    )
    api.error(
        "GET",
        "/v1.99/networks",
        expect=400,
        contains="client version 1.99 is too new. Maximum supported API version is 1.51",
    )
    api.error("GET", "/v1.0/_ping", expect=400, contains="too old")
    api.error("HEAD", "/v1.0/_ping", expect=400)
    name = unique("old")
    api.error("POST", "/v1.12/networks/create", {"Name": name}, expect=400, contains="too old")
    api.error("GET", f"/networks/{name}", expect=404)  # nothing was created


def test_unknown_routes_are_page_not_found(api: Api, contract: Contract) -> None:
    for method, path in [
        ("GET", "/containers/json"),
        ("PUT", "/networks"),
        ("GET", "/v1.51/nope"),
        ("POST", "/networks"),
    ]:
        reply = api.host.request(method, path)
        assert reply.status == 404, (method, path, reply.status)
        contract.validate(reply.json(), "/components/schemas/ErrorResponse", f"{method} {path}")
        assert reply.json()["message"] == "page not found"
        assert reply.headers["Content-Type"] == JSON


# ----- networks ---------------------------------------------------------------------------------


def test_predefined_networks(api: Api) -> None:
    listed = api.call("GET", "/networks", expect=200)
    by_name = {n["Name"]: n for n in listed}
    assert {"bridge", "host", "none"} <= set(by_name)
    for name in ("bridge", "host", "none"):
        doc = api.inspect(name)
        assert doc["Id"] == by_name[name]["Id"]
    builtin = api.call("GET", "/networks?" + filters({"type": ["builtin"]}), expect=200)
    assert {n["Name"] for n in builtin} == {"bridge", "host", "none"}


def test_network_lifecycle(api: Api) -> None:
    host = api.host
    name = unique("lc")
    label = unique("label")
    net_id = api.create(
        name,
        Driver="bridge",
        Attachable=True,
        Labels={label: "yes"},
        Options={"com.docker.network.driver.mtu": "1400"},
        IPAM={
            "Driver": "default",
            "Config": [
                {
                    "Subnet": "10.123.1.0/24",
                    "IPRange": "10.123.1.128/25",
                    "Gateway": "10.123.1.1",
                    "AuxiliaryAddresses": {"router": "10.123.1.2"},
                }
            ],
        },
    )

    doc = api.inspect(net_id)
    assert doc["Name"] == name and doc["Id"] == net_id
    assert doc["Containers"] == {}
    assert doc["EnableIPv4"] is True and doc["EnableIPv6"] is False
    assert doc["IPAM"]["Config"] == [
        {
            "Subnet": "10.123.1.0/24",
            "IPRange": "10.123.1.128/25",
            "Gateway": "10.123.1.1",
            "AuxiliaryAddresses": {"router": "10.123.1.2"},
        }
    ]
    assert doc["Labels"] == {label: "yes"}
    assert api.inspect(name)["Id"] == net_id
    assert api.inspect(net_id[:12])["Id"] == net_id
    assert api.inspect(name, "?verbose=true&scope=local")["Id"] == net_id
    assert api.inspect(name, prefix="/v1.41")["Id"] == net_id

    # list: both filter forms, every key overlayd accepts
    for query in (
        filters({"name": {name: True}}),
        filters({"name": [name]}),
        filters({"id": [net_id]}),
        filters({"label": [f"{label}=yes"]}),
        filters({"driver": ["bridge"], "scope": ["local"], "type": ["custom"], "name": [name]}),
        filters({"dangling": ["true"], "name": [name]}),
    ):
        listed = api.call("GET", f"/networks?{query}", expect=200)
        assert [n["Id"] for n in listed] == [net_id], query
    old = api.call("GET", "/v1.41/networks?" + filters({"name": [name]}), expect=200)
    assert [n["Id"] for n in old] == [net_id]
    assert api.call("GET", "/networks?filters=%7B%7D", expect=200)

    # connect: a static address and an automatic one (through a versioned route)
    c1, c2 = host.container("a"), host.container("b")
    api.call(
        "POST",
        f"/networks/{name}/connect",
        {
            "Container": c1.name,
            "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.123.1.200"}, "Aliases": ["web"]},
        },
        expect=200,
    )
    api.call("POST", f"/v1.41/networks/{net_id}/connect", {"Container": c2.name}, expect=200)
    containers = api.inspect(name)["Containers"]
    by_name = {ep["Name"]: (cid, ep) for cid, ep in containers.items()}
    assert set(by_name) == {c1.name, c2.name}
    assert by_name[c1.name][1]["IPv4Address"] == "10.123.1.200/24"
    assert by_name[c1.name][1]["MacAddress"] == "02:42:0a:7b:01:c8"
    assert by_name[c2.name][1]["IPv4Address"].startswith("10.123.1.")
    in_use = api.call(
        "GET", "/networks?" + filters({"dangling": ["false"], "name": [name]}), expect=200
    )
    assert [n["Id"] for n in in_use] == [net_id]
    assert in_use[0]["Containers"] == {}  # lists carry no endpoints from API 1.28 on
    old = api.call("GET", "/v1.27/networks?" + filters({"name": [name]}), expect=200)
    assert old[0]["Containers"] == containers

    api.error(
        "POST",
        f"/networks/{name}/connect",
        {"Container": c1.name},
        expect=403,
        contains=f"endpoint with name {c1.name} already exists in network {name}",
    )
    api.error(
        "DELETE",
        f"/networks/{name}",
        expect=403,
        contains=f"error while removing network: network {name} has active endpoints",
    )

    # disconnect by netns name, then by container ID
    api.call("POST", f"/networks/{name}/disconnect", {"Container": c1.name}, expect=200)
    c2_id = by_name[c2.name][0]
    body = {"Container": c2_id, "Force": False}
    api.call("POST", f"/v1.41/networks/{name}/disconnect", body, expect=200)
    assert api.inspect(name)["Containers"] == {}
    api.error("POST", f"/networks/{name}/disconnect", {"Container": c1.name}, expect=500,
              contains=f"is not connected to network {name}")  # fmt: skip
    ghost = unique("ghost")
    api.error("POST", f"/networks/{name}/disconnect", {"Container": ghost}, expect=404,
              contains=f"No such container: {ghost}")  # fmt: skip
    api.error("POST", f"/networks/{name}/disconnect", {"Container": ghost, "Force": True},
              expect=404, contains=ghost)  # fmt: skip

    api.remove(net_id)
    api.error("DELETE", f"/networks/{net_id}", expect=404, contains=f"network {net_id} not found")
    api.error("GET", f"/networks/{name}", expect=404, contains=f"network {name} not found")


def raw_json(data: bytes) -> dict[str, Any]:
    """Keyword arguments for Api.call/error sending `data` as a JSON body as-is."""
    return {"raw": data, "headers": {"Content-Type": JSON}}


def invalid(body: Any) -> dict[str, Any]:
    """Keyword arguments for a body the request schema rejects (sent unchecked)."""
    return {"body": body, "request_valid": False}


Case = tuple[dict[str, Any], int, str]  # (keyword arguments for Api.error, status, message part)


def expect_errors(api: Api, method: str, path: str, cases: list[Case]) -> None:
    for kw, status, contains in cases:
        api.error(method, path, expect=status, contains=contains, **kw)


def test_real_client_request_bodies(api: Api) -> None:
    """What docker CLI 28 and docker-py 7 actually send (nulls, empty strings, keys
    overlayd ignores) is valid for the request schemas and accepted by the daemon."""
    name = unique("cli")
    c1 = api.host.container("a")
    cli_create = {
        "Driver": "bridge", "Scope": "",
        "IPAM": {"Driver": "default", "Options": {}, "Config": []},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigOnly": False,
        "ConfigFrom": None, "Options": {}, "Labels": {}, "Name": name,
    }  # fmt: skip
    cli_connect = {
        "Container": c1.name,
        "EndpointConfig": {
            "IPAMConfig": {}, "Links": None, "Aliases": [], "MacAddress": "", "DriverOpts": {},
            "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None,
        },
    }  # fmt: skip
    doc = api.call("POST", "/v1.50/networks/create", cli_create, expect=201)
    api.created.append(doc["Id"])
    api.call("POST", f"/v1.50/networks/{name}/connect", cli_connect, expect=200)
    body = {"Container": c1.name, "Force": False}
    api.call("POST", f"/v1.50/networks/{name}/disconnect", body, expect=200)
    api.remove(doc["Id"])

    py_name = unique("py")
    py_create = {
        "Name": py_name, "Driver": "bridge", "Labels": {"k": "v"},
        "IPAM": {"Driver": "default", "Options": None, "Config": [
            {"Subnet": "10.123.5.0/24", "Gateway": "10.123.5.254"}]},
    }  # fmt: skip
    doc = api.call("POST", "/v1.51/networks/create", py_create, expect=201)
    api.created.append(doc["Id"])
    assert api.inspect(py_name)["IPAM"]["Options"] is None
    py_connect = {"Container": c1.name, "EndpointConfig": {"Aliases": ["a"]}}
    api.call("POST", f"/v1.51/networks/{doc['Id']}/connect", py_connect, expect=200)
    api.call("POST", f"/v1.51/networks/{doc['Id']}/disconnect", {"Container": c1.name},
             expect=200)  # fmt: skip
    api.remove(doc["Id"])


def test_create_errors(api: Api) -> None:
    huge = json.dumps({"Name": unique("big"), "Labels": {"x": "y" * (1 << 20)}}).encode()
    bad_subnet = {"Name": unique("bad"), "IPAM": {"Config": [{"Subnet": "10.1.2.0/33"}]}}
    bad_gateway = {"Config": [{"Subnet": "10.123.7.0/24", "Gateway": "10.123.7.0"}]}
    plain_text = {"raw": b'{"Name": "x"}', "headers": {"Content-Type": "text/plain"}}
    expect_errors(api, "POST", "/networks/create", [
        (raw_json(b'{"Name": '), 400, "invalid JSON"),
        (raw_json(b"[]"), 400, "invalid JSON"),
        (invalid({"Name": 5}), 400, "cannot unmarshal number"),
        (plain_text, 400, "unsupported Content-Type header (text/plain)"),
        ({"raw": b'{"Name": "x"}'}, 400, "Content-Type header"),
        ({"raw": b""}, 400, "invalid name: name is empty"),
        (invalid({"Name": ""}), 400, "invalid name: name is empty"),
        (invalid(bad_subnet), 400, "invalid network config"),
        ({"body": {"Name": "bridge"}}, 403,
         "operation is not permitted on predefined bridge network"),
        ({"body": {"Name": "none"}}, 403, "predefined none network"),
        ({"body": {"Name": unique("ov"), "Driver": "overlay"}}, 403,
         "This node is not a swarm manager."),
        ({"body": {"Name": unique("sw"), "Scope": "swarm"}}, 403,
         "cannot create a swarm scoped network when swarm is not active"),
        ({"body": {"Name": unique("mv"), "Driver": "macvlan"}}, 404, 'plugin "macvlan" not found'),
        ({"body": {"Name": unique("gw"), "IPAM": bad_gateway}}, 500,
         "failed to allocate gateway (10.123.7.0)"),
        (raw_json(huge), 413, "request body too large"),
    ])  # fmt: skip

    name = unique("dup")
    net_id = api.create(name, IPAM={"Config": [{"Subnet": "10.123.2.0/24"}]})
    overlapping = {"Name": unique("ovl"), "IPAM": {"Config": [{"Subnet": "10.123.2.128/25"}]}}
    expect_errors(api, "POST", "/networks/create", [
        ({"body": {"Name": name}}, 409, f"network with name {name} already exists"),
        ({"body": overlapping}, 403, "Pool overlaps"),
    ])  # fmt: skip
    api.remove(net_id)


def test_ambiguous_id_prefixes(api: Api) -> None:
    """dockerd 28 refuses duplicate names whatever CheckDuplicate says, even at API 1.41;
    ambiguity comes from ID prefixes. 17 networks: two share a first hex digit."""
    name = unique("amb")
    first = api.create(name, prefix="/v1.41", CheckDuplicate=False)
    api.error("POST", "/v1.41/networks/create", {"Name": name, "CheckDuplicate": False},
              expect=409, contains=f"network with name {name} already exists")  # fmt: skip
    ids = [first] + [api.create(unique("amb")) for _ in range(16)]
    prefix = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    connect = {"Container": api.host.container("a").name}
    api.error("GET", f"/networks/{prefix}", expect=400,
              contains=f"matches found based on ID prefix: network {prefix} is ambiguous")  # fmt: skip
    api.error("DELETE", f"/networks/{prefix}", expect=400, contains=f"network {prefix} is ambiguous (")
    api.error("POST", f"/networks/{prefix}/connect", connect, expect=400,
              contains="matches found on ID prefix)")  # fmt: skip
    for net_id in ids:
        api.remove(net_id)


def test_inspect_and_list_errors(api: Api) -> None:
    missing = unique("missing")
    api.error("GET", f"/networks/{missing}", expect=404, contains=f"network {missing} not found")
    api.error("GET", "/networks/bridge?scope=swarm", expect=404, contains="network bridge")
    api.error("GET", "/networks/bridge?verbose=maybe", expect=400,
              contains='strconv.ParseBool: parsing "maybe": invalid syntax')  # fmt: skip
    for query, status, contains in [
        (filters({"nope": ["x"]}), 400, "invalid filter 'nope'"),
        ("filters=%7Bnot-json", 400, "invalid filter"),
        (filters({"name": "x"}), 400, "invalid filter"),
        (filters({"dangling": ["maybe"]}), 400, "invalid value for filter 'dangling'"),
        (filters({"type": ["x"]}), 400, "invalid filter: 'type'='x'"),
    ]:
        api.error("GET", f"/networks?{query}", expect=status, contains=contains)


def test_delete_errors(api: Api) -> None:
    for name in ("bridge", "host", "none"):
        api.error("DELETE", f"/networks/{name}", expect=403,
                  contains=f"{name} is a pre-defined network and cannot be removed")  # fmt: skip
    missing = unique("missing")
    api.error("DELETE", f"/networks/{missing}", expect=404, contains=f"network {missing} not found")


def static_ip(container: str, address: str, key: str = "IPv4Address") -> dict[str, Any]:
    return {"body": {"Container": container, "EndpointConfig": {"IPAMConfig": {key: address}}}}


def test_connect_errors(api: Api) -> None:
    c1, c2 = api.host.container("a"), api.host.container("b")
    missing = unique("missing")
    expect_errors(api, "POST", f"/networks/{missing}/connect", [
        ({"body": {"Container": c1.name}}, 404, f"network {missing} not found"),
    ])  # fmt: skip
    expect_errors(api, "POST", "/networks/host/connect", [
        ({"body": {"Container": c1.name}}, 400, "connected to host network"),
    ])  # fmt: skip
    expect_errors(api, "POST", "/networks/none/connect", [
        ({"body": {"Container": c1.name}}, 400, "private (none) mode"),
    ])  # fmt: skip

    auto = api.create(unique("auto"))
    huge = json.dumps({"Container": c1.name, "Name": "n" * (1 << 20)}).encode()
    expect_errors(api, "POST", f"/networks/{auto}/connect", [
        (invalid({}), 400, "no container specified"),
        (raw_json(b"{"), 400, "invalid JSON"),
        (invalid({"Container": c1.name, "EndpointConfig": []}), 400, "cannot unmarshal array"),
        ({"body": {"Container": unique("nons")}}, 404, "No such container"),
        (static_ip(c1.name, "172.30.0.9"), 400, "user specified IP address is supported only"),
        (raw_json(huge), 413, "request body too large"),
    ])  # fmt: skip
    api.remove(auto)

    # a /30 holds one endpoint: .0 network, .1 gateway, .2 endpoint, .3 broadcast
    tiny_name = unique("tiny")
    tiny = api.create(tiny_name, IPAM={"Config": [{"Subnet": "10.123.3.0/30"}]})
    path = f"/networks/{tiny}/connect"
    expect_errors(api, "POST", path, [
        (static_ip(c1.name, "10.123.9.9"), 400,
         "no configured subnet or ip-range contain the IP address 10.123.9.9"),
        (static_ip(c1.name, "10.123.3.1"), 403, "Address already in use"),
        (static_ip(c1.name, "fd00::2", "IPv6Address"), 400, "invalid IPv6 address: fd00::2"),
    ])  # fmt: skip
    api.call("POST", path, {"Container": c1.name}, expect=200)
    exhausted = f"no available IPv4 addresses on this network's address pools: {tiny_name}"
    api.error("POST", path, {"Container": c2.name}, expect=500, contains=exhausted)
    api.call("POST", f"/networks/{tiny}/disconnect", {"Container": c1.name}, expect=200)
    api.remove(tiny)


def test_disconnect_errors(api: Api) -> None:
    c1 = api.host.container("a")
    missing = unique("missing")
    expect_errors(api, "POST", f"/networks/{missing}/disconnect", [
        ({"body": {"Container": c1.name}}, 404, f"network {missing} not found"),
    ])  # fmt: skip
    expect_errors(api, "POST", "/networks/host/disconnect", [
        ({"body": {"Container": c1.name}}, 400,
         "container cannot be disconnected from host network"),
    ])  # fmt: skip
    huge = json.dumps({"Container": "c" * (1 << 20)}).encode()
    expect_errors(api, "POST", "/networks/bridge/disconnect", [
        (invalid({"Force": True}), 400, "no container specified"),
        (invalid({"Container": c1.name, "Force": "yes"}), 400, "cannot unmarshal string"),
        (raw_json(b"nope"), 400, "invalid JSON"),
        ({"body": {"Container": c1.name}}, 500, "is not connected to network bridge"),
        ({"body": {"Container": unique("ghost")}}, 404, "No such container"),
        (raw_json(huge), 413, "request body too large"),
    ])  # fmt: skip


def test_prune(api: Api) -> None:
    tag = unique("prune")
    doomed = unique("doomed")
    kept = unique("kept")
    used = unique("used")
    doomed_id = api.create(doomed, Labels={tag: "1"})
    kept_id = api.create(kept, Labels={tag: "1", "keep": "yes"})
    used_id = api.create(used, Labels={tag: "1"})
    c1 = api.host.container("a")
    api.call("POST", f"/networks/{used}/connect", {"Container": c1.name}, expect=200)

    nothing = api.call(
        "POST", "/v1.41/networks/prune?" + filters({"label": [f"{tag}=2"]}), expect=200
    )
    assert nothing == {"NetworksDeleted": None}  # dockerd's nil slice
    query = filters(
        {
            "label": {tag: True},
            "label!": {"keep": True},
            "until": {str(int(time.time()) + 3600): True},
        }
    )
    doc = api.call("POST", f"/networks/prune?{query}", expect=200)
    assert doc["NetworksDeleted"] == [doomed]
    api.created.remove(doomed_id)
    api.error("GET", f"/networks/{doomed_id}", expect=404)
    api.inspect(kept)
    api.inspect(used)
    api.error(
        "POST",
        "/networks/prune?" + filters({"nope": ["x"]}),
        expect=400,
        contains="invalid filter 'nope'",
    )

    api.call("POST", f"/networks/{used}/disconnect", {"Container": c1.name}, expect=200)
    api.remove(kept_id)
    api.remove(used_id)


def test_events(api: Api) -> None:
    c1 = api.host.container("a")
    name = unique("ev")
    net_id = api.create(name)
    api.call("POST", f"/networks/{name}/connect", {"Container": c1.name}, expect=200)
    api.call("POST", f"/networks/{name}/disconnect", {"Container": c1.name}, expect=200)
    api.remove(net_id)
    until = f"{time.time():.9f}"

    events = api.call("GET", f"/events?since=0&until={until}", expect=200)
    mine = [e for e in events if e["Actor"]["ID"] == net_id]
    assert [e["Action"] for e in mine] == ["create", "connect", "disconnect", "destroy"]
    assert all(e["Type"] == "network" and e["scope"] == "local" for e in mine)
    assert mine[0]["Actor"]["Attributes"] == {"name": name, "type": "bridge"}
    assert mine[1]["Actor"]["Attributes"]["container"]
    assert all(e["time"] == e["timeNano"] // 1_000_000_000 for e in mine)

    query = filters(
        {"type": {"network": True}, "event": {"create": True}, "network": {net_id: True}}
    )
    only = api.call("GET", f"/v1.41/events?since=0&until={until}&{query}", expect=200)
    assert [(e["Action"], e["Actor"]["ID"]) for e in only] == [("create", net_id)]

    api.error("GET", f"/events?until={until}&filters=%5B", expect=400, contains="invalid filter")
    api.error(
        "GET",
        "/events?since=yesterday",
        expect=400,
        contains="failed to parse value as time or duration",
    )


# ----- swarm and nodes ---------------------------------------------------------------------


def test_swarm_reads_outside_a_swarm_are_503(api: Api) -> None:
    not_manager = 'This node is not a swarm manager. Use "docker swarm init"'
    for path in (
        "/swarm",
        "/v1.41/swarm",
        "/nodes",
        "/nodes?" + filters({"role": ["manager"]}),
        "/v1.47/nodes",
        "/nodes/abc",
        "/v1.51/nodes/node-1",
    ):
        api.error("GET", path, expect=503, contains=not_manager)
    api.error("GET", "/v1.23/nodes", expect=400, contains="too old")


def test_swarm_lifecycle_matches_the_contract(contract: Contract) -> None:
    """init, reads, updates, a join and leaves on two hosts, every answer checked."""
    from tests.integration.cluster import cluster_of

    with cluster_of(2, tag="oa") as c:
        a, b = Api(c.hosts[0], contract), Api(c.hosts[1], contract)
        node_id = a.call("POST", "/swarm/init", {"AdvertiseAddr": c.addr(0)}, expect=200)
        a.error("POST", "/swarm/init", {}, expect=503, contains="already part of a swarm")
        swarm = a.call("GET", "/swarm", expect=200)
        a.call("GET", "/v1.44/nodes", expect=200)
        node = a.call("GET", f"/nodes/{node_id}", expect=200)
        assert node["ManagerStatus"]["Leader"] is True
        a.call("POST", f"/nodes/{node_id}/update?version={node['Version']['Index']}",
               {"Role": "manager", "Availability": "active", "Labels": {"a": "b"}}, expect=200)  # fmt: skip
        a.error("POST", f"/nodes/{node_id}/update?version=1", {"Role": "manager"},
                expect=500, contains="out of sequence")  # fmt: skip
        a.call("POST", f"/swarm/update?version={swarm['Version']['Index']}&rotateWorkerToken=1",
               swarm["Spec"], expect=200)  # fmt: skip
        assert a.call("GET", "/swarm/unlockkey", expect=200) == {"UnlockKey": ""}
        a.error("POST", "/swarm/unlock", {"UnlockKey": "x"}, expect=409, contains="not locked")
        a.error("GET", "/nodes/nope", expect=404, contains="node nope not found")
        b.error("POST", "/swarm/join", {"RemoteAddrs": [], "JoinToken": "x"}, expect=400,
                contains="at least 1 RemoteAddr")  # fmt: skip
        token = a.call("GET", "/swarm", expect=200)["JoinTokens"]["Worker"]
        assert token != swarm["JoinTokens"]["Worker"]
        b.call("POST", "/swarm/join", {"RemoteAddrs": [f"{c.addr(0)}:2377"], "JoinToken": token,
                                       "AdvertiseAddr": c.addr(1)}, expect=200)  # fmt: skip
        b.error("GET", "/nodes", expect=503, contains="Worker nodes can't be used")
        wait_for(lambda: len(b.call("GET", "/debug/gossip", expect=200)["Members"]) == 2,
                 timeout=10, what="both nodes in the gossip member list")  # fmt: skip
        worker = next(n for n in a.call("GET", "/nodes", expect=200) if n["ID"] != node_id)
        a.error("DELETE", f"/nodes/{worker['ID']}", expect=400, contains="is not down")
        b.call("POST", "/swarm/leave", expect=200)
        a.call("DELETE", f"/nodes/{worker['ID']}?force=1", expect=200)
        a.error("POST", "/swarm/leave", expect=503,
                contains="Removing the last manager erases all current state of the swarm")  # fmt: skip
        a.call("POST", "/swarm/leave?force=1", expect=200)
        a.error("POST", "/swarm/leave", expect=503, contains="not part of a swarm")


# ----- coverage and the error media type --------------------------------------------------------


def test_every_operation_and_error_kind_was_exercised(
    request: pytest.FixtureRequest, spec: dict[str, Any], contract: Contract
) -> None:
    module_tests = [i for i in request.session.items if i.module is request.module]
    if len(module_tests) != len([n for n in dir(request.module) if n.startswith("test_")]):
        pytest.skip("only meaningful when the whole module runs")
    ops = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    exercised = {(m, t) for m, t, _ in contract.seen}
    assert ops <= exercised, f"operations never exercised: {sorted(ops - exercised)}"
    succeeded = {(m, t) for m, t, status in contract.seen if status < 300}
    for method, path in ops:
        declared = spec["paths"][path][method.lower()]["responses"]
        if any(code.startswith("2") for code in declared):
            assert (method, path) in succeeded, f"{method} {path} never answered with success"
    statuses = {status for _, _, status in contract.seen}
    for status in (200, 201, 204, 400, 403, 404, 409, 413, 500, 503):
        assert status in statuses, f"no test produced a {status}"


def test_errors_are_served_as_exactly_application_json(api: Api) -> None:
    """The Go client (docker CLI) parses the message only for Content-Type exactly
    `application/json`; with anything else it prints the raw body."""
    for method, path, body in [
        ("GET", f"/networks/{unique('missing')}", None),
        ("POST", "/networks/create", {"Name": "bridge"}),
        ("GET", "/nope", None),
        ("GET", "/swarm", None),
    ]:
        reply = api.host.request(method, path, body)
        assert reply.status >= 400
        assert reply.headers.get("Content-Type") == JSON, (
            f"{method} {path}: Content-Type {reply.headers.get('Content-Type')!r}"
        )
