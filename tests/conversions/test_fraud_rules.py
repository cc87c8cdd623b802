"""Conversion fraud rules (server/conversions/rules.py): a postback a rule flags is accepted but
held, with its evidence; a held conversion is never charged (not by the job, not by an early
approval) until a reviewer releases it; rejecting it shows the reason to the publisher; each rule
can be tuned or switched off per campaign by its advertiser and network-wide by an admin; and
nobody reviews or tunes another advertiser's campaign."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.conversions import approval
from server.conversions.tables import Conversion, ConversionFlag
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.tracking.tokens import issue_click_id
from tests.conversions.factories import campaign_and_click, click_id_of, postback
from tests.factories import error_text, login, make_advertiser, post_form, staff_client

QUEUE = "/advertiser/review"


def clicks_ago(app, link_id: int, seconds: int, n: int) -> list[str]:
    """n click ids of the link signed as the redirect signs them, clicked `seconds` ago."""
    return [issue_click_id(app.state.redirector.token_key, link_id, int(time.time()) - seconds) for _ in range(n)]


async def report(client, click_id: str, txn_id: str, token: str) -> dict:
    response = await postback(client, click_id=click_id, txn_id=txn_id, token=token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "accepted", body
    return body


async def row(conversion_id: int) -> dict:
    return await Conversion.select().where(Conversion.id == conversion_id).first()


async def flags_of(conversion_id: int) -> list[dict]:
    return await ConversionFlag.select().where(ConversionFlag.conversion == conversion_id).order_by(ConversionFlag.id)


async def advertiser_browser(new_client, setup):
    browser = new_client()
    await login(browser, setup.advertiser.email)
    await browser.get(QUEUE)
    return browser


def held_ids(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'data-testid="held" data-conversion-id="(\d+)"', html)}


async def a_campaign_with_a_history(app, client, settings, *, samples: int = 20, **overrides):
    """A campaign whose publisher converted `samples` times, each two minutes after the click."""
    setup, _, token = await campaign_and_click(settings, client, **overrides)
    for i, click in enumerate(clicks_ago(app, setup.link_id, 120, samples)):
        await report(client, click, f"usual-{i}", token)
    return setup, token


async def too_fast_conversion(app, client, settings, **overrides):
    """The campaign's usual conversions, then one a second after a real click through the redirect."""
    setup, token = await a_campaign_with_a_history(app, client, settings, **overrides)
    click_id = await click_id_of(client, setup.code)
    body = await report(client, click_id, "instant-order", token)
    return setup, token, body["conversion_id"]


async def test_a_conversion_far_faster_than_the_campaigns_median_is_held_with_its_evidence(app, client, settings):
    setup, _, fast = await too_fast_conversion(app, client, settings)
    assert (await row(fast))["held"] is True
    usual = await Conversion.select(Conversion.held).where(Conversion.txn_id.like("usual-%"))
    assert [r["held"] for r in usual] == [False] * 20
    [flag] = await flags_of(fast)
    evidence = json.loads(flag["evidence"])
    assert flag["rule"] == "too_fast" and flag["decision"] == ""
    assert evidence["samples"] == 20 and 119 <= evidence["campaign_median_seconds"] <= 125
    assert evidence["percent_of_median"] == 10 and evidence["elapsed_seconds"] < evidence["limit_seconds"]


async def test_too_fast_waits_for_enough_samples(app, client, settings):
    setup, token = await a_campaign_with_a_history(app, client, settings, samples=19)
    body = await report(client, await click_id_of(client, setup.code), "instant-order", token)
    assert (await row(body["conversion_id"]))["held"] is False
    assert await ConversionFlag.count() == 0


async def test_the_advertiser_switching_too_fast_off_on_their_campaign_holds_nothing(app, client, new_client, settings):
    setup, token = await a_campaign_with_a_history(app, client, settings)
    browser = await advertiser_browser(new_client, setup)
    page = await browser.get(f"/advertiser/campaigns/{setup.campaign_id}/rules")
    assert page.status_code == 200 and 'name="too_fast.enabled"' in page.text
    # The form as a browser sends it with the too_fast box unticked (the rate box stays ticked).
    saved = await post_form(
        browser,
        f"/advertiser/campaigns/{setup.campaign_id}/rules",
        {"rate_anomaly.enabled": "1", "self_conversion.enabled": "1", "conversion_rate.enabled": "1"},
    )
    assert saved.status_code == 200 and "too_fast.enabled" in saved.text, saved.text
    body = await report(client, await click_id_of(client, setup.code), "instant-order", token)
    assert (await row(body["conversion_id"]))["held"] is False
    assert await ConversionFlag.count() == 0
    events = await AuditEvent.select().where(AuditEvent.action == "conversion_rules.changed")
    assert [(e["object_type"], e["object_id"], json.loads(e["detail"])["knob"]) for e in events] == [
        ("campaign", setup.campaign_id, "too_fast.enabled")
    ]


