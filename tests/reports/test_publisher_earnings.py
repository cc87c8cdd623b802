"""Publishers see their own conversions (their payout only, with the advertiser's reasons) and their
earnings, pending vs available per currency, on the dashboard, /publisher/conversions and the API."""

from __future__ import annotations

import re

from server.conversions import review
from server.conversions.tables import Conversion
from server.earnings import cpc
from server.ledger import postings
from server.ledger import service as ledger
from server.reports import earnings
from tests.conversions.factories import api_key, campaign_and_click, click_id_of, postback
from tests.earnings.factories import NOW, clicks, cpc_campaign, fund, join, spread
from tests.factories import error_text, login

REFUND_REASON = "Order 'A-1' was refunded <in full>"


async def three_conversions(settings, client, **terms):
    """A CPA campaign (10.00 a sale, the publisher earns 8.00) with three pending conversions."""
    setup, click_id, token = await campaign_and_click(settings, client, **terms)
    for i in range(3):
        if i:
            client._transport.client = (f"198.51.100.{i}", 4000)
            click_id = await click_id_of(client, setup.code)
        response = await postback(client, click_id=click_id, txn_id=f"order-{i}", token=token)
        assert response.json()["status"] == "accepted", response.text
    ids = (
        await Conversion.select(Conversion.id)
        .where(Conversion.campaign == setup.campaign_id)
        .order_by(Conversion.id)
        .output(as_list=True)
    )
    return setup, ids


def shown(html: str) -> dict[int, str]:
    return {int(i): s for i, s in re.findall(r'data-conversion-id="(\d+)" data-status="(\w+)"', html)}


async def test_a_publisher_lists_only_their_own_conversions_with_their_payout_and_the_reasons(
    app, client, new_client, settings
):
    mine, ids = await three_conversions(settings, client)
    theirs, their_ids = await three_conversions(settings, client, name="Other Shop")
    await fund(mine, 5_000)
    await app.state.click_buffer.flush()  # the click rows the self_conversion rule reads before any approval
    await review.decide(mine.advertiser, [ids[0]], "approve")
    await review.decide(mine.advertiser, [ids[1]], "reject", REFUND_REASON)

    browser = new_client()
    await login(browser, mine.publisher_email)
    page = await browser.get("/publisher/conversions")
    assert page.status_code == 200, page.text
    assert shown(page.text) == {ids[0]: "approved", ids[1]: "rejected", ids[2]: "pending"}
    assert not set(their_ids) & set(shown(page.text))
    assert "€8.00" in page.text
    assert "€10.00" not in page.text and "€2.00" not in page.text  # the advertiser's price, the network's margin
    assert "Order &#39;A-1&#39; was refunded &lt;in full&gt;" in page.text  # the reason, escaped
    assert "Spring Boots" in page.text and "Other Shop" not in page.text

    for status, expected in {"rejected": {ids[1]}, "pending": {ids[2]}, "reversed": set()}.items():
        page = await browser.get(f"/publisher/conversions?status={status}")
        assert page.status_code == 200 and set(shown(page.text)) == expected, status
    page = await browser.get("/publisher/conversions?status=paid")
    assert page.status_code == 422 and "Status must be" in error_text(page.text)
    assert shown(page.text) == {}
    assert await ledger.check() == []


async def test_the_dashboard_shows_conversions_by_status_and_earnings_pending_vs_available(
    app, client, new_client, settings
):
    setup, ids = await three_conversions(settings, client, hold_days=30)
    await fund(setup, 5_000)
    await app.state.click_buffer.flush()  # the click rows the self_conversion rule reads before any approval
    await review.decide(setup.advertiser, [ids[0]], "approve")  # charged: in publisher_pending
    await review.decide(setup.advertiser, [ids[1]], "reject", "Test order")
    # The publisher also brings CPC clicks to a campaign with no hold (released at once) ...
    cpc_setup = await cpc_campaign(settings, price="0.50", payout="0.40", hold_days=0)
    await fund(cpc_setup, 10_000)
    await clicks(
        cpc_setup, spread(10, 5), publisher_id=setup.publisher.id, link_id=await join(cpc_setup, setup.publisher)
    )
    # ... and to one whose advertiser cannot pay yet (waiting: pending, not charged).
    poor = await cpc_campaign(settings, price="1.00", payout="0.60")
    await clicks(poor, spread(10, 2), publisher_id=setup.publisher.id, link_id=await join(poor, setup.publisher))
    await cpc.run(now=NOW)

    [money] = await earnings.money_of(setup.publisher.id)
    # Pending: the pending conversion (8.00) and the waiting CPC hour (1.20), not charged yet,
    # plus the approved conversion in its hold (8.00). Available: the released CPC hour (2.00).
    assert (
        money.currency,
        money.pending_uncharged_minor,
        money.pending_charged_minor,
        money.pending_minor,
        money.available_minor,
        money.receivable_minor,
    ) == ("EUR", 920, 800, 1_720, 200, 0)
    assert await earnings.conversion_counts(setup.publisher.id) == {
        "pending": 1,
        "approved": 1,
        "rejected": 1,
        "reversed": 0,
    }

    browser = new_client()
    await login(browser, setup.publisher_email)
    page = await browser.get("/publisher")
    assert page.status_code == 200, page.text
    assert re.search(r'data-testid="conversions-total">3<', page.text)
    assert '<span data-status="rejected">1 rejected</span>' in page.text
    assert re.search(r'data-testid="earnings-pending">€17.20<', page.text)
    assert re.search(r'data-testid="earnings-available">€2.00<', page.text)
    assert 'data-testid="earnings-receivable"' not in page.text
    assert page.text.count('data-testid="click-earnings-row"') == 2
    assert await ledger.check() == []


