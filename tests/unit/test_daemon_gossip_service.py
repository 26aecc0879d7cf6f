"""GossipService's own bookkeeping around the agent: one record the wire cannot carry does
not stop the others, and a host declared dead again starts out presumed alive again."""

from __future__ import annotations

import asyncio

from daemon.gossip_service import GossipService
from daemon.records import EndpointRecord
from gossip.agent import GossipAgent
from gossip.events import MemberDead


def _ep(i: int, alias: str = "x") -> EndpointRecord:
    return EndpointRecord(id=f"ep{i}", network_id="net1", container_id="c",
                          container_name=f"c{i}", netns_path="", netns_key="", ifname="eth0",
                          ipv4=f"10.0.0.{i}/24", mac=f"02:42:0a:00:00:0{i}", aliases=[alias])  # fmt: skip


def test_one_unpublishable_endpoint_does_not_stop_the_others() -> None:
    async def scenario() -> None:
        eps = [_ep(1), _ep(2, "a" * 300), _ep(3)]
        svc = GossipService(swarm=None, store=None, local_endpoints=lambda: eps,
                            on_change=lambda: None)  # type: ignore[arg-type]  # fmt: skip
        agent = GossipAgent("me", [b"k" * 32], bind_addr="127.0.0.1", bind_port=0)
        await agent.start()
        svc.agent = agent
        try:
            for _ in range(3):
                svc._publish_local("192.0.2.1")
            assert sorted(agent.entries("net1")) == ["ep1", "ep3"]
            eps[:] = [_ep(3)]  # ep1 goes: withdrawn, though ep2 still cannot be published
            svc._publish_local("192.0.2.1")
            assert sorted(agent.entries("net1")) == ["ep3"]
        finally:
            await agent.stop(leave=False)

    asyncio.run(scenario())


def test_a_host_dead_again_is_presumed_alive_until_its_kernel_says_otherwise() -> None:
    async def scenario() -> None:
        svc = GossipService(swarm=None, store=None, local_endpoints=list,
                            on_change=lambda: None)  # type: ignore[arg-type]  # fmt: skip
        old_probe = asyncio.create_task(asyncio.sleep(10))
        svc._probes["h2"] = old_probe  # still running from its previous death
        svc._kernel_alive["h2"] = False  # that probe's last verdict
        svc._member_event(MemberDead("h2", 1, "h1"))
        assert svc._kernel_alive["h2"] is True
        old_probe.cancel()

    asyncio.run(scenario())


def test_the_echo_sent_at_suspicion_decides_at_death(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The host's kernel is asked when its daemon is first suspected; if it did not answer,
    the death verdict takes the entries away at once instead of one more echo later (the
    kill-to-FDB-gone figure). If it answered, the host is kept, as before."""
    import daemon.gossip_service as gs
    from gossip.events import MemberSuspect

    answers = {"10.1.0.2": False, "10.1.0.3": True}

    async def fake_echo(addr: str) -> bool:  # the ICMP itself is tested in test_dataplane_reach
        return answers[addr]

    monkeypatch.setattr(gs, "host_answers", fake_echo)

    class View:
        nodes = {"h2": type("N", (), {"addr": "10.1.0.2"})(),
                 "h3": type("N", (), {"addr": "10.1.0.3"})()}  # fmt: skip

    class Swarm:
        def view(self) -> View:
            return View()

    async def scenario() -> None:
        changes: list[int] = []
        svc = GossipService(swarm=Swarm(), store=None, local_endpoints=list,
                            on_change=lambda: changes.append(1))  # type: ignore[arg-type]  # fmt: skip
        for name in ("h2", "h3"):
            svc._member_event(MemberSuspect(name, 1, "h1"))
        while svc._suspect_checks:
            await asyncio.sleep(0.01)
        svc._member_event(MemberDead("h2", 1, "h1"))
        svc._member_event(MemberDead("h3", 1, "h1"))
        assert svc._kernel_alive == {"h2": False, "h3": True}
        assert changes  # h2's entries go on this change
        for task in svc._probes.values():
            task.cancel()

    asyncio.run(scenario())
