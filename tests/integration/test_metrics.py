"""GET /metrics: Prometheus text with API requests and latencies by route and status."""

from __future__ import annotations

from tests.integration.harness import Host


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_requests_counted_by_canonical_route_and_status(host: Host) -> None:
    host.request("GET", "/v1.41/networks")
    host.request("GET", "/networks")
    host.request("GET", "/networks/nosuch")
    reply = host.request("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    samples = _samples(reply.body.decode())
    # Versioned and unversioned calls share one route label.
    assert samples['overlayd_api_requests_total{method="GET",route="/networks",status="200"}'] == 2
    assert samples['overlayd_api_requests_total{method="GET",route="/networks/{id}",status="404"}'] == 1
    assert samples['overlayd_api_request_duration_seconds_count{method="GET",route="/networks"}'] == 2
