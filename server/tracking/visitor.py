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
from datetime import date
from functools import lru_cache

from server.core import keyed
from server.core.net import INVALID, truncate_ip  # noqa: F401 - INVALID: the network of no address

_SALT_CONTEXT = b"affnet.visitor-salt\x00"
_HASH_BYTES = 16


@lru_cache(maxsize=8)
def daily_salt(key: bytes, day: date) -> bytes:
    """The salt for one UTC day: HMAC-SHA256 of the date under the key (cached: it changes once a day)."""
    if type(day) is not date:
        # A datetime is a date too, but would give a new salt every second and never match.
        raise TypeError(f"daily_salt needs a date, not {type(day).__name__}")
    return hmac.digest(key, _SALT_CONTEXT + day.isoformat().encode("ascii"), "sha256")


@lru_cache(maxsize=8)
def daily_hmac(key: bytes, day: date) -> keyed.Mac:
    """An HMAC-SHA256 already keyed with the day's salt: `visitor_hash` copies it (server/core/keyed.py)."""
    return keyed.prepared(daily_salt(key, day))


def visitor_hash(key: bytes, ip: str, user_agent: str, day: date, *, network: str | None = None) -> str:
    """32 hex characters naming one visitor (network + User-Agent) for one day. `network`: the
    caller's truncate_ip(ip) if it has it already (the click redirect does, for its rate limit)."""
    network = truncate_ip(ip) if network is None else network
    state = daily_hmac(key, day).copy()
    state.update(network.encode("ascii") + b"\x00" + (user_agent or "").encode("utf-8", "surrogatepass"))
    return state.digest()[:_HASH_BYTES].hex()
