"""Visitor identity without personal data: a daily keyed hash of the IP's network and the User-Agent
(what reports count as unique visitors and the conversion rules match on), and the click redirect's
visitor cookie (what tells apart, for the duplicate check, readers who share a network: below).

Duplicate-click detection and unique-visitor counts need to recognise a visitor for a day, not
to know who they are. So we never store an IP: we keep only the /24 (IPv4) or /48 (IPv6) network,
mix it with the User-Agent under a salt derived from the secret key and the date, and keep 16
bytes of the HMAC. The salt changes every day (hashes of two days cannot be joined), is the same
in every server process (no coordination needed), and without the key the hashes cannot be
reversed by trying all 2**32 IPv4 addresses.
"""

from __future__ import annotations

import hmac
import os
from datetime import date
from functools import lru_cache

from server.core import keyed
from server.core.net import INVALID, truncate_ip  # noqa: F401 - INVALID: the network of no address
from server.tracking.tokens import b64url

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


# --- the visitor cookie: telling apart readers who share an address ----------------------------------
#
# Many readers share one network, and often one address: a mobile carrier's NAT puts thousands of
# phones behind a few public addresses, and a popular phone's browser build is the same on many of
# them. The network + User-Agent hash above cannot tell them apart, so it is not what the duplicate
# check keys on. The click redirect gives every browser that has none a random id in a cookie
# (`affnet_v`, sent back only to /c/, kept for the duplicate window's hour) and the duplicate
# check keys on that id for the hour; a click that comes without it (a browser's first click, or a client that
# keeps no cookies) is a repeat only within a short window of the same address, User-Agent and
# Accept-Language (server/tracking/counting.py). README: "What the visitor identity can tell apart".

COOKIE = "affnet_v"
_COOKIE_FIELD = b"affnet_v="
COOKIE_ID_LENGTH = 16  # 12 random bytes (96 bits) in URL-safe base64
_ID_CHARACTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def cookie_id(cookie_header: bytes) -> str | None:
    """The visitor id a Cookie header carries (None: none, or not one affnet could have issued)."""
    start = cookie_header.find(_COOKIE_FIELD)
    if start < 0:
        return None
    if start and cookie_header[start - 1] not in b"; ":
        return None  # the end of another cookie's name (xaffnet_v=)
    start += len(_COOKIE_FIELD)
    value = cookie_header[start : start + COOKIE_ID_LENGTH + 1]
    if len(value) > COOKIE_ID_LENGTH and value[COOKIE_ID_LENGTH] not in b"; ":
        return None
    value = value[:COOKIE_ID_LENGTH]
    if len(value) != COOKIE_ID_LENGTH or not _ID_CHARACTERS.issuperset(value):
        return None
    return value.decode("ascii")


# Ids are cut from random bytes the kernel gives 1,024 ids' worth at a time (os.urandom, the same
# source as the secrets module): one system call per id was a tenth of a click's Python. A child
# process forked from this one starts with none, so two processes never hand out the same bytes.
_ID_BYTES = 12
_POOL_IDS = 1024
_pool = b""
_taken = 0


def _forget_pool() -> None:
    global _pool, _taken
    _pool, _taken = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def new_cookie_id() -> str:
    """A new visitor id: 96 random bits in URL-safe base64 (16 characters)."""
    global _pool, _taken
    if _taken >= len(_pool):
        _pool, _taken = os.urandom(_ID_BYTES * _POOL_IDS), 0
    raw = _pool[_taken : _taken + _ID_BYTES]
    _taken += _ID_BYTES
    return b64url(raw)


@lru_cache(maxsize=4)
def _cookie_attributes(secure: bool, max_age: int) -> bytes:
    return f"; Max-Age={max_age}; Path=/c/; HttpOnly; SameSite=Lax{'; Secure' if secure else ''}".encode("ascii")


def set_cookie(visitor_id: str, *, secure: bool, max_age: int) -> bytes:
    """The Set-Cookie value giving a browser its visitor id: for the click redirect only, never
    readable by a page's scripts, sent on a reader's click from another site (Lax)."""
    return _COOKIE_FIELD + visitor_id.encode("ascii") + _cookie_attributes(secure, max_age)
