"""The client's IP address, trusting X-Forwarded-For only from configured proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(entries: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(peer: str | None, forwarded_for: Sequence[str], proxies: tuple[Network, ...]) -> str:
    """Off by default: without trusted proxies, the TCP peer is the client.

    ``forwarded_for`` is every X-Forwarded-For line, in order: a proxy may append its own
    line instead of extending the client's, so reading only the first one would let the
    client name itself (RFC 9110: repeated lines combine into one comma list).
    """
    address = peer or "unknown"
    # A str is a Sequence[str] too: one line, not one hop per character.
    lines = [forwarded_for] if isinstance(forwarded_for, str) else forwarded_for
    if not proxies or not lines or not _trusted(address, proxies):
        return address
    hops = [part.strip() for part in ",".join(lines).split(",")]
    # Walk from the nearest hop outwards; the first address not ours is the client.
    for hop in reversed(hops):
        if not hop:
            continue
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address
        address = hop
    return address
