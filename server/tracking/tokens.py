"""Click ids: short signed tokens that carry the link and the time of a click.

A click id travels to the advertiser's landing page (`?click_id=…`) and comes back in the
conversion postback. Because it carries what attribution needs, a conversion can be attributed
even when the click row has not been written yet (clicks are buffered), and a forged or edited id
is refused without a database look-up.

Layout (before URL-safe base64 without padding):

    version   1 byte     0x01; lets a later format be read alongside this one for a whole attribution window
    link_id   varint     unsigned LEB128, 1..9 bytes (0 .. 2**63-1)
    clicked   varint     unix seconds, unsigned LEB128, 1..6 bytes (0 .. 2**40-1; 5 bytes until the year 3058)
    nonce     6 bytes    random: two clicks on one link in one second get different ids
    mac       10 bytes   HMAC-SHA256(key, CONTEXT + everything above), truncated to 80 bits

A link id under 128 and a present-day time give 23 bytes, 31 characters; the longest token is
32 bytes, 43 characters. Varints rather than fixed fields save 6 to 9 characters for real link ids.
"""

from __future__ import annotations

import binascii
import hmac
import random
from dataclasses import dataclass
from functools import lru_cache

from server.core import keyed

VERSION = 1
_VERSION_BYTE = bytes([VERSION])
# Bound into every MAC so a key shared with another signer (CSRF, view tokens) cannot be used to
# pass one kind of token off as another.
CONTEXT = b"affnet.click-id\x00"
NONCE_BYTES = 6
MAC_BYTES = 10
MAX_LINK_ID = 2**63 - 1
MAX_CLICKED_AT = 2**40 - 1
_MIN_RAW = 1 + 1 + 1 + NONCE_BYTES + MAC_BYTES
_MAX_RAW = 1 + 9 + 6 + NONCE_BYTES + MAC_BYTES
# Longer text cannot be a click id: refuse it before spending any work on it.
MAX_TOKEN_LENGTH = (_MAX_RAW * 8 + 5) // 6


@dataclass(frozen=True, slots=True)
class ClickRef:
    """What a valid click id says: the id itself, the tracked link and when it was clicked (unix seconds)."""

    click_id: str
    link_id: int
    clicked_at: int


@lru_cache(maxsize=1024)  # link ids and the current second repeat from click to click
def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: bytes, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """The value at pos and the position after it; (-1, pos) if it runs past end, is too long or not minimal."""
    value = 0
    shift = 0
    for i in range(pos, min(end, pos + max_bytes)):
        byte = raw[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            # A trailing zero group means a longer spelling of a smaller number: one value, one token.
            if byte == 0 and i > pos:
                return -1, pos
            return value, i + 1
        shift += 7
    return -1, pos


@lru_cache(maxsize=16)
def _keyed(key: bytes, context: bytes) -> keyed.Mac:
    """An HMAC already fed the key and the context; copying it saves a third of each signature's cost."""
    return keyed.prepared(key, context)


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def b64url(raw: bytes) -> str:
    """URL-safe base64 without padding (base64.urlsafe_b64encode's bytes, without its two Python calls)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URL_SAFE).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SignedFormat:
    """One kind of short signed token (click ids here, ad offers in server/ads/offers.py): a version
    byte, a body, and an HMAC-SHA256 over `context` + version + body truncated to `mac_bytes`, all
    in URL-safe base64 without padding. The context is bound into every MAC, so a key shared with
    another signer cannot pass one kind of token off as another."""

    context: bytes
    version: int
    mac_bytes: int
    min_raw: int  # shortest and longest token in bytes, MAC included
    max_raw: int

    @property
    def max_length(self) -> int:
        return (self.max_raw * 8 + 5) // 6

    def mac(self, key: bytes, body: bytes) -> bytes:
        state = _keyed(key, self.context).copy()
        state.update(body)
        return state.digest()[: self.mac_bytes]

    def seal(self, key: bytes, body: bytes) -> str:
        """The token of `body` (which starts with the version byte)."""
        return b64url(body + self.mac(key, body))

    def open(self, key: bytes, token: object) -> bytes | None:
        """The signed bytes of a token this key issued exactly as given (version byte first, MAC
        left off), or None. Never raises: tokens come from URLs and postbacks anyone can type."""
        if not isinstance(token, str) or not (self.min_raw * 8 + 5) // 6 <= len(token) <= self.max_length:
            return None
        if not token.isascii() or len(token) % 4 == 1:
            return None
        try:
            # strict_mode refuses characters outside the alphabet instead of skipping them.
            raw = binascii.a2b_base64(
                token.replace("-", "+").replace("_", "/") + "=" * (-len(token) % 4), strict_mode=True
            )
        except (binascii.Error, ValueError):
            return None
        if not self.min_raw <= len(raw) <= self.max_raw or raw[0] != self.version:
            return None
        body_end = len(raw) - self.mac_bytes
        if not hmac.compare_digest(self.mac(key, raw[:body_end]), raw[body_end:]):
            return None
        # Base64 can spell the same bytes in several ways (unused low bits of the last character);
        # accept only the spelling we issue, so one token has exactly one spelling.
        if b64url(raw) != token:
            return None
        return raw[:body_end]


CLICK_IDS = SignedFormat(CONTEXT, VERSION, MAC_BYTES, _MIN_RAW, _MAX_RAW)


def issue_click_id(key: bytes, link_id: int, clicked_at: int) -> str:
    """A new click id for a click on link_id at clicked_at (unix seconds); every call gives a different id."""
    if not 0 <= link_id <= MAX_LINK_ID:
        raise ValueError(f"link_id out of range: {link_id}")
    if not 0 <= clicked_at <= MAX_CLICKED_AT:
        raise ValueError(f"clicked_at out of range: {clicked_at}")
    # The nonce only has to differ between clicks of one link in one second: the MAC, not the nonce,
    # makes ids unforgeable. So it comes from the process's PRNG (reseeded from the OS in a forked
    # child), not os.urandom, whose system call also hands the GIL to the SQLite writer's thread.
    body = (
        _VERSION_BYTE
        + _varint(link_id)
        + _varint(clicked_at)
        + random.getrandbits(NONCE_BYTES * 8).to_bytes(NONCE_BYTES)
    )
    return CLICK_IDS.seal(key, body)


def read_click_id(key: bytes, token: str) -> ClickRef | None:
    """The click a click id stands for, or None if it is not one this key issued, exactly as issued.

    Never raises: the input comes straight from a query string or a postback body.
    """
    raw = CLICK_IDS.open(key, token)
    if raw is None:
        return None
    nonce_start = len(raw) - NONCE_BYTES
    link_id, pos = _read_varint(raw, 1, nonce_start, 9)
    if link_id < 0 or link_id > MAX_LINK_ID:
        return None
    clicked_at, pos = _read_varint(raw, pos, nonce_start, 6)
    if clicked_at < 0 or clicked_at > MAX_CLICKED_AT or pos != nonce_start:
        return None
    return ClickRef(click_id=token, link_id=link_id, clicked_at=clicked_at)
