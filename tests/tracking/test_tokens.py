"""Click ids: they round-trip, differ per click, and anything not issued with the key reads as None."""

from __future__ import annotations

import base64
import hmac
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.tracking import tokens
from server.tracking.tokens import (
    MAX_CLICKED_AT,
    MAX_LINK_ID,
    MAX_TOKEN_LENGTH,
    ClickRef,
    issue_click_id,
    read_click_id,
)

KEY = b"click-id-test-key-0123456789abcdef"
OTHER_KEY = b"click-id-test-key-0123456789abcdeF"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_click_id_reads_back_as_its_link_and_time():
    token = issue_click_id(KEY, 42, NOW)
    assert read_click_id(KEY, token) == ClickRef(click_id=token, link_id=42, clicked_at=NOW)


def test_a_click_id_is_url_safe_without_padding_and_short():
    token = issue_click_id(KEY, 1234, NOW)
    assert set(token) <= URL_SAFE
    assert "=" not in token
    # version 1 + link 2 + time 5 + nonce 6 + mac 10 = 24 bytes = 32 characters
    assert len(token) == 32


def test_the_longest_click_id_fits_the_input_cap():
    token = issue_click_id(KEY, MAX_LINK_ID, MAX_CLICKED_AT)
    assert len(token) == MAX_TOKEN_LENGTH
    assert read_click_id(KEY, token) == ClickRef(token, MAX_LINK_ID, MAX_CLICKED_AT)


def test_the_smallest_values_round_trip():
    token = issue_click_id(KEY, 0, 0)
    assert read_click_id(KEY, token) == ClickRef(token, 0, 0)


def test_the_mac_and_nonce_are_wide_enough():
    token = issue_click_id(KEY, 1, NOW)
    # 1 version + 1 link + 5 time, then 6 bytes of nonce and 10 of MAC (80 bits).
    assert len(_raw(token)) == 1 + 1 + 5 + 6 + 10


def test_two_clicks_on_one_link_in_one_second_get_different_ids():
    tokens = {issue_click_id(KEY, 7, NOW) for _ in range(20_000)}
    assert len(tokens) == 20_000
    assert all(read_click_id(KEY, t) == ClickRef(t, 7, NOW) for t in list(tokens)[:100])


@pytest.mark.parametrize(
    ("link_id", "clicked_at"), [(-1, NOW), (MAX_LINK_ID + 1, NOW), (1, -1), (1, MAX_CLICKED_AT + 1)]
)
def test_issuing_refuses_values_out_of_range(link_id, clicked_at):
    with pytest.raises(ValueError):
        issue_click_id(KEY, link_id, clicked_at)


def test_changing_any_byte_of_a_click_id_makes_it_unreadable():
    token = issue_click_id(KEY, 987_654, NOW)
    raw = _raw(token)
    for position in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            tampered = bytearray(raw)
            tampered[position] ^= flip
            assert read_click_id(KEY, _text(bytes(tampered))) is None, (position, flip)


def test_changing_any_character_of_a_click_id_makes_it_unreadable():
    token = issue_click_id(KEY, 987_654, NOW)
    for position in range(len(token)):
        for replacement in "Aa0-_Zz9":
            if replacement == token[position]:
                continue
            tampered = token[:position] + replacement + token[position + 1 :]
            assert read_click_id(KEY, tampered) is None, (position, replacement)


def test_another_spelling_of_the_same_bytes_is_refused():
    # The last character of a 31-character token carries 4 unused low bits; issued ids keep them zero.
    token = issue_click_id(KEY, 5, NOW)
    assert len(token) == 31
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    same_bytes = token[:-1] + alphabet[alphabet.index(token[-1]) | 1]
    assert _raw(same_bytes) == _raw(token)
    assert read_click_id(KEY, same_bytes) is None


def test_a_click_id_issued_under_another_key_is_refused():
    assert read_click_id(OTHER_KEY, issue_click_id(KEY, 3, NOW)) is None
    assert read_click_id(KEY, issue_click_id(OTHER_KEY, 3, NOW)) is None


def test_truncated_and_extended_click_ids_are_refused():
    token = issue_click_id(KEY, 3, NOW)
    for cut in range(len(token)):
        assert read_click_id(KEY, token[:cut]) is None, cut
    assert read_click_id(KEY, token + "A") is None
    assert read_click_id(KEY, token + "AAAA") is None
    assert read_click_id(KEY, "A" + token) is None


def test_padding_whitespace_and_standard_base64_are_refused():
    token = issue_click_id(KEY, 3, NOW)
    assert read_click_id(KEY, token + "=") is None
    assert read_click_id(KEY, f" {token}") is None
    assert read_click_id(KEY, f"{token}\n") is None
    # Standard base64 letters for the two URL-safe ones: same bytes, not the id we issued.
    std = token.replace("-", "+").replace("_", "/")
    if std != token:
        assert read_click_id(KEY, std) is None


def test_a_validly_signed_token_of_another_version_is_refused():
    body = b"\x02" + b"\x05" + b"\x80\x80\x80\x80\x01" + bytes(6)
    forged = _text(body + hmac.digest(KEY, tokens.CONTEXT + body, "sha256")[: tokens.MAC_BYTES])
    assert read_click_id(KEY, forged) is None


@pytest.mark.parametrize(
    "body",
    [
        b"\x01\x05\x80",  # the time runs into the nonce
        b"\x01\x85\x00" + b"\x01",  # link id spelled with a needless zero group
        b"\x01\x05\x01\x01",  # a byte left over between the time and the nonce
        b"\x01" + b"\xff" * 9 + b"\x01" + b"\x01",  # link id longer than nine bytes
        b"\x01\x05" + b"\xff" * 5 + b"\x7f",  # time above 2**40
    ],
)
def test_a_signed_but_malformed_body_is_refused(body):
    # Even the holder of the key cannot get a malformed body read as a click.
    body = body + bytes(6)
    token = _text(body + hmac.digest(KEY, tokens.CONTEXT + body, "sha256")[: tokens.MAC_BYTES])
    assert len(token) <= MAX_TOKEN_LENGTH
    assert read_click_id(KEY, token) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "A",
        "====",
        "not a click id",
        "A" * 31,
        "_" * 43,
        "A" * 44,
        "A" * 10_000_000,
        "é" * 32,
        "\x00" * 32,
        "AQXWt5DYBt1YyS-G0kap03jIyrdybl0\udcff",
        "AQXWt5DYBt1YyS+G0kap03jIyrdybl0",
        "AQXWt5DYBt1YyS.G0kap03jIyrdybl0",
    ],
)
def test_garbage_reads_as_none(garbage):
    assert read_click_id(KEY, garbage) is None


@pytest.mark.parametrize("not_text", [None, 42, b"AQXWt5DYBt1YyS-G0kap03jIyrdybl0", ["x"]])
def test_values_that_are_not_text_read_as_none(not_text):
    assert read_click_id(KEY, not_text) is None


@given(
    link_id=st.integers(min_value=0, max_value=MAX_LINK_ID),
    clicked_at=st.integers(min_value=0, max_value=MAX_CLICKED_AT),
)
def test_any_link_and_time_round_trip(link_id, clicked_at):
    token = issue_click_id(KEY, link_id, clicked_at)
    assert len(token) <= MAX_TOKEN_LENGTH
    assert set(token) <= URL_SAFE
    assert read_click_id(KEY, token) == ClickRef(token, link_id, clicked_at)
    assert read_click_id(OTHER_KEY, token) is None


@given(st.text(max_size=60))
def test_arbitrary_text_never_raises_and_is_never_read_as_a_click(text):
    assert read_click_id(KEY, text) is None
