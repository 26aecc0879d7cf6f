"""overlayd's nftables table: rendered from the desired bridges, replaced atomically.

Only `table ip overlayd` is ever read or written. The kernel's JSON listing (nft 1.0.6) drops
table and chain comments, so the digest of the rendered rules rides in the comment of the
first forward rule; together with the rule count per chain it tells whether the table still
is what we wrote. A re-apply is one `nft -f -` transaction (create-if-missing, delete,
define), so there is no instant without rules, and conntrack entries (with their NAT
bindings) are untouched: established connections survive it.

Bridged traffic reaches the `ip` forward hook only through br_netfilter
(net.bridge.bridge-nf-call-iptables=1, the default once the module is loaded); the icc=False
rule relies on that, exactly like Docker's `-i br -o br -j DROP`, and the plan switches it
on (EnableBridgeNetfilter) where nothing else did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from . import libnft
from .model import BridgeSpec, NftRuleset

FAMILY = "ip"
TABLE = "overlayd"
DIGEST_TAG = "overlayd:"  # comment prefix of the rule that carries the digest

_CHAINS = {
    "forward": "type filter hook forward priority filter; policy accept;",
    "postrouting": "type nat hook postrouting priority srcnat; policy accept;",
    # encrypted overlays' VXLAN port, while there is one: the xfrm policies already make
    # every packet there ESP; should they be flushed or bypassed (another IPsec daemon
    # starting, disable_policy), these drop what is not (Docker's CVE-2023-28840/28841)
    "esp_in": "type filter hook input priority filter; policy accept;",
    "esp_out": "type filter hook output priority filter; policy accept;",
}
_RESET = f"table {FAMILY} {TABLE} {{}}\ndelete table {FAMILY} {TABLE}\n"


class NftError(RuntimeError):
    """nft exited non-zero; the message carries its stderr."""


def _q(name: str) -> str:
    return f'"{name}"'


def rules(bridges: Iterable[BridgeSpec], esp_ports: Iterable[int] = ()) -> dict[str, list[str]]:
    """Rules per chain, without the digest rule. Deterministic: sorted by bridge name.
    `esp_ports`: UDP ports whose traffic must be ESP (encrypted overlays' VXLAN)."""
    ordered = sorted(bridges, key=lambda b: b.ifname)
    names = [b.ifname for b in ordered]
    forward: list[str] = []
    post: list[str] = []
    for b in ordered:
        me = _q(b.ifname)
        others = [n for n in names if n != b.ifname]
        if b.internal:
            # only traffic between its own ports (bridged, via br_netfilter) may pass
            forward.append(f"iifname {me} oifname != {me} drop")
            forward.append(f"oifname {me} iifname != {me} drop")
        else:
            if others:
                forward.append(f"iifname {me} oifname {{ {', '.join(map(_q, others))} }} drop")
            # nothing from outside opens a connection to its containers (Docker's default
            # DROP: no published ports here); replies to theirs pass as established above
            forward.append(f"oifname {me} iifname != {me} ct state new drop")
        if not b.icc:
            forward.append(f"iifname {me} oifname {me} drop")
        if b.masquerade and not b.internal:
            post.append(f"ip saddr {b.subnet} oifname != {me} masquerade")
    chains = {"forward": forward, "postrouting": post}
    ports = sorted(set(esp_ports))
    if ports:
        chains["esp_in"] = [f"udp dport {p} meta secpath missing drop" for p in ports]
        chains["esp_out"] = [f"udp dport {p} rt ipsec missing drop" for p in ports]
    return chains


def _digest(chains: dict[str, list[str]]) -> str:
    text = "\n".join(f"{c}\n{_CHAINS[c]}\n" + "\n".join(chains[c]) for c in sorted(chains))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fingerprint(digest: str, counts: dict[str, int]) -> str:
    return digest + " " + " ".join(f"{c}={counts[c]}" for c in sorted(counts))


def render(bridges: Iterable[BridgeSpec], esp_ports: Iterable[int] = ()) -> NftRuleset:
    """The whole table for these bridges and ESP-only ports; none means no table at all."""
    bridges, esp_ports = list(bridges), list(esp_ports)
    if not bridges and not esp_ports:
        return NftRuleset(script=_RESET, fingerprint=None)
    chains = rules(bridges, esp_ports)
    digest = _digest(chains)
    chains["forward"].insert(
        0, f'ct state established,related accept comment "{DIGEST_TAG}{digest}"'
    )
    body = [f"table {FAMILY} {TABLE} {{", '\tcomment "managed by overlayd; edits are reverted"']
    for name in chains:
        body += [f"\tchain {name} {{", f"\t\t{_CHAINS[name]}"]
        body += [f"\t\t{r}" for r in chains[name]]
        body.append("\t}")
    body.append("}")
    counts = {c: len(chains[c]) for c in chains}
    script = _RESET + "\n".join(body) + "\n"
    return NftRuleset(script=script, fingerprint=_fingerprint(digest, counts))


def fingerprint_of(listing: dict[str, Any]) -> str:
    """Fingerprint of an `nft -j list table` document, comparable with render()'s."""
    counts: dict[str, int] = {}
    digest = "?"
    for item in listing.get("nftables", []):
        if "chain" in item:
            counts.setdefault(item["chain"]["name"], 0)
        elif "rule" in item:
            rule = item["rule"]
            chain = rule["chain"]
            counts[chain] = counts.get(chain, 0) + 1
            comment = rule.get("comment", "")
            if chain == "forward" and counts[chain] == 1 and comment.startswith(DIGEST_TAG):
                digest = comment[len(DIGEST_TAG) :]
    return _fingerprint(digest, counts)


async def observe() -> str | None:
    """Fingerprint of our table in this process's netns, None when there is none."""
    try:
        out = libnft.shared().run(f"list table {FAMILY} {TABLE}", json_output=True)
    except libnft.NftLibError as e:
        if "No such file or directory" in str(e) or "Operation not supported" in str(e):
            return None  # no table, or a kernel without nftables' ip family: none either
        raise NftError(f"nft list table {FAMILY} {TABLE}: {e}") from e
    return fingerprint_of(json.loads(out))


async def apply(ruleset: NftRuleset) -> None:
    """Run the script as one transaction: all of it or nothing."""
    try:
        libnft.shared().run(ruleset.script)
    except libnft.NftLibError as e:
        raise NftError(f"nft -f: {e}") from e
