"""A reduced large run (200 nodes) inside CI: dissemination, detection, idle bandwidth."""

from __future__ import annotations

from swim_scenarios import (
    NET,
    cluster,
    detection,
    idle_bandwidth,
    swim_dissemination,
    table_dissemination,
)


def test_200_nodes() -> None:
    net = cluster(200, 1, loss=0.05, networks=(NET,))
    bw = idle_bandwidth(net, 2.0)
    assert bw * 8 < 330_000 / 4, f"{bw * 8 / 1000:.1f} kbit/s per node"
    s = swim_dissemination(net)
    assert s.p999 is not None and s.p999 <= 1.0 and s.p100 is not None, s
    t = table_dissemination(net)
    assert t.p100 is not None and t.p100 <= 1.0, t
    d = detection(net, "n17", window=8.0)
    assert d.full is not None and d.full <= 4.0, d
