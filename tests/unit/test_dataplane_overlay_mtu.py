"""Overlay MTU arithmetic and the per-instance sandbox layout (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.layout import run_dir_for, sandbox_path
from dataplane.mtu import ESP_ALIGN, ESP_OVERHEAD, overlay_mtu


@pytest.mark.parametrize(
    ("underlay", "ipv6", "encrypted", "expected"),
    [
        (1500, False, False, 1450),
        (1500, True, False, 1430),
        (1500, False, True, 1416),  # Docker's 1424 has a 64-bit ICV, ours 128
        (1500, True, True, 1396),
        (9000, False, False, 8950),
        (1450, False, True, 1364),  # 1450 - 20 - 16 - 16, down to 4, - 2 - 30
        (1280, True, False, 1210),
    ],
)
def test_known_values(underlay: int, ipv6: bool, encrypted: bool, expected: int) -> None:
    assert overlay_mtu(underlay, ipv6=ipv6, encrypted=encrypted) == expected


@given(st.integers(200, 65535), st.booleans())
def test_encrypted_packet_fits_exactly(underlay: int, ipv6: bool) -> None:
    """Outer IP + ESP header/IV + padded(UDP+VXLAN+Ethernet+inner+trailer) + ICV <= underlay,
    and one byte more would not fit."""
    inner = overlay_mtu(underlay, ipv6=ipv6, encrypted=True)

    def size(n: int) -> int:
        payload = 8 + 8 + 14 + n + 2
        padded = -(-payload // ESP_ALIGN) * ESP_ALIGN
        return (40 if ipv6 else 20) + 16 + padded + 16

    assert size(inner) <= underlay < size(inner + 1)
    plain = overlay_mtu(underlay, ipv6=ipv6)
    assert plain - ESP_OVERHEAD - ESP_ALIGN < inner <= plain - ESP_OVERHEAD


def test_too_small_underlay() -> None:
    with pytest.raises(ValueError):
        overlay_mtu(100)


def test_instances_never_share_a_sandbox_path() -> None:
    a, b = run_dir_for("/var/lib/overlayd"), run_dir_for("/tmp/host2/state")
    assert a != b and a == run_dir_for("/var/lib/overlayd/")
    assert a.startswith("/run/overlayd/")
    assert sandbox_path(a, "f" * 64) == f"{a}/netns/ovl-ffffffffff"
