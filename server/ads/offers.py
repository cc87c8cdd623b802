"""Offer tokens: what an ad decision hands out, signed, so the view beacon, the ad's frame and the
click can trust it without a database look-up.

An offer is one ad shown once: a random nonce (the offer id, unique in `impression.offer`), the
slot, the creative, the campaign, the publisher's tracked link and publisher, and an expiry. The
view URL, the frame URL and the click URL all carry the same token; a view counts once per offer
and a click through /c/… is valid only after that view and only once.

Layout (before URL-safe base64 without padding), in the manner of server/tracking/tokens.py:

    version    1 byte    0x01
    nonce      8 bytes   random; its base64 (11 characters) is the offer id
    slot       varint    unsigned LEB128
    creative   varint
    campaign   varint
    link       varint
    publisher  varint
    expires    varint    unix seconds
    mac        12 bytes  HMAC-SHA256(key, CONTEXT + everything above), truncated to 96 bits

The key is derived from SECRET_KEY for this purpose alone, and CONTEXT is bound into every MAC,
so neither a click id nor a CSRF token can pass for an offer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from server.tracking.tokens import SignedFormat, _read_varint, _varint, b64url

VERSION = 1
CONTEXT = b"affnet.ad-offer\x00"
NONCE_BYTES = 8
MAC_BYTES = 12
MAX_ID = 2**63 - 1
MAX_TIME = 2**40 - 1
_FIELDS = 6  # slot, creative, campaign, link, publisher, expires
_MIN_RAW = 1 + NONCE_BYTES + _FIELDS + MAC_BYTES
_MAX_RAW = 1 + NONCE_BYTES + 9 * 5 + 6 + MAC_BYTES
OFFERS = SignedFormat(CONTEXT, VERSION, MAC_BYTES, _MIN_RAW, _MAX_RAW)
MAX_TOKEN_LENGTH = OFFERS.max_length


@dataclass(frozen=True, slots=True)
class Offer:
    """What a valid offer token says."""

    offer_id: str  # 11 URL-safe characters
    slot_id: int
    creative_id: int
    campaign_id: int
    link_id: int
    publisher_id: int
    expires_at: int  # unix seconds

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


def issue(
    key: bytes, *, slot_id: int, creative_id: int, campaign_id: int, link_id: int, publisher_id: int, expires_at: int
) -> tuple[str, str]:
    """A new signed offer: (token, offer id). Every call draws a new nonce."""
    ids = (slot_id, creative_id, campaign_id, link_id, publisher_id)
    if not all(0 <= i <= MAX_ID for i in ids):
        raise ValueError(f"ids out of range: {ids}")
    if not 0 <= expires_at <= MAX_TIME:
        raise ValueError(f"expires_at out of range: {expires_at}")
    # The MAC, not the nonce, makes an offer unforgeable, and a view is claimed by a signed token:
    # so the nonce only has to be unique, and 64 bits from the process's PRNG (seeded from the OS,
    # reseeded in a forked child) are, without os.urandom's system call and GIL hand-off per decision.
    nonce = random.getrandbits(NONCE_BYTES * 8).to_bytes(NONCE_BYTES)
    body = bytes([VERSION]) + nonce + b"".join(_varint(i) for i in ids) + _varint(expires_at)
    return OFFERS.seal(key, body), b64url(nonce)


def read(key: bytes, token: str) -> Offer | None:
    """The offer a token stands for, or None if this key did not issue it exactly as given.
    Never raises: tokens come from URLs anyone can type."""
    raw = OFFERS.open(key, token)
    if raw is None:
        return None
    body_end = len(raw)
    pos = 1 + NONCE_BYTES
    values = []
    for max_bytes in (9, 9, 9, 9, 9, 6):
        value, pos = _read_varint(raw, pos, body_end, max_bytes)
        if value < 0 or value > MAX_ID:
            return None
        values.append(value)
    if pos != body_end:
        return None
    slot_id, creative_id, campaign_id, link_id, publisher_id, expires_at = values
    return Offer(
        offer_id=b64url(raw[1 : 1 + NONCE_BYTES]),
        slot_id=slot_id,
        creative_id=creative_id,
        campaign_id=campaign_id,
        link_id=link_id,
        publisher_id=publisher_id,
        expires_at=expires_at,
    )
