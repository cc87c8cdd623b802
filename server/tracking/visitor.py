"""Visitor identity without personal data: a daily keyed hash of the IP's network and the User-Agent.

Duplicate-click detection and unique-visitor counts need to recognise a visitor for a day, not
to know who they are. So we never store an IP: we keep only the /24 (IPv4) or /48 (IPv6) network,
mix it with the User-Agent under a salt derived from the secret key and the date, and keep 16
bytes of the HMAC. The salt changes every day (hashes of two days cannot be joined), is the same
in every server process (no coordination needed), and without the key the hashes cannot be
reversed by trying all 2**32 IPv4 addresses.
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import date
from functools import lru_cache

INVALID = "invalid"
_SALT_CONTEXT = b"affnet.visitor-salt\x00"
_HASH_BYTES = 16


def _ipv4_network(text: str) -> str | None:
    """'a.b.c.0/24' for a dotted-quad IPv4 address, without ipaddress's cost on the common case."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        # Leading zeros are refused like ipaddress does: some parsers read them as octal.
        if not (part.isascii() and part.isdigit() and len(part) <= 3 and int(part) <= 255):
            return None
        if len(part) > 1 and part[0] == "0":
            return None
    return f"{parts[0]}.{parts[1]}.{parts[2]}.0/24"


def truncate_ip(ip: str) -> str:
    """The network an IP belongs to: IPv4 /24, IPv6 /48 (IPv4-mapped IPv6 as IPv4); 'invalid' otherwise.

    A /24 or /48 still tells visitors apart well enough for a day, while no single address is kept.
    """
    if not isinstance(ip, str):
        return INVALID
    ip = ip.strip()
    if (network := _ipv4_network(ip)) is not None:
        return network
    if ":" not in ip or len(ip) > 64:
        return INVALID
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return INVALID
    if address.ipv4_mapped is not None:
        return _ipv4_network(str(address.ipv4_mapped)) or INVALID
    # Zero the host bits from the packed form: this also drops any zone id (fe80::1%eth0).
    network = ipaddress.IPv6Address(address.packed[:6] + bytes(10))
    return f"{network}/48"


@lru_cache(maxsize=8)
def daily_salt(key: bytes, day: date) -> bytes:
    """The salt for one UTC day: HMAC-SHA256 of the date under the key (cached: it changes once a day)."""
    if type(day) is not date:
        # A datetime is a date too, but would give a new salt every second and never match.
        raise TypeError(f"daily_salt needs a date, not {type(day).__name__}")
    return hmac.digest(key, _SALT_CONTEXT + day.isoformat().encode("ascii"), "sha256")


def visitor_hash(key: bytes, ip: str, user_agent: str, day: date, *, network: str | None = None) -> str:
    """32 hex characters naming one visitor (network + User-Agent) for one day. `network`: the
    caller's truncate_ip(ip) if it has it already (the click redirect does, for its rate limit)."""
    network = truncate_ip(ip) if network is None else network
    message = network.encode("ascii") + b"\x00" + (user_agent or "").encode("utf-8", "surrogatepass")
    return hmac.digest(daily_salt(key, day), message, "sha256")[:_HASH_BYTES].hex()