async def test_a_publisher_sees_what_they_owe_after_a_clawback_of_money_paid_out(client, new_client, settings):
    setup = await cpc_campaign(settings, price="0.50", payout="0.40", hold_days=0)
    await fund(setup, 10_000)
    await clicks(setup, spread(10, 5))
    await cpc.run(now=NOW)
    [row_id] = [
        r["reference_id"]
        for r in await ledger.LedgerTxn.select(ledger.LedgerTxn.reference_id).where(ledger.LedgerTxn.kind == "earning")
    ]
    # The 2.00 is paid out, then the clicks are found fraudulent and the earning reversed.
    await postings.reserve_payout(setup.publisher.id, 200, "EUR", reference_id=1, key="payout-line-1")
    await postings.reverse_earning(
        advertiser_id=setup.advertiser.id,
        publisher_id=setup.publisher.id,
        price=250,
        payout=200,
        currency="EUR",
        released=True,
        reference_type="click_hour",
        reference_id=row_id,
        key=f"click_hour:{row_id}:reversed",
    )
    [money] = await earnings.money_of(setup.publisher.id)
    assert (money.pending_minor, money.available_minor, money.receivable_minor) == (0, 0, 200)

    browser = new_client()
    await login(browser, setup.publisher_email)
    page = await browser.get("/publisher")
    assert re.search(r'data-testid="earnings-receivable">€2.00<', page.text)
    assert await ledger.check() == []


async def test_another_publisher_sees_none_of_it(client, new_client, settings):
    setup, _ = await three_conversions(settings, client)
    stranger, _ = await three_conversions(settings, client, name="Other Shop")
    await clicks(setup, spread(10, 3))  # CPA campaign: no CPC earnings anyway
    browser = new_client()
    await login(browser, stranger.publisher_email)
    page = await browser.get("/publisher/conversions")
    ids = set(
        await Conversion.select(Conversion.id).where(Conversion.publisher == setup.publisher.id).output(as_list=True)
    )
    assert ids and not ids & set(shown(page.text))
    response = await new_client().get(
        "/api/v1/publisher/earnings", headers={"authorization": f"Bearer {await api_key(stranger.publisher)}"}
    )
    assert response.json()["conversions"]["pending"] == 3  # their own three, not six


async def test_the_earnings_api_answers_a_publisher_key_and_refuses_an_advertiser_key(client, new_client, settings):
    setup = await cpc_campaign(settings, price="0.50", payout="0.40", hold_days=30)
    await fund(setup, 10_000)
    await clicks(setup, spread(10, 4))
    await cpc.run(now=NOW)
    api = new_client()

    response = await api.get(
        "/api/v1/publisher/earnings", headers={"authorization": f"Bearer {await api_key(setup.publisher)}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conversions"] == {"pending": 0, "approved": 0, "rejected": 0, "reversed": 0}
    assert body["balances"] == [
        {
            "currency": "EUR",
            "pending_minor": 160,
            "pending_uncharged_minor": 0,
            "pending_in_hold_minor": 160,
            "available_minor": 0,
            "receivable_minor": 0,
        }
    ]
    [row] = body["clicks"]
    assert (row["campaign_id"], row["valid_clicks"], row["paid_clicks"], row["pending_minor"]) == (
        setup.campaign_id,
        4,
        4,
        160,
    )
    assert "price" not in response.text and "margin" not in response.text

    refused = await api.get(
        "/api/v1/publisher/earnings", headers={"authorization": f"Bearer {await api_key(setup.advertiser)}"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "wrong_role"
    anonymous = await api.get("/api/v1/publisher/earnings")
    assert anonymous.status_code == 401
