"""A seed replays exactly (same trace hash); another seed does not."""

from __future__ import annotations

from swim_net import SimNet


def run(seed: int) -> str:
    net = SimNet(seed, loss=0.1)
    net.add_node("h0", networks=["web"])
    for i in range(1, 6):
        net.add_node(f"h{i}", seeds=["h0"], networks=["web"])
    net.make_slow("h2", 0.1)
    net.run_for(3.0)
    net.crash("h5")
    net.run_for(3.0)
    return net.trace_hash()


def test_same_seed_same_trace() -> None:
    assert run(42) == run(42)


def test_other_seed_other_trace() -> None:
    assert run(42) != run(43)
