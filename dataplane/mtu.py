"""Overlay MTU from the underlay's, so that an encapsulated full-size frame still fits.

Docker uses a fixed 1500 - 50 whatever the NIC, and 50 even on an IPv6 underlay (which
needs 70): big requests then hang on smaller underlays (moby#41332). Here the daemon
measures the underlay (dataplane.probe.address_mtu) and passes the result, or the user's
com.docker.network.driver.mtu, as OverlaySpec.mtu.
"""

from __future__ import annotations

# outer IP + UDP (8) + VXLAN (8) + inner Ethernet (14)
VXLAN_OVERHEAD_IPV4 = 20 + 8 + 8 + 14  # 50
VXLAN_OVERHEAD_IPV6 = 40 + 8 + 8 + 14  # 70

# ESP in transport mode with rfc4106(gcm(aes)) as dataplane.xfrmmsg configures it: SPI +
# sequence (8), explicit IV (8), pad length + next header (2), 128-bit ICV (16) = 34 bytes,
# plus padding of the ESP payload (+ those 2 trailer bytes) to a multiple of 4: up to 3
# more. (Docker truncates the ICV to 64 bits, RFC 4106's weakest, for 8 bytes of MTU.)
ESP_HEADER = 8 + 8
ESP_TRAILER = 2
ESP_ICV = 16
ESP_OVERHEAD = ESP_HEADER + ESP_TRAILER + ESP_ICV  # 34
ESP_ALIGN = 4

MIN_MTU = 68  # the smallest IPv4 MTU (RFC 791)


def overlay_mtu(underlay_mtu: int, ipv6: bool = False, encrypted: bool = False) -> int:
    """Largest inner packet (the containers' MTU) that fits one underlay packet.

    1500 gives 1450 (IPv4), 1430 (IPv6); encrypted 1416 and 1396 (Docker: 1424 with half
    the ICV).
    ValueError if the underlay is too small to carry a 68-byte inner packet."""
    outer_ip = 40 if ipv6 else 20
    vxlan = (VXLAN_OVERHEAD_IPV6 if ipv6 else VXLAN_OVERHEAD_IPV4) - outer_ip  # 30
    if encrypted:
        # the ESP payload is UDP + VXLAN + Ethernet + inner packet; payload + trailer is
        # padded to ESP_ALIGN, and header, padded payload and ICV follow the outer IP header
        room = underlay_mtu - outer_ip - ESP_HEADER - ESP_ICV
        inner = room // ESP_ALIGN * ESP_ALIGN - ESP_TRAILER - vxlan
    else:
        inner = underlay_mtu - outer_ip - vxlan
    if inner < MIN_MTU:
        raise ValueError(f"underlay MTU {underlay_mtu} is too small for an overlay")
    return inner
