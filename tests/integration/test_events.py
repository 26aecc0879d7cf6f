"""/events streams network events in Docker's format, with since, until and filters."""

from __future__ import annotations

import json
import subprocess
import time

from tests.integration.harness import DOCKER, Host, UnixHTTPConnection


def _events(host: Host, query: str) -> list[dict]:
    reply = host.request("GET", f"/events?{query}", timeout=20)
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == "application/json"
    return [json.loads(line) for line in reply.body.decode().splitlines() if line]


def test_history_with_since_until_and_filters(host: Host) -> None:
    start = time.time()
    host.docker("network", "create", "ev1")
    c = host.container("e")
    host.docker("network", "connect", "ev1", c.name)
    host.docker("network", "disconnect", "ev1", c.name)
    host.docker("network", "rm", "ev1")
    until = time.time()
    evs = _events(host, f"since={start:.9f}&until={until:.9f}")
    assert [e["Action"] for e in evs] == ["create", "connect", "disconnect", "destroy"]
    net_id = evs[0]["Actor"]["ID"]
    for ev in evs:
        assert ev["Type"] == "network" and ev["scope"] == "local"
        assert ev["Actor"]["ID"] == net_id
        assert ev["Actor"]["Attributes"]["name"] == "ev1"
        assert ev["Actor"]["Attributes"]["type"] == "bridge"
        assert isinstance(ev["time"], int) and ev["timeNano"] // 1_000_000_000 == ev["time"]
    assert len(evs[1]["Actor"]["Attributes"]["container"]) == 64
    only = _events(host, f"since={start:.9f}&until={until:.9f}&filters="
                   '%7B%22event%22%3A%5B%22connect%22%5D%7D')  # fmt: skip
    assert [e["Action"] for e in only] == ["connect"]
    none = _events(host, f"since={start:.9f}&until={until:.9f}&filters="
                   '%7B%22network%22%3A%5B%22other%22%5D%7D')  # fmt: skip
    assert none == []
    # dockerd ignores unknown event filter keys (nothing matches them, nothing fails).
    assert _events(host, f"since={start:.9f}&until={until:.9f}&filters=%7B%22colour%22%3A%5B%22x%22%5D%7D")
    # Only `until`: the buffer is replayed up to it.
    assert [e["Action"] for e in _events(host, f"until={until:.9f}")][-4:] == [
        "create", "connect", "disconnect", "destroy",
    ]  # fmt: skip
    bad = host.request("GET", "/events?since=100&until=50")
    assert bad.status == 400
    assert bad.json()["message"] == "`since` time (100) cannot be after `until` time (50)"
    bad = host.request("GET", "/events?since=yesterday")
    assert bad.status == 400


def test_live_stream_via_docker_cli(host: Host) -> None:
    proc = subprocess.Popen(
        [DOCKER, "events", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
         "--filter", "type=network"],
        env=host.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Wait until the CLI's stream is registered, then act.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info = host.request("GET", "/info").json()
            if info["NEventsListener"] >= 1:
                break
            time.sleep(0.02)
        host.docker("network", "create", "live1")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "network create live1"
        host.docker("network", "rm", "live1")
        assert proc.stdout.readline().strip() == "network destroy live1"
    finally:
        proc.terminate()
        proc.wait(10)


def test_stream_headers_arrive_before_any_event(host: Host) -> None:
    conn = UnixHTTPConnection(host.socket, timeout=5)
    try:
        conn.request("GET", "/v1.47/events")
        resp = conn.getresponse()  # returns as soon as headers are flushed
        assert resp.status == 200
        assert resp.headers["Api-Version"] == "1.51"
        assert resp.headers["Content-Type"] == "application/json"
    finally:
        conn.close()


def test_bounds_out_of_range_are_a_clear_400_before_the_stream(host: Host) -> None:
    """Go's int64 bounds dockerd's timestamps; beyond them it is a 400, not a 500 written
    into an already started stream (the client saw 'invalid character in chunk size')."""
    for query in ("until=" + "9" * 400, "since=" + "9" * 5000, "until=" + "9" * 400 + "h"):
        reply = host.request("GET", f"/events?{query}", timeout=10)
        assert reply.status == 400, (query[:12], reply.status)
        assert "failed to parse value as time or duration" in reply.json()["message"]
    # a prune with a negative duration looks ahead, as Go's reference.Add(-d) does
    host.docker("network", "create", "ahead")
    pruned = host.request("POST", '/networks/prune?filters={"until":["-1h"]}').json()
    assert "ahead" in (pruned["NetworksDeleted"] or [])
