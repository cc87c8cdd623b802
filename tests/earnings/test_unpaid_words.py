"""Why clicks or impressions went unpaid is stored in English when an hour is priced, and read in the
publisher's language: every wording the pricing writes is known, part by part."""

from __future__ import annotations

from server.core.locale import using
from server.earnings import cpc, cpm
from server.earnings.words import unpaid_words


def test_every_reason_the_cpc_pricing_stores_reads_in_french_and_italian():
    stored = cpc.describe(
        cpc.Share(valid=20, paid=10, over_publisher_cap=1, over_campaign_cap=4, over_budget=5),
        {"cap_publisher_clicks_daily": 100, "cap_clicks_daily": 1_000},
        "the daily budget",
    )
    assert stored == (
        "1 over the daily cap of 100 clicks per publisher; 4 over the campaign's daily cap of 1000 clicks; "
        "5 beyond what the daily budget still allowed"
    )
    with using("fr_FR"):
        assert unpaid_words(stored) == (
            "1 au-delà du plafond quotidien de 100 clics par éditeur ; "
            "4 au-delà du plafond quotidien de la campagne (1\u202f000 clics) ; "
            "5 au-delà de ce que permettait encore le budget quotidien"
        )
    with using("it_IT"):
        assert unpaid_words(stored) == (
            "1 oltre il limite giornaliero di 100 clic per publisher; "
            "4 oltre il limite giornaliero della campagna (1.000 clic); "
            "5 oltre quanto consentiva ancora il budget giornaliero"
        )
    assert unpaid_words(stored) == stored.replace("1000", "1,000")  # English as stored, numbers in its format


def test_every_budget_a_cpm_hour_can_hit_reads_in_french_and_what_is_unknown_is_shown_as_stored():
    row = cpm.Row(publisher=1, valid=1_500, paid=1_000, price=0, payout=0, margin=0)
    with using("fr_FR"):
        assert unpaid_words(cpm.describe(row, "the total budget")) == (
            "500 au-delà de ce que permettait encore le budget total"
        )
        assert unpaid_words(cpm.describe(row, "")) == "500 au-delà de ce que permettait encore le budget"
        assert unpaid_words(cpm.describe(cpm.Row(1, 10, 10, 0, 0, 0), "the total budget")) == ""
        assert unpaid_words("an older wording; 1 beyond what the budget still allowed") == (
            "an older wording ; 1 au-delà de ce que permettait encore le budget"
        )
