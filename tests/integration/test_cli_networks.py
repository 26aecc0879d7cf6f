"""The real docker CLI (28.2.2) against overlayd: every network command and its errors."""

from __future__ import annotations

import json

from tests.integration.harness import Host


def names(host: Host, *args: str) -> list[str]:
    out = host.docker("network", "ls", "--format", "{{.Name}}", *args).stdout
    return out.split()


def test_version_negotiation(host: Host) -> None:
    out = host.docker("version", "--format", "{{json .}}").stdout
    doc = json.loads(out)
    # CLI 28.2 speaks up to 1.50; it negotiates down from our maximum.
    assert doc["Client"]["ApiVersion"] == "1.50"
    assert doc["Server"]["ApiVersion"] == "1.51"
    assert doc["Server"]["MinAPIVersion"] == "1.24"
    info = json.loads(host.docker("info", "--format", "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "inactive"
    assert info["ControlAvailable"] is False


def test_predefined_networks(host: Host) -> None:
    out = host.docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout
    assert sorted(out.splitlines()) == ["bridge bridge local", "host host local", "none null local"]
    bridge = json.loads(host.docker("network", "inspect", "bridge").stdout)[0]
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"


def test_create_inspect_ls_rm(host: Host) -> None:
    net_id = host.docker("network", "create", "--label", "team=a", "n1").stdout.strip()
    assert len(net_id) == 64
    doc = json.loads(host.docker("network", "inspect", "n1").stdout)[0]
    assert doc["Id"] == net_id and doc["Driver"] == "bridge" and doc["Scope"] == "local"
    assert doc["Labels"] == {"team": "a"}
    assert doc["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"
    # Lookup by ID prefix works too.
    assert json.loads(host.docker("network", "inspect", net_id[:5]).stdout)[0]["Name"] == "n1"
    assert "n1" in names(host)
    assert host.docker("network", "rm", "n1").stdout.strip() == "n1"
    assert "n1" not in names(host)


def test_create_with_ipam_options(host: Host) -> None:
    host.docker(
        "network", "create", "--subnet", "10.80.0.0/24", "--ip-range", "10.80.0.128/25",
        "--gateway", "10.80.0.254", "--aux-address", "router=10.80.0.2", "--internal", "n2",
    )  # fmt: skip
    doc = json.loads(host.docker("network", "inspect", "n2").stdout)[0]
    assert doc["Internal"] is True
    assert doc["IPAM"]["Config"] == [
        {
            "Subnet": "10.80.0.0/24",
            "IPRange": "10.80.0.128/25",
            "Gateway": "10.80.0.254",
            "AuxiliaryAddresses": {"router": "10.80.0.2"},
        }
    ]


def test_filters(host: Host) -> None:
    host.docker("network", "create", "--label", "env=prod", "f-alpha")
    host.docker("network", "create", "--label", "env=dev", "f-beta")
    assert names(host, "--filter", "label=env=prod") == ["f-alpha"]
    assert sorted(names(host, "--filter", "label=env")) == ["f-alpha", "f-beta"]
    assert sorted(names(host, "--filter", "name=f-")) == ["f-alpha", "f-beta"]
    assert sorted(names(host, "--filter", "type=builtin")) == ["bridge", "host", "none"]
    assert sorted(names(host, "--filter", "type=custom")) == ["f-alpha", "f-beta"]
    assert names(host, "--filter", "driver=null") == ["none"]
    assert sorted(names(host, "--filter", "dangling=true")) == ["f-alpha", "f-beta"]
    alpha_id = json.loads(host.docker("network", "inspect", "f-alpha").stdout)[0]["Id"]
    assert names(host, "--filter", f"id={alpha_id[:10]}") == ["f-alpha"]
    bad = host.docker("network", "ls", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr
    bad = host.docker("network", "ls", "--filter", "type=weird", check=False)
    assert "invalid filter: 'type'='weird'" in bad.stderr


def test_errors(host: Host) -> None:
    host.docker("network", "create", "dup")
    r = host.docker("network", "create", "dup", check=False)
    assert r.returncode == 1 and "network with name dup already exists" in r.stderr
    r = host.docker("network", "create", "bridge", check=False)
    assert "operation is not permitted on predefined bridge network" in r.stderr
    r = host.docker("network", "create", "-d", "overlay", "ov", check=False)
    assert 'This node is not a swarm manager. Use "docker swarm init"' in r.stderr
    r = host.docker("network", "create", "--scope", "swarm", "sw", check=False)
    assert "cannot create a swarm scoped network when swarm is not active" in r.stderr
    r = host.docker("network", "rm", "host", check=False)
    assert "host is a pre-defined network and cannot be removed" in r.stderr
    r = host.docker("network", "inspect", "nosuch", check=False)
    assert r.returncode == 1 and "network nosuch not found" in r.stderr
    r = host.docker("network", "rm", "nosuch", check=False)
    assert r.returncode == 1 and "nosuch" in r.stderr
    r = host.docker("network", "create", "--subnet", "10.1.0.0/33", "badnet", check=False)
    assert r.returncode != 0
    assert "badnet" not in names(host)


def test_overlap_is_refused_and_changes_nothing(host: Host) -> None:
    host.docker("network", "create", "--subnet", "10.90.0.0/16", "o1")
    before = names(host)
    r = host.docker("network", "create", "--subnet", "10.90.5.0/24", "o2", check=False)
    assert r.returncode == 1 and "overlaps" in r.stderr.lower()
    assert names(host) == before


def test_connect_disconnect_and_inspect(host: Host) -> None:
    host.docker("network", "create", "--subnet", "10.81.0.0/24", "cn")
    c1 = host.container("a")
    host.docker("network", "connect", "--ip", "10.81.0.50", "cn", c1.name)
    doc = json.loads(host.docker("network", "inspect", "cn").stdout)[0]
    (ep,) = doc["Containers"].values()
    assert ep["Name"] == c1.name
    assert ep["IPv4Address"] == "10.81.0.50/24"
    assert ep["MacAddress"] == "02:42:0a:51:00:32"
    # The netns really got it.
    addr = c1.sh("ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "10.81.0.50/24" in addr
    r = host.docker("network", "connect", "cn", c1.name, check=False)
    assert r.returncode == 1 and "already exists in network cn" in r.stderr
    r = host.docker("network", "rm", "cn", check=False)
    assert "has active endpoints" in r.stderr
    host.docker("network", "disconnect", "cn", c1.name)
    assert json.loads(host.docker("network", "inspect", "cn").stdout)[0]["Containers"] == {}
    assert c1.sh("ip", "link", "show", "eth0", check=False).returncode != 0
    r = host.docker("network", "disconnect", "cn", c1.name, check=False)
    assert r.returncode == 1 and "is not connected to network cn" in r.stderr
    # dockerd ignores --force for a known container that is not attached (a 500 there too).
    r = host.docker("network", "disconnect", "--force", "cn", c1.name, check=False)
    assert r.returncode == 1 and "is not connected to network cn" in r.stderr
    r = host.docker("network", "disconnect", "--force", "cn", "ghost", check=False)
    assert r.returncode == 1 and "endpoint ghost not found" in r.stderr
    r = host.docker("network", "connect", "cn", "no-such-netns", check=False)
    assert r.returncode == 1 and "No such container: no-such-netns" in r.stderr


def test_static_ip_needs_user_subnet(host: Host) -> None:
    host.docker("network", "create", "auto")
    c = host.container("s")
    r = host.docker("network", "connect", "--ip", "172.18.0.9", "auto", c.name, check=False)
    assert (
        "user specified IP address is supported only when connecting to networks with user configured subnets"
        in r.stderr
    )


def test_prune(host: Host) -> None:
    host.docker("network", "create", "p1")
    host.docker("network", "create", "--label", "keep=yes", "p2")
    host.docker("network", "create", "p3")
    c = host.container("p")
    host.docker("network", "connect", "p3", c.name)
    out = host.docker("network", "prune", "-f", "--filter", "label!=keep").stdout
    assert "p1" in out and "p2" not in out
    assert sorted(names(host)) == ["bridge", "host", "none", "p2", "p3"]
    out = host.docker("network", "prune", "-f").stdout
    assert "p2" in out
    assert sorted(names(host)) == ["bridge", "host", "none", "p3"]


def test_automatic_subnets_avoid_the_hosts_own_routes() -> None:
    from tests.integration.harness import make_host

    h = make_host()
    try:
        # The host already reaches 172.17.0.0/16 and 172.19.0.0/16 through its uplink.
        h.ns.sh("ip", "route", "add", "172.17.0.0/16", "via", "198.51.100.1")
        h.ns.sh("ip", "route", "add", "172.19.0.0/16", "via", "198.51.100.1")
        h.start()
        subnet = json.loads(h.docker("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"]
        assert subnet == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
        h.docker("network", "create", "next")
        doc = json.loads(h.docker("network", "inspect", "next").stdout)[0]
        assert doc["IPAM"]["Config"][0]["Subnet"] == "172.20.0.0/16"
        # An explicit subnet is the user's call, as with dockerd.
        h.docker("network", "create", "--subnet", "172.17.5.0/24", "explicit")
    finally:
        h.close()
