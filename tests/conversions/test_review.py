"""Advertisers review their own conversions: they see only theirs, approve early (charged once,
through the ledger), reject with a reason (no money moves), and never touch another's."""

from __future__ import annotations

import re

from server.audit.tables import AuditEvent
from server.conversions.tables import Conversion
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from tests.conversions.factories import pending_conversions
from tests.factories import error_text, login, post_form

PAGE = "/advertiser/conversions"


async def ids_of(setup) -> list[int]:
    rows = (
        await Conversion.select(Conversion.id).where(Conversion.campaign == setup.campaign_id).order_by(Conversion.id)
    )
    return [r["id"] for r in rows]


async def browser_of(new_client, setup):
    browser = new_client()
    await login(browser, setup.advertiser.email)
    return browser


def shown_ids(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'data-conversion-id="(\d+)"', html)}


def notice_text(html: str) -> str:
    match = re.search(r'class="notice"[^>]*>(.*?)</p>', html, re.S)
    return match.group(1).strip() if match else ""


async def decide(browser, ids: list[int], action: str, reason: str = ""):
    return await post_form(
        browser, f"{PAGE}/decide", {"conversion_id": [str(i) for i in ids], "action": action, "reason": reason}
    )


async def conversion_txns() -> int:
    return await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion")


async def test_the_list_shows_only_the_advertisers_own_conversions_and_filters_narrow_it(client, new_client, settings):
    mine = await pending_conversions(settings, client, 2, name="Boots")
    theirs = await pending_conversions(settings, client, 1, name="Hats")
    browser = await browser_of(new_client, mine)
    my_ids = await ids_of(mine)

    page = await browser.get(PAGE)
    assert page.status_code == 200, page.text
    assert shown_ids(page.text) == set(my_ids)
    assert "Boots-order-0" in page.text and "Hats-order-0" not in page.text
    assert "€10.00" in page.text and "€8.00" in page.text and "Cooking Blog" in page.text
    assert page.text.count('name="conversion_id"') == 2

    today = (await Conversion.select(Conversion.converted_at).first())["converted_at"].strftime("%Y-%m-%d")
    cases = {
        "?status=pending": set(my_ids),
        "?status=approved": set(),
        f"?campaign={mine.campaign_id}": set(my_ids),
        f"?campaign={theirs.campaign_id}": set(),
        "?publisher=cooking": set(my_ids),  # part of the publisher's public name, in any case
        "?publisher=blog.affnet": set(my_ids),  # or of their site
        "?publisher=Hiking": set(),
        f"?from={today}&to={today}": set(my_ids),
        "?from=2001-01-01&to=2001-01-31": set(),
    }
    for query, expected in cases.items():
        page = await browser.get(PAGE + query)
        assert page.status_code == 200, (query, page.text)
        assert shown_ids(page.text) == expected, query


async def test_invalid_filters_answer_422_with_a_message(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1)
    browser = await browser_of(new_client, setup)
    for query, words in {
        "?from=31/03/2026": "YYYY-MM-DD",
        "?status=paid": "Status must be",
        "?campaign=abc": "campaign",
        "?from=2026-03-02&to=2026-03-01": "From",
    }.items():
        page = await browser.get(PAGE + query)
        assert page.status_code == 422, query
        assert words in error_text(page.text), (query, error_text(page.text))
        assert shown_ids(page.text) == set()


async def test_approving_early_charges_the_advertiser_and_credits_the_publisher_pending(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    [conversion_id] = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    response = await decide(browser, [conversion_id], "approve")
    assert response.status_code == 200, response.text
    assert "Approved 1" in notice_text(response.text)
    row = await Conversion.select().where(Conversion.id == conversion_id).first()
    assert row["status"] == "approved" and row["approved_at"] is not None and row["released_at"] is None
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 5_000 - 1_000
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 800
    assert await ledger.balance(K.network_revenue, "EUR") == 200
    assert await ledger.check() == []
    event = await AuditEvent.select().where(AuditEvent.action == "conversion.approved").first()
    assert (event["actor"], event["object_id"]) == (setup.advertiser.id, conversion_id)


async def test_approving_twice_charges_once(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    [conversion_id] = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    assert (await decide(browser, [conversion_id], "approve")).status_code == 200
    again = await decide(browser, [conversion_id], "approve")
    assert again.status_code == 200
    assert "skipped" in notice_text(again.text) and f"#{conversion_id}" in notice_text(again.text)
    assert await conversion_txns() == 1
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 4_000
    assert await ledger.check() == []


async def test_rejecting_needs_a_reason_sets_the_status_and_moves_no_money(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    [conversion_id] = await ids_of(setup)
    browser = await browser_of(new_client, setup)

    refused = await decide(browser, [conversion_id], "reject", "  ")
    assert refused.status_code == 422
    assert "reason" in error_text(refused.text)
    assert (await Conversion.select(Conversion.status).where(Conversion.id == conversion_id).first())[
        "status"
    ] == "pending"

    response = await decide(browser, [conversion_id], "reject", "Order was cancelled")
    assert response.status_code == 200, response.text
    assert "Rejected 1" in notice_text(response.text)
    row = await Conversion.select().where(Conversion.id == conversion_id).first()
    assert (row["status"], row["status_reason"]) == ("rejected", "Order was cancelled")
    assert await conversion_txns() == 0
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 5_000
    assert (
        await AuditEvent.count().where(
            AuditEvent.action == "conversion.rejected", AuditEvent.object_id == conversion_id
        )
        == 1
    )
    assert "Order was cancelled" in (await browser.get(PAGE)).text


async def test_bulk_approval_of_three(client, new_client, settings):
    setup = await pending_conversions(settings, client, 3, fund=5_000)
    ids = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    response = await decide(browser, ids, "approve")
    assert "Approved 3" in notice_text(response.text)
    assert {r["status"] for r in await Conversion.select(Conversion.status)} == {"approved"}
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 5_000 - 3 * 1_000
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 3 * 800
    assert await ledger.check() == []


async def test_another_advertisers_conversion_in_the_selection_is_404_and_nothing_changes(client, new_client, settings):
    mine = await pending_conversions(settings, client, 2, fund=5_000, name="Boots")
    theirs = await pending_conversions(settings, client, 1, fund=5_000, name="Hats")
    browser = await browser_of(new_client, mine)
    for action, reason in (("approve", ""), ("reject", "not mine")):
        response = await decide(browser, [*await ids_of(mine), *await ids_of(theirs)], action, reason)
        assert response.status_code == 404
    assert {r["status"] for r in await Conversion.select(Conversion.status)} == {"pending"}
    assert await conversion_txns() == 0


async def test_publishers_are_refused_the_page(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1)
    browser = new_client()
    await login(browser, setup.publisher_email)
    assert (await browser.get(PAGE)).status_code == 403
    assert (await decide(browser, await ids_of(setup), "approve")).status_code == 403
    assert {r["status"] for r in await Conversion.select(Conversion.status)} == {"pending"}


async def test_a_conversion_the_balance_cannot_cover_stays_pending(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=1_500)  # enough for one of two
    ids = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    response = await decide(browser, ids, "approve")
    assert response.status_code == 200, response.text
    notice = notice_text(response.text)
    assert "Approved 1" in notice and "cannot cover" in notice and f"#{ids[1]}" in notice
    statuses = {r["id"]: r["status"] for r in await Conversion.select(Conversion.id, Conversion.status)}
    assert statuses == {ids[0]: "approved", ids[1]: "pending"}
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 500
    assert await ledger.check() == []
