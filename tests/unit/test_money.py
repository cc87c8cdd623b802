"""Money arithmetic: integer minor units, one rounding rule, every cent conserved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.core import money
from server.core.errors import Invalid


@given(sale=st.integers(0, 10**12), adv=st.integers(0, 10_000), pub_share=st.integers(0, 10_000))
def test_revshare_split_conserves_every_cent(sale, adv, pub_share):
    pub = adv * pub_share // 10_000  # any publisher rate up to the advertiser's
    price, payout, margin = money.revshare_split(sale, adv, pub)
    assert price == payout + margin
    assert 0 <= payout <= price <= sale
    assert margin >= 0
    # Rounded down, never by a whole unit or more.
    assert price * 10_000 <= sale * adv < (price + 1) * 10_000


def test_revshare_rounding_example():
    # 8 % of 19.99 is 1.5992: the advertiser pays 1.59 at 8 %; at 6.5 % the publisher gets 1.29.
    assert money.revshare_split(1999, 800, 650) == (159, 129, 30)


def test_splits_refuse_a_publisher_above_the_advertiser():
    with pytest.raises(ValueError):
        money.revshare_split(1000, 500, 600)
    with pytest.raises(ValueError):
        money.flat_split(100, 101)


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("12.34", "EUR", 1234),
        ("500", "JPY", 500),
        ("1.0050", "KWD", 1005),
        ("0", "USD", 0),
        ("1,250.50", "USD", 125050),
    ],
)
def test_parse_amount_reads_minor_units_without_floats(text, code, minor):
    assert money.parse_amount(text, code, field="f", label="Amount") == minor


@pytest.mark.parametrize("text", ["-1", "1.234", "abc", "NaN", "Infinity", ""])
def test_parse_amount_refuses_what_is_not_an_amount(text):
    with pytest.raises(Invalid):
        money.parse_amount(text, "EUR", field="f", label="Amount")
