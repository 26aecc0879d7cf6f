"""daemon.ipam: Docker's subnet choice, IPAM.Config validation and serial address allocation.

Expected messages are dockerd's (moby 25-28); the source of each is noted in daemon/ipam.py.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager.errors import Forbidden, InvalidParameter, SystemError_, Unavailable
from manager.ipam import (
    DEFAULT_GLOBAL_POOLS,
    DEFAULT_LOCAL_POOLS,
    AddressPool,
    IpamConfig,
    PoolSpec,
    mac_for,
    overlaps,
    parse_ipam_config,
)

A = IPv4Address
N = IPv4Network
OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"
NO_MORE_SUBNETS = "all predefined address pools have been fully subnetted"
IN_USE = "Address already in use"


def parse(raw, used=(), **kw):
    return parse_ipam_config(raw, used_subnets=[N(u) for u in used], **kw)


def one(raw, used=(), **kw) -> IpamConfig:
    (cfg,) = parse(raw, used, **kw)
    return cfg


def error(exc_type, raw, used=(), **kw) -> str:
    with pytest.raises(exc_type) as info:
        parse(raw, used, **kw)
    assert type(info.value) is exc_type
    return info.value.message


def invalid(raw, **kw) -> str:
    """The message of a 400 from validation, without Docker's fixed preamble."""
    msg = error(InvalidParameter, raw, **kw)
    assert msg.startswith("invalid network config:\n")
    return msg.removeprefix("invalid network config:\n")


def local_subnets() -> list[N]:
    """Every subnet the default local pools hand out, in Docker's order."""
    return [s for p in DEFAULT_LOCAL_POOLS for s in p.base.subnets(new_prefix=p.size)]


# --- default pools ----------------------------------------------------------------------------


def test_default_local_pools_are_dockers_31_subnets_in_order():
    subnets = local_subnets()
    assert subnets[:15] == [N(f"172.{i}.0.0/16") for i in range(17, 32)]
    assert subnets[15:] == [N(f"192.168.{16 * i}.0/20") for i in range(16)]
    assert len(subnets) == 31


def test_default_global_pool_is_10_slash_8_in_24s():
    pools = DEFAULT_GLOBAL_POOLS
    assert pools == (PoolSpec(N("10.0.0.0/8"), 24),)


def test_pool_spec_rejects_a_size_outside_its_base():
    with pytest.raises(ValueError):
        PoolSpec(N("10.0.0.0/16"), 8)
    with pytest.raises(ValueError):
        PoolSpec(N("10.0.0.0/16"), 33)


