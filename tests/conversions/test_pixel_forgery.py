"""Issue 14, "the pixel mints money": /px/{key}.gif is public, so a publisher can click their own
link and fire it with invented txn_ids and any amount. Each attack as the audit ran it, now
harmless: one conversion per click (the goal's limit, counted at the database), a RevShare sale
above the goal's maximum refused and never charged, a pixel the advertiser switched off records
nothing, and no single report pauses a campaign. The ledger check is clean after each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from server.billing import service as billing
from server.campaigns.tables import Campaign, Goal
from server.conversions import approval, review
from server.conversions.tables import Conversion
from server.http.conversions.public import PIXEL_GIF
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.reports import rollup
from tests.conversions.factories import api_key, campaign_and_click, click_id_of, postback, secrets_of
from tests.earnings.factories import fund
from tests.factories import login, post_form
from tests.tracking.factories import campaign_form

REVSHARE = {"goal_0_model": "revshare", "goal_0_advertiser": "10", "goal_0_publisher": "8", "hold_days": "0"}


async def pixel(client, key: str, **params: str):
    response = await client.get(f"/px/{key}.gif", params=params)
    assert response.content == PIXEL_GIF and response.headers["content-type"] == "image/gif"
    return response


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


async def campaign_status(campaign_id: int) -> str:
    return (await Campaign.select(Campaign.status).where(Campaign.id == campaign_id).first())["status"]


async def test_three_pixel_hits_with_invented_txn_ids_on_ones_own_click_make_one_conversion(app, client, settings):
    s, click_id, _ = await campaign_and_click(settings, client, hold_days="0")  # the publisher clicks their own link
    key = (await secrets_of(s.campaign_id))["public_key"]
    await fund(s, 100_000)
    hits = [await pixel(client, key, click_id=click_id, txn_id=f"invented-{i}") for i in range(3)]
    assert [(h.status_code, h.headers["x-affnet-result"]) for h in hits] == [
        (200, "accepted"),
        (409, "click_limit_reached"),
        (409, "click_limit_reached"),
    ]
    [row] = await Conversion.select()
    assert (row["txn_id"], row["source"], row["click_ordinal"]) == ("invented-0", "pixel", 1)
    # The first report repeated is still its duplicate, not a refusal.
    again = await pixel(client, key, click_id=click_id, txn_id="invented-0")
    assert (again.status_code, again.headers["x-affnet-result"]) == (200, "duplicate")
    # A postback or an API call for the same click is held to the same limit.
    token = (await secrets_of(s.campaign_id))["postback_secret"]
    refused = await postback(client, click_id=click_id, txn_id="server-side", token=token)
    assert refused.status_code == 409 and refused.json()["code"] == "click_limit_reached", refused.text
    api = await client.post(
        "/api/v1/conversions",
        json={"click_id": click_id, "txn_id": "api-side"},
        headers={"authorization": f"Bearer {await api_key(s.advertiser)}"},
    )
    assert api.status_code == 409 and api.json()["results"][0]["code"] == "click_limit_reached"
    outcome = await approval.run(now=later())
    assert outcome.approved == 1
    assert await ledger.balance(K.advertiser_balance, "EUR", s.advertiser.id) == 100_000 - 1_000
    assert await ledger.check() == []


async def test_simultaneous_reports_on_one_click_cannot_both_take_its_conversion(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client)
    key = (await secrets_of(s.campaign_id))["public_key"]
    hits = await asyncio.gather(
        *(pixel(client, key, click_id=click_id, txn_id=f"race-{i}") for i in range(4)),
        *(postback(client, click_id=click_id, txn_id=f"race-pb-{i}", token=token) for i in range(4)),
    )
    statuses = sorted(h.status_code for h in hits)
    assert statuses == [200] + [409] * 7, [h.text or h.headers.get("x-affnet-result") for h in hits]
    assert await Conversion.count() == 1
    assert await ledger.check() == []


async def test_a_goal_may_allow_several_conversions_per_click_and_no_more(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client, goal_0_per_click="3")
    assert (await Goal.select(Goal.conversions_per_click).first())["conversions_per_click"] == 3
    answers = [await postback(client, click_id=click_id, txn_id=f"order-{i}", token=token) for i in range(4)]
    assert [a.json()["status"] for a in answers] == ["accepted", "accepted", "accepted", "refused"]
    assert answers[3].status_code == 409 and answers[3].json()["code"] == "click_limit_reached"
    assert "3 conversions" in answers[3].json()["message"]
    ordinals = [r["click_ordinal"] for r in await Conversion.select(Conversion.click_ordinal).order_by(Conversion.id)]
    assert ordinals == [1, 2, 3]
    # Another click of the same link has its own allowance.
    client._transport.client = ("198.51.100.77", 4000)
    other = await click_id_of(client, s.code)
    assert (await postback(client, click_id=other, txn_id="order-other", token=token)).json()["status"] == "accepted"


async def test_a_billion_euro_sale_on_revshare_is_refused_and_charges_nothing(app, client, settings):
    s, click_id, _ = await campaign_and_click(settings, client, **REVSHARE)
    key = (await secrets_of(s.campaign_id))["public_key"]
    await fund(s, 50_000)
    # The advertiser left the largest sale empty on the form: 10,000.00 EUR.
    assert (await Goal.select(Goal.max_sale_minor).first())["max_sale_minor"] == 1_000_000
    hit = await pixel(client, key, click_id=click_id, txn_id="forged-1", amount="1000000000000")
    assert (hit.status_code, hit.headers["x-affnet-result"]) == (422, "amount_above_max")
    assert await Conversion.count() == 0
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.paused_campaigns) == (0, [])
    assert await campaign_status(s.campaign_id) == "active"
    assert await ledger.balance(K.advertiser_balance, "EUR", s.advertiser.id) == 50_000
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion") == 0
    # The click's one conversion is still there for the real sale, at most the maximum.
    ok = await pixel(client, key, click_id=click_id, txn_id="real-1", amount="1000000")
    assert (ok.status_code, ok.headers["x-affnet-result"]) == (200, "accepted")
    assert await ledger.check() == []


async def test_the_largest_sale_is_the_advertisers_to_set(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client, goal_0_max_sale="250.00", **REVSHARE)
    assert (await Goal.select(Goal.max_sale_minor).first())["max_sale_minor"] == 25_000
    above = await postback(client, click_id=click_id, txn_id="o1", token=token, amount=25_001)
    assert above.status_code == 422 and above.json()["code"] == "amount_above_max", above.text
    assert "€250.00" in above.json()["message"]
    at = await postback(client, click_id=click_id, txn_id="o2", token=token, amount=25_000)
    assert at.json()["status"] == "accepted" and at.json()["payout"]["price_minor"] == 2_500
    # The form shows it back, and refuses nonsense without changing anything.
    await login(client, s.advertiser.email)
    page = (await client.get(f"/advertiser/campaigns/{s.campaign_id}/edit")).text
    assert 'name="goal_0_max_sale" value="250.00"' in page and 'name="goal_0_per_click" value="1"' in page
    bad = await post_form(
        client,
        f"/advertiser/campaigns/{s.campaign_id}/edit",
        campaign_form(goal_0_per_click="0", goal_0_max_sale="250.00", **REVSHARE),
    )
    assert bad.status_code == 422 and "Conversions per click" in bad.text
    assert (await Goal.select(Goal.conversions_per_click).first())["conversions_per_click"] == 1


async def test_a_pixel_the_advertiser_switched_off_records_nothing(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client)
    key = (await secrets_of(s.campaign_id))["public_key"]
    await login(client, s.advertiser.email)
    edit = (await client.get(f"/advertiser/campaigns/{s.campaign_id}/edit")).text
    assert 'name="pixel"' in edit and '<option value="on" selected>' in edit
    saved = await post_form(client, f"/advertiser/campaigns/{s.campaign_id}/edit", campaign_form(pixel="off"))
    assert saved.status_code == 303, saved.text
    assert (await Campaign.select(Campaign.pixel_enabled).first())["pixel_enabled"] is False
    assert "The pixel is <strong>off</strong>" in (await client.get(f"/advertiser/campaigns/{s.campaign_id}")).text
    hit = await pixel(client, key, click_id=click_id, txn_id="p1")
    assert (hit.status_code, hit.headers["x-affnet-result"]) == (403, "pixel_disabled")
    assert await Conversion.count() == 0
    # The server-to-server postback still works.
    assert (await postback(client, click_id=click_id, txn_id="p1", token=token)).json()["status"] == "accepted"
    [row] = await Conversion.select()
    assert row["source"] == "postback"
    assert await ledger.check() == []


async def _revshare_conversions(settings, client, sales: list[int], *, balance: int):
    """A RevShare campaign (10 % of the sale, no hold) with one pixel conversion per click."""
    s, click_id, _ = await campaign_and_click(settings, client, goal_0_max_sale="100000.00", **REVSHARE)
    key = (await secrets_of(s.campaign_id))["public_key"]
    for i, sale in enumerate(sales):
        if i:
            client._transport.client = (f"198.51.100.{i + 1}", 4000)
            click_id = await click_id_of(client, s.code)
        hit = await pixel(client, key, click_id=click_id, txn_id=f"t{i}", amount=str(sale))
        assert hit.headers["x-affnet-result"] == "accepted"
    await fund(s, balance)
    return s


async def test_one_report_priced_above_the_balance_waits_alone_and_the_campaign_keeps_running(app, client, settings):
    # 10 % of 9,000.00 = 900.00 against a 50.00 balance; the campaign's ordinary 10.00 sale is paid.
    s = await _revshare_conversions(settings, client, [900_000, 10_000], balance=5_000)
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.unfunded, outcome.paused_campaigns) == (1, 1, [])
    assert await campaign_status(s.campaign_id) == "active"
    big = await Conversion.select().where(Conversion.txn_id == "t0").first()
    assert big["status"] == "pending" and big["status_reason"] == approval.WAITING_ALONE
    assert await ledger.balance(K.advertiser_balance, "EUR", s.advertiser.id) == 5_000 - 1_000
    # Funds arrive: the next run charges it.
    await fund(s, 100_000)
    assert (await approval.run(now=later())).approved == 1
    assert await ledger.balance(K.advertiser_balance, "EUR", s.advertiser.id) == 5_000 - 1_000 + 100_000 - 90_000
    assert await ledger.check() == []


async def test_one_report_cannot_drain_the_balance_from_under_the_others_and_pause(app, client, settings):
    # The 900.00 conversion alone fits the 1,000.00 balance, but then the two 100.00 ones would not.
    s = await _revshare_conversions(settings, client, [900_000, 100_000, 100_000], balance=100_000)
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.paused_campaigns) == (2, [])
    assert await campaign_status(s.campaign_id) == "active"
    assert (await Conversion.select().where(Conversion.txn_id == "t0").first())["status"] == "pending"
    assert await ledger.balance(K.advertiser_balance, "EUR", s.advertiser.id) == 100_000 - 2 * 10_000
    assert await ledger.check() == []


async def test_a_campaign_short_even_without_its_largest_report_still_pauses(app, client, settings):
    s = await _revshare_conversions(settings, client, [100_000, 100_000], balance=5_000)  # 2 × 10.00 > 5.00
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.paused_campaigns) == (0, [s.campaign_id])
    assert await campaign_status(s.campaign_id) == "paused"
    assert await ledger.balance(K.advertiser_balance, "EUR", s.advertiser.id) == 5_000
    assert await ledger.check() == []


async def test_one_report_cannot_take_the_balance_below_the_auto_pause_threshold(app, client, settings):
    # 900.00 would leave 100.00 of 1,000.00, below the advertiser's 500.00 threshold: every campaign
    # of theirs would pause at the next check. It waits alone; the ordinary 10.00 one is charged.
    s = await _revshare_conversions(settings, client, [900_000, 10_000], balance=100_000)
    await billing.save_settings(s.advertiser, {"currency": "EUR", "auto_pause_threshold": "500.00"})
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.paused_campaigns) == (1, [])
    assert await ledger.balance(K.advertiser_balance, "EUR", s.advertiser.id) == 100_000 - 1_000
    assert await billing.enforce_all_thresholds() == []
    assert await campaign_status(s.campaign_id) == "active"
    big = await Conversion.select().where(Conversion.txn_id == "t0").first()
    assert big["status"] == "pending" and big["status_reason"] == approval.WAITING_ALONE
    # The advertiser may still approve it by hand: their threshold is theirs to cross.
    await app.state.click_buffer.flush()  # the click rows the self_conversion rule reads before any approval
    decision = await review.decide(s.advertiser, [big["id"]], "approve")
    assert decision.approved == [big["id"]]
    assert await billing.enforce_all_thresholds() == [s.campaign_id]
    assert await ledger.check() == []


async def test_pixel_conversions_are_marked_in_review_lists_and_reports(app, client, new_client, settings):
    s, click_id, token = await campaign_and_click(settings, client)
    key = (await secrets_of(s.campaign_id))["public_key"]
    assert (await pixel(client, key, click_id=click_id, txn_id="by-pixel")).status_code == 200
    client._transport.client = ("198.51.100.9", 4000)
    other = await click_id_of(client, s.code)
    assert (await postback(client, click_id=other, txn_id="by-postback", token=token)).status_code == 200

    advertiser = new_client()
    await login(advertiser, s.advertiser.email)
    page = (await advertiser.get("/advertiser/conversions")).text
    assert '<span class="badge warn"' in page and ">pixel</span>" in page and "postback" in page
    only_pixel = (await advertiser.get("/advertiser/conversions", params={"source": "pixel"})).text
    assert "by-pixel" in only_pixel and "by-postback" not in only_pixel
    bogus = await advertiser.get("/advertiser/conversions", params={"source": "fax"})
    assert 400 <= bogus.status_code < 500 and "Reported by must be one of" in bogus.text
    publisher = new_client()
    await login(publisher, s.publisher_email)
    mine = (await publisher.get("/publisher/conversions")).text
    assert '<td data-testid="source">pixel</td>' in mine and '<td data-testid="source">postback</td>' in mine

    await rollup.roll_up(datetime.now(UTC) + timedelta(minutes=1))
    report = await advertiser.get(
        "/api/v1/advertiser/reports",
        params={"tz": "UTC"},
        headers={"authorization": f"Bearer {await api_key(s.advertiser)}"},
    )
    [row] = report.json()["tables"]["by_campaign"]
    assert (row["conversions"], row["pixel_conversions"]) == (2, 1)
    assert "Of which by pixel" in (await advertiser.get("/advertiser/reports")).text
