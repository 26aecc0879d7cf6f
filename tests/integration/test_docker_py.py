"""docker-py 7 against overlayd: what its users call, and the exceptions they catch."""

from __future__ import annotations

import docker
import pytest
from docker.types import IPAMConfig, IPAMPool

from tests.integration.harness import Host


@pytest.fixture
def client(host: Host):  # type: ignore[no-untyped-def]
    c = docker.DockerClient(base_url=f"unix://{host.socket}", version="auto")
    try:
        yield c
    finally:
        c.close()


def test_ping_version_info(client: docker.DockerClient) -> None:
    assert client.ping() is True
    assert client.api.api_version == "1.51"
    assert client.version()["MinAPIVersion"] == "1.24"
    assert client.info()["Swarm"]["LocalNodeState"] == "inactive"


def test_networks_crud(client: docker.DockerClient, host: Host) -> None:
    pool = IPAMPool(subnet="10.82.0.0/24", gateway="10.82.0.1")
    net = client.networks.create("py1", driver="bridge", ipam=IPAMConfig(pool_configs=[pool]),
                                 labels={"a": "b"})  # fmt: skip
    assert net.name == "py1" and len(net.id) == 64
    assert net.attrs["IPAM"]["Config"] == [{"Subnet": "10.82.0.0/24", "Gateway": "10.82.0.1"}]
    assert {n.name for n in client.networks.list()} == {"bridge", "host", "none", "py1"}
    assert [n.name for n in client.networks.list(names=["py1"])] == ["py1"]
    assert [n.name for n in client.networks.list(filters={"label": "a=b"})] == ["py1"]
    assert len(client.networks.list(greedy=True)) == 4
    c = host.container("py")
    net.connect(c.name, ipv4_address="10.82.0.7", aliases=["web"])
    net.reload()
    (ep,) = net.attrs["Containers"].values()
    assert ep["IPv4Address"] == "10.82.0.7/24"
    net.disconnect(c.name)
    net.reload()
    assert net.attrs["Containers"] == {}
    net.remove()
    with pytest.raises(docker.errors.NotFound):
        client.networks.get("py1")


def test_errors_become_docker_exceptions(client: docker.DockerClient) -> None:
    client.networks.create("pydup")
    with pytest.raises(docker.errors.APIError) as exc:
        client.networks.create("pydup")
    assert exc.value.status_code == 409
    assert "network with name pydup already exists" in exc.value.explanation
    with pytest.raises(docker.errors.APIError) as exc:
        client.networks.get("none").remove()
    assert exc.value.status_code == 403
    assert client.networks.prune()["NetworksDeleted"] == ["pydup"]
    assert client.networks.prune()["NetworksDeleted"] in (None, [])


def test_swarm_inactive(client: docker.DockerClient) -> None:
    # client.swarm tolerates 503 only; an inactive node must answer exactly that.
    with pytest.raises(docker.errors.APIError) as exc:
        client.api.inspect_swarm()
    assert exc.value.status_code == 503


def test_swarm_lifecycle_with_docker_py() -> None:
    """What docker-py's swarm users call: init (decodes the JSON-string node ID), the
    Swarm and Node models (ID, Version.Index), node update, join, network create with
    driver overlay, and leave(force=True)."""
    from tests.integration.cluster import cluster_of

    with cluster_of(2, tag="dp") as c:
        mgr = docker.DockerClient(base_url=f"unix://{c.hosts[0].socket}", version="auto")
        wrk = docker.DockerClient(base_url=f"unix://{c.hosts[1].socket}", version="auto")
        try:
            node_id = mgr.swarm.init(advertise_addr=c.addr(0), default_addr_pool=["10.90.0.0/16"],
                                     subnet_size=24)  # fmt: skip
            assert isinstance(node_id, str) and len(node_id) == 25
            mgr.swarm.reload()
            assert mgr.swarm.id and mgr.swarm.version > 0
            assert mgr.swarm.attrs["DefaultAddrPool"] == ["10.90.0.0/16"]
            token = mgr.swarm.attrs["JoinTokens"]["Worker"]
            assert wrk.swarm.join(remote_addrs=[f"{c.addr(0)}:2377"], join_token=token,
                                  advertise_addr=c.addr(1)) is True  # fmt: skip
            nodes = mgr.nodes.list()
            assert len(nodes) == 2 and {n.attrs["Spec"]["Role"] for n in nodes} == {"manager", "worker"}
            worker = mgr.nodes.list(filters={"role": "worker"})[0]
            assert worker.update({"Availability": "drain", "Role": "worker", "Labels": {"x": "1"}})
            worker.reload()
            assert worker.attrs["Spec"]["Availability"] == "drain"
            net = mgr.networks.create("dp-net", driver="overlay", attachable=True)
            assert net.attrs["Scope"] == "swarm"
            assert str(net.attrs["IPAM"]["Config"][0]["Subnet"]).startswith("10.90.")
            with pytest.raises(docker.errors.APIError) as exc:
                wrk.nodes.list()
            assert exc.value.status_code == 503
            assert wrk.swarm.leave(force=True) is True
            net.remove()
            assert mgr.swarm.leave(force=True) is True
            assert mgr.info()["Swarm"]["LocalNodeState"] == "inactive"
        finally:
            mgr.close()
            wrk.close()
