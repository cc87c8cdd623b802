"""Networks, not addresses: the /24 or /48 an IP belongs to, the unit in which affnet counts
visitors (server/tracking/visitor.py) and login attempts (server/accounts/throttle.py) without
keeping any single address."""

from __future__ import annotations

import ipaddress
import re

INVALID = "invalid"

# A dotted-quad IPv4 address: four decimal numbers 0-255, without leading zeros (refused as
# ipaddress refuses them: some parsers read them as octal).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _ipv4_network(text: str) -> str | None:
    """'a.b.c.0/24' for a dotted-quad IPv4 address, without ipaddress's cost on the common case
    (one regular expression: the click redirect calls this for every click)."""
    if _IPV4.fullmatch(text) is None:
        return None
    return text[: text.rindex(".")] + ".0/24"


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
