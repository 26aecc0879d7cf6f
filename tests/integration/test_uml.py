"""Real ESP (IPsec) between two netns, inside User-Mode Linux since the host kernel has no ESP.

See tests/integration/uml.py for how the UML kernel is booted and what it can do.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests.integration.uml import UmlError, run_in_uml, uml_processes

pytestmark = pytest.mark.kernel

SPI_AB, SPI_BA = 0x1001, 0x2002  # a->b and b->a

# Two netns joined by a veth pair; ESP transport mode with AES-GCM (20-byte key: 16 of
# AES-128 and a 4-byte salt), one SA per direction present on both sides, out policies on
# both sides. Prints the xfrm counters in sections the test parses; setup errors fail it.
ESP_SCRIPT = r"""
set -euo pipefail
ip netns add a
ip netns add b
ip link add va netns a type veth peer name vb netns b
ip -n a addr add 10.1.0.1/24 dev va
ip -n b addr add 10.1.0.2/24 dev vb
for ns in a b; do ip -n $ns link set lo up; done
ip -n a link set va up
ip -n b link set vb up
aead="rfc4106(gcm(aes))"
for ns in a b; do
  ip -n $ns xfrm state add src 10.1.0.1 dst 10.1.0.2 proto esp spi @SPI_AB@ mode transport \
    aead "$aead" 0x000102030405060708090a0b0c0d0e0f10111213 128
  ip -n $ns xfrm state add src 10.1.0.2 dst 10.1.0.1 proto esp spi @SPI_BA@ mode transport \
    aead "$aead" 0x202122232425262728292a2b2c2d2e2f30313233 128
done
ip -n a xfrm policy add src 10.1.0.1 dst 10.1.0.2 dir out \
  tmpl src 10.1.0.1 dst 10.1.0.2 proto esp mode transport
ip -n b xfrm policy add src 10.1.0.2 dst 10.1.0.1 dir out \
  tmpl src 10.1.0.2 dst 10.1.0.1 proto esp mode transport

if ip netns exec a ping -c 3 -i 0.2 -W 2 10.1.0.2; then echo "PING_ENCRYPTED=ok"
else echo "PING_ENCRYPTED=failed"; fi
for ns in a b; do echo "== state $ns"; ip -n $ns -s xfrm state; done
echo "== end"

# Without b's inbound SA, a's ESP packets must be dropped: the path really is ESP.
ip -n b xfrm state delete src 10.1.0.1 dst 10.1.0.2 proto esp spi @SPI_AB@
if ip netns exec a ping -c 2 -i 0.2 -W 1 10.1.0.2; then echo "PING_NO_SA=ok"
else echo "PING_NO_SA=failed"; fi
echo "XFRM_IN_NO_STATES_B=$(ip netns exec b awk '$1 == "XfrmInNoStates" {print $2}' /proc/net/xfrm_stat)"
"""


def esp_script() -> str:
    return ESP_SCRIPT.replace("@SPI_AB@", hex(SPI_AB)).replace("@SPI_BA@", hex(SPI_BA))


def sa_packets(section: str) -> dict[int, int]:
    """{spi: packets} from one `ip -s xfrm state` dump ("lifetime current: B(bytes), P(packets)")."""
    counts = {}
    for block in re.split(r"(?m)^src ", section)[1:]:
        spi = re.search(r"proto esp spi (0x[0-9a-f]+)", block)
        packets = re.search(r"lifetime current:\s*\n\s*\d+\(bytes\), (\d+)\(packets\)", block)
        assert spi and packets, f"unparsable xfrm state:\n{block}"
        counts[int(spi.group(1), 16)] = int(packets.group(1))
    return counts


def section(output: str, name: str) -> str:
    match = re.search(rf"(?ms)^== {name}\n(.*?)(?=^== )", output)
    assert match, f"no section {name!r} in:\n{output}"
    return match.group(1)


def test_esp_transport_between_two_netns() -> None:
    result = run_in_uml(esp_script())
    out = result.output
    assert result.returncode == 0, out
    assert "PING_ENCRYPTED=ok" in out, out
    assert "3 packets transmitted, 3 received" in out, out
    for ns in ("a", "b"):
        packets = sa_packets(section(out, f"state {ns}"))
        # 3 echo requests a->b and 3 replies b->a went through ESP, counted on both ends.
        assert packets.get(SPI_AB, 0) >= 3, (ns, packets, out)
        assert packets.get(SPI_BA, 0) >= 3, (ns, packets, out)
    assert "PING_NO_SA=failed" in out, out
    no_states = re.search(r"XFRM_IN_NO_STATES_B=(\d+)", out)
    assert no_states and int(no_states.group(1)) >= 2, out


def test_harness_reports_failing_script() -> None:
    result = run_in_uml("echo hello; echo oops >&2; exit 3")
    assert result.returncode == 3
    assert result.output.splitlines() == ["hello", "oops"]
    assert result.seconds > 0


def test_timeout_kills_uml_and_cleans_up() -> None:
    with pytest.raises(UmlError, match="timed out") as info:
        run_in_uml("echo started; sleep 600", timeout=15)
    error = info.value
    assert "started" in str(error)  # the script's partial output is in the error
    assert error.umid.startswith("ovt-uml-")
    assert not (Path(tempfile.gettempdir()) / error.umid).exists()
    assert not uml_processes(error.umid)