async def test_an_admins_network_floor_holds_an_instant_sale_everywhere(client, new_client, settings):
    admin, _ = await staff_client(new_client, Role.admin, first_page="/admin/conversion-rules")
    bad = await post_form(
        admin,
        "/admin/conversion-rules",
        {
            "too_fast.enabled": "1",
            "rate_anomaly.enabled": "1",
            "self_conversion.enabled": "1",
            "conversion_rate.enabled": "1",
            "too_fast.floor_seconds": "two",
        },
    )
    assert bad.status_code == 422 and "whole number" in error_text(bad.text)
    saved = await post_form(
        admin,
        "/admin/conversion-rules",
        {
            "too_fast.enabled": "1",
            "rate_anomaly.enabled": "1",
            "self_conversion.enabled": "1",
            "conversion_rate.enabled": "1",
            "too_fast.floor_seconds": "3",
        },
    )
    assert saved.status_code == 200, saved.text
    setup, click_id, token = await campaign_and_click(settings, client)
    body = await report(client, click_id, "instant-order", token)
    assert (await row(body["conversion_id"]))["held"] is True
    [flag] = await flags_of(body["conversion_id"])
    assert flag["rule"] == "too_fast" and json.loads(flag["evidence"])["floor_seconds"] == 3


async def test_a_publishers_volume_far_above_their_own_baseline_is_held(app, client, new_client, settings):
    setup, _, token = await campaign_and_click(settings, client)
    browser = await advertiser_browser(new_client, setup)
    saved = await post_form(
        browser,
        f"/advertiser/campaigns/{setup.campaign_id}/rules",
        {
            "too_fast.enabled": "1",
            "rate_anomaly.enabled": "1",
            "self_conversion.enabled": "1",
            "conversion_rate.enabled": "1",
            "rate_anomaly.min_daily": "1",
        },
    )
    assert saved.status_code == 200, saved.text
    # Their baseline: 28 conversions over the 14 days before today, two a day.
    for i in range(28):
        await report(client, await click_id_of(client, setup.code), f"past-{i}", token)
    ids = [r["id"] for r in await Conversion.select(Conversion.id).order_by(Conversion.id)]
    await Conversion.update({Conversion.held: False}).where(
        Conversion.id.is_in(ids)
    )  # held as they came (no baseline yet)
    await ConversionFlag.delete(force=True)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for i, conversion_id in enumerate(ids):
        at = today - timedelta(days=1 + i // 2) + timedelta(hours=1)
        await Conversion.update({Conversion.converted_at: at, Conversion.clicked_at: at - timedelta(seconds=1)}).where(
            Conversion.id == conversion_id
        )
    app.state.conversion_rules.clear()  # the baseline changed under the server: as after its minute
    # Two a day on average, five times that is 10: the first ten today pass, the eleventh is held.
    answers = [await report(client, await click_id_of(client, setup.code), f"today-{i}", token) for i in range(11)]
    held = [(await row(a["conversion_id"]))["held"] for a in answers]
    assert held == [False] * 10 + [True]
    [flag] = await flags_of(answers[-1]["conversion_id"])
    evidence = json.loads(flag["evidence"])
    assert flag["rule"] == "rate_anomaly"
    assert evidence == {
        "conversions_today": 11,
        "daily_mean_14d": "2.00",
        "multiple": 5,
        "min_daily": 1,
        "limit": "10.00",
    }


async def test_a_held_conversion_is_never_charged_until_released(app, client, new_client, settings):
    setup, _, fast = await too_fast_conversion(app, client, settings, hold_days=0)
    await postings.fund_advertiser(setup.advertiser.id, 100_000, "EUR", reference_id=1, key="fund-held")
    browser = await advertiser_browser(new_client, setup)
    # The job approves the 20 others and skips the held one.
    later = datetime.now(UTC) + timedelta(seconds=5)
    outcome = await approval.run(now=later)
    assert outcome.approved == 20
    assert (await row(fast))["status"] == "pending"
    # Nor can the advertiser approve it early from the conversions page.
    early = await post_form(
        browser, "/advertiser/conversions/decide", {"conversion_id": str(fast), "action": "approve", "reason": ""}
    )
    assert early.status_code == 200 and "held by a fraud rule" in early.text
    assert (await row(fast))["status"] == "pending"
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion", LedgerTxn.reference_id == fast) == 0
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 20 * 800
    assert await ledger.check() == []
    # Released: back in the ordinary flow, the next run charges it once.
    page = await browser.get(QUEUE)
    assert held_ids(page.text) == {fast}
    released = await post_form(browser, f"{QUEUE}/{fast}/release", {"reason": "Checked the order: genuine"})
    assert released.status_code == 200 and held_ids(released.text) == set()
    assert [f["decision"] for f in await flags_of(fast)] == ["released"]
    assert (await approval.run(now=later)).approved == 1
    assert (await row(fast))["status"] == "approved"
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 21 * 800
    assert await ledger.check() == []
    [event] = await AuditEvent.select().where(AuditEvent.action == "conversion.flag_released")
    assert event["object_id"] == fast and event["actor"] == setup.advertiser.id
    assert json.loads(event["detail"]) == {"reason": "Checked the order: genuine", "rules": ["too_fast"]}


async def test_rejecting_a_held_conversion_needs_a_reason_and_the_publisher_sees_it(app, client, new_client, settings):
    setup, _, fast = await too_fast_conversion(app, client, settings, hold_days=0)
    browser = await advertiser_browser(new_client, setup)
    page = await browser.get(QUEUE)
    assert 'data-rule="too_fast"' in page.text and "elapsed" in page.text
    no_reason = await post_form(browser, f"{QUEUE}/{fast}/reject", {"reason": "  "})
    assert no_reason.status_code == 422 and "reason" in error_text(no_reason.text)
    assert (await row(fast))["held"] is True
    rejected = await post_form(browser, f"{QUEUE}/{fast}/reject", {"reason": "Bot: ordered 1 s after the click"})
    assert rejected.status_code == 200 and held_ids(rejected.text) == set()
    stored = await row(fast)
    assert (stored["status"], stored["status_reason"]) == ("rejected", "Bot: ordered 1 s after the click")
    assert [f["decision"] for f in await flags_of(fast)] == ["rejected"]
    again = await post_form(browser, f"{QUEUE}/{fast}/release", {})
    assert again.status_code == 409 and (await row(fast))["status"] == "rejected"
    assert await LedgerTxn.count().where(LedgerTxn.reference_id == fast, LedgerTxn.reference_type == "conversion") == 0
    publisher = new_client()
    await login(publisher, setup.publisher_email)
    mine = await publisher.get("/publisher/conversions")
    assert "Bot: ordered 1 s after the click" in mine.text
    [event] = await AuditEvent.select().where(AuditEvent.action == "conversion.flag_rejected")
    assert event["object_id"] == fast and json.loads(event["detail"])["rules"] == ["too_fast"]


async def test_another_advertiser_neither_sees_nor_decides_nor_tunes_it_but_finance_does(
    app, client, new_client, settings
):
    setup, _, fast = await too_fast_conversion(app, client, settings)
    _, other_email = await make_advertiser()
    other = new_client()
    await login(other, other_email)
    page = await other.get(QUEUE)
    assert page.status_code == 200 and held_ids(page.text) == set()
    assert (await post_form(other, f"{QUEUE}/{fast}/release", {})).status_code == 404
    assert (await post_form(other, f"{QUEUE}/{fast}/reject", {"reason": "mine now"})).status_code == 404
    assert (await other.get(f"/advertiser/campaigns/{setup.campaign_id}/rules")).status_code == 404
    tuned = await post_form(other, f"/advertiser/campaigns/{setup.campaign_id}/rules", {})
    assert tuned.status_code == 404
    assert (await row(fast))["held"] is True
    publisher = new_client()
    await login(publisher, setup.publisher_email)
    assert (await publisher.get(QUEUE)).status_code == 403
    assert (await publisher.get("/finance/review")).status_code == 403
    assert (await other.get("/admin/conversion-rules")).status_code == 403
    finance, _ = await staff_client(new_client, Role.finance, first_page="/finance/review")
    assert held_ids((await finance.get("/finance/review")).text) == {fast}
    released = await post_form(finance, f"/finance/review/{fast}/release", {})
    assert released.status_code == 200 and (await row(fast))["held"] is False
