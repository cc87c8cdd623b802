"""Offer tokens carry the slot, creative, campaign, link, publisher and expiry under an HMAC: only
affnet's key makes them, and any change to one makes it worthless."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.ads import offers
from server.tracking.tokens import issue_click_id

KEY = b"k" * 32
ids = st.integers(min_value=0, max_value=offers.MAX_ID)


@given(
    slot=ids,
    creative=ids,
    campaign=ids,
    link=ids,
    publisher=ids,
    expires=st.integers(min_value=0, max_value=offers.MAX_TIME),
)
def test_an_offer_reads_back_exactly_as_issued(slot, creative, campaign, link, publisher, expires):
    token, offer_id = offers.issue(
        KEY,
        slot_id=slot,
        creative_id=creative,
        campaign_id=campaign,
        link_id=link,
        publisher_id=publisher,
        expires_at=expires,
    )
    offer = offers.read(KEY, token)
    assert offer == offers.Offer(offer_id, slot, creative, campaign, link, publisher, expires)
    assert len(offer_id) == 11 and len(token) <= offers.MAX_TOKEN_LENGTH


@given(position=st.integers(min_value=0, max_value=200), char=st.sampled_from("AQgw-_09azZ"))
def test_any_change_to_a_token_makes_it_worthless(position, char):
    token, _ = offers.issue(
        KEY, slot_id=7, creative_id=8, campaign_id=9, link_id=10, publisher_id=11, expires_at=1_800_000_000
    )
    position %= len(token)
    changed = token[:position] + char + token[position + 1 :]
    if changed != token:
        assert offers.read(KEY, changed) is None


def test_other_keys_and_other_kinds_of_token_are_refused():
    token, _ = offers.issue(
        KEY, slot_id=1, creative_id=2, campaign_id=3, link_id=4, publisher_id=5, expires_at=1_800_000_000
    )
    assert offers.read(b"x" * 32, token) is None
    assert offers.read(KEY, issue_click_id(KEY, 4, 1_700_000_000)) is None  # a click id is no offer
    for junk in ("", "=", "A" * 500, "é" * 40, token + "=", None):
        assert offers.read(KEY, junk) is None  # type: ignore[arg-type]
    every_nonce = {
        offers.issue(KEY, slot_id=1, creative_id=2, campaign_id=3, link_id=4, publisher_id=5, expires_at=1)[1]
        for _ in range(200)
    }
    assert len(every_nonce) == 200