# --- automatic subnet ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, []])
def test_no_config_takes_the_first_default_subnet_with_first_host_as_gateway(raw):
    cfg = one(raw)
    assert cfg == IpamConfig(N("172.17.0.0/16"), A("172.17.0.1"))
    assert cfg.to_docker() == {"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}


def test_automatic_subnet_skips_used_ones_first_fit():
    assert one(None, used=["172.17.0.0/16"]).subnet == N("172.18.0.0/16")
    assert one(None, used=["172.17.0.0/16", "172.19.0.0/16"]).subnet == N("172.18.0.0/16")
    assert one(None, used=["172.18.0.0/16"]).subnet == N("172.17.0.0/16")


def test_automatic_subnet_skips_a_default_subnet_partly_used():
    cfg = one(None, used=["172.17.0.0/16", "172.18.5.0/24"])
    assert cfg == IpamConfig(N("172.19.0.0/16"), A("172.19.0.1"))


def test_automatic_subnet_skips_a_used_supernet():
    assert one(None, used=["172.16.0.0/12"]).subnet == N("192.168.0.0/20")


def test_automatic_subnet_falls_back_to_192_168_in_20s():
    used = [f"172.{i}.0.0/16" for i in range(17, 32)]
    cfg = one(None, used=used)
    assert cfg == IpamConfig(N("192.168.0.0/20"), A("192.168.0.1"))
    assert one(None, used=[*used, "192.168.0.0/20"]).subnet == N("192.168.16.0/20")
    assert one(None, used=[*used, "192.168.1.0/24"]).subnet == N("192.168.16.0/20")


def test_automatic_subnet_takes_the_last_free_one():
    used = [str(s) for s in local_subnets()[:-1]]
    assert one(None, used=used).subnet == N("192.168.240.0/20")


@pytest.mark.parametrize(
    "used",
    [[str(s) for s in local_subnets()], ["172.16.0.0/12", "192.168.0.0/16"], ["0.0.0.0/0"]],
)
def test_default_pools_exhausted_is_dockers_message(used):
    assert error(InvalidParameter, None, used=used) == NO_MORE_SUBNETS


def test_exclude_avoids_host_routes_for_automatic_subnets_only():
    got = parse(None, exclude=[N("172.17.0.0/16")])
    assert got[0].subnet == N("172.18.0.0/16")
    # a subnet the user names may still overlap a host route, as with dockerd
    got = parse([{"Subnet": "172.17.0.0/16"}], exclude=[N("172.17.0.0/16")])
    assert got[0].subnet == N("172.17.0.0/16")


def test_custom_pools_are_used_in_address_order():
    pools = [PoolSpec(N("10.20.0.0/16"), 24), PoolSpec(N("10.10.0.0/16"), 24)]
    assert one(None, pools=pools).subnet == N("10.10.0.0/24")
    assert one(None, used=["10.10.0.0/16"], pools=pools).subnet == N("10.20.0.0/24")
    assert one(None, pools=DEFAULT_GLOBAL_POOLS, used=["10.0.0.0/24"]).subnet == N("10.0.1.0/24")


def test_global_pool_jumps_over_many_used_subnets():
    used = [N("10.0.0.0/9")] + [N(f"10.128.{i}.0/24") for i in range(200)]
    got = parse_ipam_config(None, used_subnets=used, pools=DEFAULT_GLOBAL_POOLS)
    assert got[0].subnet == N("10.128.200.0/24")


def test_no_default_gateway_leaves_the_network_without_one():
    cfg = one(None, default_gateway=False)
    assert cfg.gateway is None
    assert cfg.to_docker() == {"Subnet": "172.17.0.0/16"}
    assert one([{"Subnet": "10.1.0.0/24"}], default_gateway=False).gateway is None
    # a gateway the user names is still taken
    given = one([{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.9"}], default_gateway=False)
    assert given.gateway == A("10.1.0.9")


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 30), max_size=31), st.integers(0, 30))
def test_automatic_subnet_is_the_first_that_overlaps_nothing(used_idx, extra):
    subnets = local_subnets()
    used = [subnets[i] for i in used_idx]
    # plus one /24 inside some default subnet, so partial overlaps occur too
    used.append(next(subnets[extra].subnets(new_prefix=24)))
    free = [s for s in subnets if not any(s.overlaps(u) for u in used)]
    if not free:
        with pytest.raises(InvalidParameter, match=NO_MORE_SUBNETS):
            parse_ipam_config(None, used_subnets=used)
        return
    (cfg,) = parse_ipam_config(None, used_subnets=used)
    assert cfg.subnet == free[0]
    assert cfg.gateway == free[0].network_address + 1


# --- user configuration ------------------------------------------------------------------------


def test_user_subnet_gets_the_first_host_as_gateway():
    cfg = one([{"Subnet": "10.5.0.0/24"}])
    assert cfg == IpamConfig(N("10.5.0.0/24"), A("10.5.0.1"))


def test_user_subnet_gateway_ip_range_and_aux():
    raw = [
        {
            "Subnet": "10.5.0.0/16",
            "IPRange": "10.5.1.0/24",
            "Gateway": "10.5.0.254",
            "AuxiliaryAddresses": {"router": "10.5.0.2", "dns": "10.5.1.3"},
        }
    ]
    cfg = one(raw)
    assert cfg.subnet == N("10.5.0.0/16")
    assert cfg.ip_range == N("10.5.1.0/24")
    assert cfg.gateway == A("10.5.0.254")
    assert cfg.aux == {"router": A("10.5.0.2"), "dns": A("10.5.1.3")}
    assert cfg.to_docker() == {
        "Subnet": "10.5.0.0/16",
        "IPRange": "10.5.1.0/24",
        "Gateway": "10.5.0.254",
        "AuxiliaryAddresses": {"dns": "10.5.1.3", "router": "10.5.0.2"},
    }
    assert list(cfg.to_docker()) == ["Subnet", "IPRange", "Gateway", "AuxiliaryAddresses"]


def test_gateway_defaults_to_the_first_address_of_the_ip_range_as_in_docker():
    # dockerd asks IPAM for the gateway from the pool's sub-range; its first address is
    # free (only the subnet's own network address is reserved)
    assert one([{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.128/25"}]).gateway == A("10.0.0.128")
    assert one([{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/25"}]).gateway == A("10.0.0.1")
    assert one([{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/24"}]).gateway == A("10.0.0.1")


def test_gateway_outside_the_ip_range_is_fine():
    cfg = one([{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.128/25", "Gateway": "10.0.0.1"}])
    assert cfg.gateway == A("10.0.0.1")


def test_several_entries_are_kept_in_order():
    got = parse([{"Subnet": "10.1.0.0/24"}, {"Subnet": "10.2.0.0/24", "Gateway": "10.2.0.7"}])
    assert got == [
        IpamConfig(N("10.1.0.0/24"), A("10.1.0.1")),
        IpamConfig(N("10.2.0.0/24"), A("10.2.0.7")),
    ]


def test_keys_match_case_insensitively_and_null_means_unset_like_go():
    cfg = one([{"subnet": "10.1.0.0/24", "GATEWAY": None, "iprange": "", "Other": 5}])
    assert cfg == IpamConfig(N("10.1.0.0/24"), A("10.1.0.1"))
    cfg = one([{"Subnet": "10.1.0.0/24", "AuxiliaryAddresses": None, "IPRange": None}])
    assert cfg == IpamConfig(N("10.1.0.0/24"), A("10.1.0.1"))


def test_slash_31_has_no_network_or_broadcast_address():
    cfg = one([{"Subnet": "10.9.0.0/31"}])
    assert cfg.gateway == A("10.9.0.0")
    assert one([{"Subnet": "10.9.0.0/31", "Gateway": "10.9.0.1"}]).gateway == A("10.9.0.1")


def test_slash_32_gateway_is_its_only_address():
    assert one([{"Subnet": "10.9.0.7/32"}]).gateway == A("10.9.0.7")


# --- validation errors (api/types/network/ipam.go ValidateIPAM) -----------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({}, "invalid subnet : invalid CIDR block notation"),
        ({"Gateway": "10.0.0.1"}, "invalid subnet : invalid CIDR block notation"),
        ({"Subnet": "10.0.0.0"}, "invalid subnet 10.0.0.0: invalid CIDR block notation"),
        ({"Subnet": "10.0.0.0/33"}, "invalid subnet 10.0.0.0/33: invalid CIDR block notation"),
        ({"Subnet": "10.0.0.0/024"}, "invalid subnet 10.0.0.0/024: invalid CIDR block notation"),
        ({"Subnet": "10.0.0.0/+8"}, "invalid subnet 10.0.0.0/+8: invalid CIDR block notation"),
        (
            {"Subnet": "10.0.0.0/255.0.0.0"},
            "invalid subnet 10.0.0.0/255.0.0.0: invalid CIDR block notation",
        ),
        ({"Subnet": "010.0.0.0/8"}, "invalid subnet 010.0.0.0/8: invalid CIDR block notation"),
        ({"Subnet": "bogus"}, "invalid subnet bogus: invalid CIDR block notation"),
        ({"Subnet": "10.0.0.5/24"}, "invalid subnet 10.0.0.5/24: it should be 10.0.0.0/24"),
        ({"Subnet": "fd00::/64"}, "invalid subnet fd00::/64: only IPv4 subnets are supported"),
        (
            {"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.x/25"},
            "invalid ip-range 10.0.0.x/25: invalid CIDR block notation",
        ),
        (
            {"Subnet": "10.0.0.0/24", "IPRange": "fd00::/120"},
            "invalid ip-range fd00::/120: parent subnet is an IPv4 block",
        ),
        (
            {"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/16"},
            "invalid ip-range 10.0.0.0/16: CIDR block is bigger than its parent subnet 10.0.0.0/24",
        ),
        (
            {"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.5/30"},
            "invalid ip-range 10.0.0.5/30: it should be 10.0.0.4/30",
        ),
        (
            {"Subnet": "10.0.0.0/24", "IPRange": "10.0.1.0/25"},
            "invalid ip-range 10.0.1.0/25: parent subnet 10.0.0.0/24 doesn't contain ip-range",
        ),
        (
            {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.256"},
            "invalid gateway 10.0.0.256: invalid address",
        ),
        (
            {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1/24"},
            "invalid gateway 10.0.0.1/24: invalid address",
        ),
        (
            {"Subnet": "10.0.0.0/24", "Gateway": "fd00::1"},
            "invalid gateway fd00::1: parent subnet is an IPv4 block",
        ),
        (
            {"Subnet": "10.0.0.0/24", "Gateway": "10.1.0.1"},
            "invalid gateway 10.1.0.1: parent subnet 10.0.0.0/24 doesn't contain this address",
        ),
        (
            {"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"host": "nope"}},
            "invalid auxiliary address host: invalid address",
        ),
        (
            {"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"host": ""}},
            "invalid auxiliary address host: invalid address",
        ),
        (
            {"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"host": "::1"}},
            "invalid auxiliary address host: parent subnet is an IPv4 block",
        ),
        (
            {"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"host": "10.0.9.9"}},
            "invalid auxiliary address host: "
            "parent subnet 10.0.0.0/24 doesn't contain this address",
        ),
    ],
)
def test_each_validation_error_is_dockers_text(entry, message):
    assert invalid([entry]) == message


def test_unmasked_subnet_is_an_error_not_normalized_and_is_quoted_as_given():
    assert invalid([{"Subnet": "10.0.0.5/24", "Gateway": "10.1.0.1"}]) == (
        "* invalid subnet 10.0.0.5/24: it should be 10.0.0.0/24\n"
        "* invalid gateway 10.1.0.1: parent subnet 10.0.0.5/24 doesn't contain this address"
    )


def test_all_problems_of_all_entries_are_listed_in_order():
    raw = [
        {"Subnet": "nope"},
        {
            "Subnet": "10.0.0.0/24",
            "IPRange": "10.0.1.5/16",
            "Gateway": "x",
            "AuxiliaryAddresses": {"a": "10.0.0.3", "b": "10.9.0.1"},
        },
        {"Subnet": "fd00::/64"},
    ]
    assert invalid(raw) == (
        "* invalid subnet nope: invalid CIDR block notation\n"
        "* invalid ip-range 10.0.1.5/16: CIDR block is bigger than its parent subnet 10.0.0.0/24\n"
        "* invalid ip-range 10.0.1.5/16: it should be 10.0.0.0/16\n"
        "* invalid gateway x: invalid address\n"
        "* invalid auxiliary address b: parent subnet 10.0.0.0/24 doesn't contain this address\n"
        "* invalid subnet fd00::/64: only IPv4 subnets are supported"
    )


def test_validation_comes_before_overlap_checks():
    raw = [{"Subnet": "172.17.0.0/16"}, {"Subnet": "bad"}]
    assert invalid(raw, used=["172.17.0.0/16"]) == "invalid subnet bad: invalid CIDR block notation"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"Subnet": "10.0.0.0/24"},
            "invalid JSON: json: cannot unmarshal object into Go struct field "
            "IPAM.IPAM.Config of type []network.IPAMConfig",
        ),
        (
            ["10.0.0.0/24"],
            "invalid JSON: json: cannot unmarshal string into Go struct field "
            "IPAM.IPAM.Config of type network.IPAMConfig",
        ),
        (
            [{"Subnet": 10}],
            "invalid JSON: json: cannot unmarshal number into Go struct field "
            "IPAMConfig.IPAM.Config.Subnet of type string",
        ),
        (
            [{"Subnet": "10.0.0.0/24", "Gateway": True}],
            "invalid JSON: json: cannot unmarshal bool into Go struct field "
            "IPAMConfig.IPAM.Config.Gateway of type string",
        ),
        (
            [{"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": ["a"]}],
            "invalid JSON: json: cannot unmarshal array into Go struct field "
            "IPAMConfig.IPAM.Config.AuxiliaryAddresses of type map[string]string",
        ),
        (
            [{"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"a": 1}}],
            "invalid JSON: json: cannot unmarshal number into Go struct field "
            "IPAMConfig.IPAM.Config.AuxiliaryAddresses of type string",
        ),
    ],
)
def test_wrong_json_types_are_rejected_like_gos_decoder(raw, message):
    assert error(InvalidParameter, raw) == message


# --- allocation errors (libnetwork) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("subnet", "used"),
    [
        ("172.17.0.0/16", ["172.17.0.0/16"]),
        ("172.17.5.0/24", ["172.17.0.0/16"]),
        ("172.16.0.0/12", ["172.17.0.0/16"]),
        ("10.0.0.0/8", ["192.168.0.0/20", "10.200.0.0/24"]),
    ],
)
def test_overlap_with_a_used_subnet_is_dockers_403(subnet, used):
    assert error(Forbidden, [{"Subnet": subnet}], used=used) == OVERLAP


def test_overlap_is_checked_even_with_an_ip_range():
    # dockerd skips the check when --ip-range is given (moby#46756); overlayd doesn't
    raw = [{"Subnet": "172.17.0.0/16", "IPRange": "172.17.1.0/24"}]
    assert error(Forbidden, raw, used=["172.17.0.0/16"]) == OVERLAP


@pytest.mark.parametrize(
    "second", ["10.1.0.0/24", "10.1.0.128/25", "10.0.0.0/8"], ids=["same", "inside", "around"]
)
def test_entries_overlapping_each_other_are_dockers_403(second):
    assert error(Forbidden, [{"Subnet": "10.1.0.0/24"}, {"Subnet": second}]) == OVERLAP


def test_adjacent_subnets_do_not_overlap():
    got = parse([{"Subnet": "10.1.0.0/24"}, {"Subnet": "10.1.1.0/24"}], used=["10.1.2.0/24"])
    assert [c.subnet for c in got] == [N("10.1.0.0/24"), N("10.1.1.0/24")]


@pytest.mark.parametrize("gateway", ["10.0.0.0", "10.0.0.255"])
def test_gateway_on_network_or_broadcast_address_is_dockers_500(gateway):
    msg = error(SystemError_, [{"Subnet": "10.0.0.0/24", "Gateway": gateway}])
    assert msg == f"failed to allocate gateway ({gateway}): Address already in use"


def test_gateway_that_cannot_be_chosen_is_dockers_500():
    raw = [{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/32"}]
    msg = error(SystemError_, raw)
    assert msg == "failed to allocate gateway (): no available addresses on this pool"
    # without a gateway to choose there is nothing to fail
    assert one(raw, default_gateway=False).gateway is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            # the automatic gateway is taken first, then the aux address collides with it
            {"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"router": "10.0.0.1"}},
            "failed to allocate secondary ip address (router:10.0.0.1): Address already in use",
        ),
        (
            {
                "Subnet": "10.0.0.0/24",
                "Gateway": "10.0.0.9",
                "AuxiliaryAddresses": {"g": "10.0.0.9"},
            },
            "failed to allocate secondary ip address (g:10.0.0.9): Address already in use",
        ),
        (
            {"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"net": "10.0.0.0"}},
            "failed to allocate secondary ip address (net:10.0.0.0): Address already in use",
        ),
        (
            {"Subnet": "10.0.0.0/24", "AuxiliaryAddresses": {"a": "10.0.0.7", "b": "10.0.0.7"}},
            "failed to allocate secondary ip address (b:10.0.0.7): Address already in use",
        ),
    ],
)
def test_aux_address_already_taken_is_dockers_500(entry, message):
    assert error(SystemError_, [entry]) == message


def test_aux_address_with_explicit_gateway_elsewhere_is_fine():
    raw = [
        {"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.254", "AuxiliaryAddresses": {"r": "10.0.0.1"}}
    ]
    cfg = one(raw)
    assert cfg.gateway == A("10.0.0.254")
    assert cfg.aux == {"r": A("10.0.0.1")}


def test_a_failure_in_a_later_entry_returns_nothing():
    raw = [{"Subnet": "10.1.0.0/24"}, {"Subnet": "10.2.0.0/24", "Gateway": "10.2.0.0"}]
    with pytest.raises(SystemError_):
        parse(raw)


# --- IpamConfig -------------------------------------------------------------------------------


def test_ipam_config_is_hashable_and_aux_order_does_not_matter():
    a = IpamConfig(
        N("10.0.0.0/24"), A("10.0.0.1"), aux_addresses={"b": A("10.0.0.3"), "a": A("10.0.0.2")}
    )
    b = IpamConfig(
        N("10.0.0.0/24"), A("10.0.0.1"), aux_addresses=(("a", A("10.0.0.2")), ("b", A("10.0.0.3")))
    )
    assert a == b
    assert hash(a) == hash(b)
    assert a.aux_addresses == (("a", A("10.0.0.2")), ("b", A("10.0.0.3")))


def test_ipam_config_round_trips_through_docker_shape():
    for cfg in [
        IpamConfig(N("10.0.0.0/24"), A("10.0.0.1")),
        IpamConfig(N("10.0.0.0/24"), None),
        IpamConfig(N("10.0.0.0/16"), A("10.0.9.9"), N("10.0.1.0/24"), (("x", A("10.0.0.5")),)),
    ]:
        assert IpamConfig.from_docker(cfg.to_docker()) == cfg


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gateway": A("10.1.0.1")},
        {"gateway": None, "ip_range": N("10.1.0.0/25")},
        {"gateway": None, "ip_range": N("10.0.0.0/23")},
        {"gateway": None, "aux_addresses": (("a", A("10.1.0.1")),)},
    ],
)
def test_ipam_config_refuses_addresses_outside_its_subnet(kwargs):
    with pytest.raises(ValueError):
        IpamConfig(N("10.0.0.0/24"), **kwargs)


def test_reserved_addresses_of_a_config():
    cfg = IpamConfig(N("10.0.0.0/24"), A("10.0.0.1"), aux_addresses=(("r", A("10.0.0.9")),))
    assert cfg.reserved == {A("10.0.0.0"), A("10.0.0.255"), A("10.0.0.1"), A("10.0.0.9")}
    assert IpamConfig(N("10.0.0.0/31"), None).reserved == frozenset()
    assert IpamConfig(N("10.0.0.4/32"), None).reserved == frozenset()


# --- AddressPool ---------------------------------------------------------------------------------


def pool_for(subnet="10.0.0.0/24", gateway="10.0.0.1", ip_range=None, aux=(), **kw) -> AddressPool:
    cfg = IpamConfig(
        N(subnet),
        A(gateway) if gateway else None,
        N(ip_range) if ip_range else None,
        tuple((k, A(v)) for k, v in aux),
    )
    return AddressPool([cfg], **kw)


def test_addresses_are_handed_out_serially_after_the_gateway():
    pool = pool_for()
    assert [pool.allocate() for _ in range(3)] == [A("10.0.0.2"), A("10.0.0.3"), A("10.0.0.4")]
    assert pool.last == A("10.0.0.4")
    assert pool.allocated == {A("10.0.0.2"), A("10.0.0.3"), A("10.0.0.4")}


def test_a_released_address_is_not_handed_straight_back():
    pool = pool_for()
    first = pool.allocate()
    pool.allocate()
    pool.release(first)
    assert pool.allocate() == A("10.0.0.4")
    assert first not in pool.allocated


def test_allocation_wraps_around_to_freed_addresses():
    pool = pool_for("10.0.0.0/29")  # hosts .1-.6, gateway .1
    assert [pool.allocate() for _ in range(5)] == [A(f"10.0.0.{i}") for i in range(2, 7)]
    pool.release(A("10.0.0.4"))
    pool.release(A("10.0.0.3"))
    assert pool.allocate() == A("10.0.0.3")
    assert pool.allocate() == A("10.0.0.4")


def test_wraparound_from_the_middle_continues_after_the_cursor():
    pool = pool_for("10.0.0.0/28")  # hosts .1-.14
    for _ in range(6):
        pool.allocate()  # .2-.7
    pool.release(A("10.0.0.3"))
    assert pool.allocate() == A("10.0.0.8")  # serial goes on from the cursor, not to .3


def test_reserved_addresses_are_never_handed_out():
    pool = pool_for("10.0.0.0/29", gateway="10.0.0.4", aux=[("a", "10.0.0.2"), ("b", "10.0.0.6")])
    got = {pool.allocate() for _ in range(3)}
    assert got == {A("10.0.0.1"), A("10.0.0.3"), A("10.0.0.5")}
    with pytest.raises(Unavailable, match=r"^no available addresses on this pool$"):
        pool.allocate()


def test_ip_range_limits_automatic_addresses():
    pool = pool_for("10.0.0.0/24", gateway="10.0.0.1", ip_range="10.0.0.128/30")
    assert [pool.allocate() for _ in range(4)] == [A(f"10.0.0.{i}") for i in range(128, 132)]
    with pytest.raises(Unavailable):
        pool.allocate()


def test_ip_range_with_gateway_at_its_start():
    cfg = one([{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.128/25"}])
    pool = AddressPool([cfg])
    assert pool.allocate() == A("10.0.0.129")


def test_static_address_may_be_outside_the_ip_range_but_inside_the_subnet():
    pool = pool_for("10.0.0.0/24", ip_range="10.0.0.128/25")
    assert pool.allocate(A("10.0.0.50")) == A("10.0.0.50")
    assert A("10.0.0.50") in pool.allocated


def test_static_allocation_does_not_move_the_serial_cursor():
    pool = pool_for()
    pool.allocate(A("10.0.0.2"))
    pool.allocate(A("10.0.0.100"))
    assert pool.last is None
    assert pool.allocate() == A("10.0.0.3")


@pytest.mark.parametrize(
    "ip", ["10.0.0.0", "10.0.0.255", "10.0.0.1", "10.0.0.9", "10.0.0.2"], ids=str
)
def test_static_address_in_use_or_reserved_is_dockers_403(ip):
    pool = pool_for(aux=[("r", "10.0.0.9")], allocated=[A("10.0.0.2")])
    with pytest.raises(Forbidden) as info:
        pool.allocate(A(ip))
    assert info.value.message == IN_USE


def test_static_address_outside_every_subnet_is_dockers_400():
    pool = pool_for()
    with pytest.raises(InvalidParameter) as info:
        pool.allocate(A("10.9.9.9"))
    assert info.value.message == (
        "invalid address 10.9.9.9: It does not belong to any of this network's subnets"
    )


def test_exhaustion_message_names_the_network_when_given():
    pool = pool_for("10.0.0.0/30", name="front", network_id="abc123")
    assert pool.allocate() == A("10.0.0.2")
    with pytest.raises(SystemError_) as info:
        pool.allocate()
    assert info.value.message == (
        "no available IPv4 addresses on this network's address pools: front (abc123)"
    )


def test_exhaustion_without_a_name_is_ipams_own_503():
    pool = pool_for("10.0.0.0/30")
    pool.allocate()
    with pytest.raises(Unavailable) as info:
        pool.allocate()
    assert info.value.message == "no available addresses on this pool"


def test_a_pool_without_configs_has_nothing_to_give():
    pool = AddressPool([])
    with pytest.raises(Unavailable):
        pool.allocate()
    with pytest.raises(InvalidParameter):
        pool.allocate(A("10.0.0.2"))


def test_slash_31_gives_both_addresses():
    cfg = one([{"Subnet": "10.9.0.0/31"}])  # gateway 10.9.0.0
    pool = AddressPool([cfg])
    assert pool.allocate() == A("10.9.0.1")
    with pytest.raises(Unavailable):
        pool.allocate()
    assert AddressPool([IpamConfig(N("10.9.0.0/31"), None)]).allocate(A("10.9.0.0")) == A(
        "10.9.0.0"
    )


def test_slash_32_has_one_address():
    pool = AddressPool([one([{"Subnet": "10.9.0.7/32"}])])
    with pytest.raises(Unavailable):
        pool.allocate()
    gatewayless = AddressPool([IpamConfig(N("10.9.0.7/32"), None)])
    assert gatewayless.allocate() == A("10.9.0.7")
    with pytest.raises(Unavailable):
        gatewayless.allocate()


def test_several_subnets_fill_in_order_and_return_to_the_first_when_freed():
    configs = parse([{"Subnet": "10.1.0.0/30"}, {"Subnet": "10.2.0.0/30"}])
    pool = AddressPool(configs)
    assert pool.allocate() == A("10.1.0.2")
    assert pool.allocate() == A("10.2.0.2")
    with pytest.raises(Unavailable):
        pool.allocate()
    pool.release(A("10.1.0.2"))
    assert pool.allocate() == A("10.1.0.2")
    with pytest.raises(Forbidden):  # the second subnet's gateway stays reserved
        pool.allocate(A("10.2.0.1"))


def test_restored_pool_continues_after_last():
    pool = pool_for()
    for _ in range(5):
        pool.allocate()
    pool.release(A("10.0.0.3"))
    restored = pool_for(allocated=pool.allocated, last=pool.last)
    assert restored.allocated == pool.allocated
    assert restored.allocate() == pool.allocate() == A("10.0.0.7")


def test_release_is_idempotent_and_never_frees_reserved_addresses():
    pool = pool_for("10.0.0.0/30")
    pool.release(A("10.0.0.2"))  # not allocated: no-op
    pool.release(A("10.0.0.1"))  # the gateway stays reserved
    pool.release(A("192.0.2.1"))  # outside: no-op
    assert pool.allocate() == A("10.0.0.2")
    with pytest.raises(Unavailable):
        pool.allocate()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allocated": [A("10.9.0.5")]},
        {"allocated": [A("10.0.0.1")]},
        {"allocated": [A("10.0.0.255")]},
        {"last": A("10.9.0.5")},
    ],
)
def test_inconsistent_restore_state_is_refused(kwargs):
    with pytest.raises(ValueError):
        pool_for(**kwargs)


# --- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "mac"),
    [
        ("172.18.0.2", "02:42:ac:12:00:02"),
        ("10.0.1.255", "02:42:0a:00:01:ff"),
        ("0.0.0.0", "02:42:00:00:00:00"),
    ],
)
def test_mac_for_is_dockers_02_42_prefix_plus_ipv4_bytes(ip, mac):
    assert mac_for(A(ip)) == mac


def test_overlaps():
    assert overlaps(N("10.0.0.0/8"), N("10.1.0.0/16"))
    assert overlaps(N("10.1.0.0/16"), N("10.0.0.0/8"))
    assert overlaps(N("10.1.0.0/16"), N("10.1.0.0/16"))
    assert not overlaps(N("10.1.0.0/16"), N("10.2.0.0/16"))
    assert not overlaps(N("10.1.0.0/24"), N("10.1.1.0/24"))


# --- properties ----------------------------------------------------------------------------------

ops = st.lists(st.one_of(st.just(None), st.integers(0, 63)), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.integers(26, 30),
    gateway_off=st.integers(0, 63),
    aux_offs=st.lists(st.integers(0, 63), max_size=4),
    use_range=st.booleans(),
    first=st.integers(0, 70),
    ops=ops,
)
def test_allocate_release_allocate_never_hands_out_reserved_or_duplicates(
    prefix, gateway_off, aux_offs, use_range, first, ops
):
    subnet = N(f"10.7.0.0/{prefix}")
    size = subnet.num_addresses
    hosts = [subnet.network_address + i for i in range(1, size - 1)]
    gateway = hosts[gateway_off % len(hosts)]
    aux_addrs = {hosts[o % len(hosts)] for o in aux_offs} - {gateway}
    aux_pairs = tuple((f"a{i}", addr) for i, addr in enumerate(sorted(aux_addrs)))
    ip_range = next(subnet.subnets(prefixlen_diff=1)) if use_range else None
    cfg = IpamConfig(subnet, gateway, ip_range, aux_pairs)
    pool = AddressPool([cfg])
    span = set(ip_range or subnet)
    free = span - cfg.reserved

    held: list[IPv4Address] = []
    for _ in range(min(first, len(free))):
        held.append(pool.allocate())
    for op in ops:
        if op is not None and held:
            victim = held.pop(op % len(held))
            pool.release(victim)
            assert victim not in pool.allocated
            continue
        try:
            ip = pool.allocate()
        except Unavailable:
            assert len(held) == len(free)
            continue
        assert ip not in cfg.reserved
        assert ip not in held
        assert ip in span
        held.append(ip)
        assert pool.last == ip
    assert pool.allocated == set(held)
    assert not pool.allocated & pool.reserved


@settings(max_examples=200, deadline=None)
@given(
    use_range=st.booleans(),
    steps=st.lists(st.one_of(st.just(None), st.integers(0, 31)), min_size=1, max_size=80),
)
def test_next_address_is_the_first_free_after_the_last_one_else_the_first_free(use_range, steps):
    """Model of the bitmap's serial search: free addresses after `last` first, then wrap."""
    pool = pool_for("10.0.0.0/27", ip_range="10.0.0.16/28" if use_range else None)
    span = sorted(N("10.0.0.16/28") if use_range else N("10.0.0.0/27"))
    for step in steps:
        if step is not None and pool.allocated:
            pool.release(sorted(pool.allocated)[step % len(pool.allocated)])
            continue
        free = [a for a in span if a not in pool.reserved | pool.allocated]
        ahead = [a for a in free if pool.last is not None and a > pool.last]
        if not free:
            with pytest.raises(Unavailable):
                pool.allocate()
            continue
        assert pool.allocate() == (ahead or free)[0]
