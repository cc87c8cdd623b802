"""Advertisers reverse approved conversions (a refund or chargeback): the price comes back, the network
gives up its margin, the publisher loses the earning from pending, from available, or (paid out
already) as a receivable; once, with a reason, never on another advertiser's conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.audit.tables import AuditEvent
from server.conversions import approval
from server.conversions.tables import Conversion
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from tests.conversions.test_review import (
    browser_of,
    conversion_txns,
    decide,
    ids_of,
    notice_text,
    pending_conversions,
)
from tests.factories import error_text


async def approved(settings, client, new_client, n: int = 1, *, released: bool = False, name: str = "Spring Boots"):
    """n conversions (10.00, publisher 8.00) approved by their advertiser (funded with 50.00); with
    released=True their hold has ended and reconciliation has made the earnings available."""
    setup = await pending_conversions(settings, client, n, fund=5_000, name=name)
    ids = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    assert "Approved" in notice_text((await decide(browser, ids, "approve")).text)
    if released:
        # The hold ends: reconciliation releases the approved earnings.
        await Conversion.update({Conversion.hold_until: datetime.now(UTC) - timedelta(days=1)}).where(
            Conversion.id.is_in(ids)
        )
        await approval.run(now=datetime.now(UTC))
        assert all(
            r["released_at"] is not None
            for r in await Conversion.select(Conversion.released_at).where(Conversion.id.is_in(ids))
        )
    return setup, ids, browser


async def balances(setup) -> dict[str, int]:
    return {
        "advertiser": await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id),
        "pending": await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id),
        "available": await ledger.balance(K.publisher_available, "EUR", setup.publisher.id),
        "receivable": await ledger.balance(K.publisher_receivable, "EUR", setup.publisher.id),
        "network": await ledger.balance(K.network_revenue, "EUR"),
    }


async def status_of(conversion_id: int) -> tuple[str, str]:
    row = (
        await Conversion.select(Conversion.status, Conversion.status_reason)
        .where(Conversion.id == conversion_id)
        .first()
    )
    return row["status"], row["status_reason"]


async def test_reversing_before_release_takes_the_earning_from_pending(client, new_client, settings):
    setup, [conversion_id], browser = await approved(settings, client, new_client)
    assert await balances(setup) == {
        "advertiser": 4_000,
        "pending": 800,
        "available": 0,
        "receivable": 0,
        "network": 200,
    }
    response = await decide(browser, [conversion_id], "reverse", "Customer returned the boots")
    assert response.status_code == 200, response.text
    assert "Reversed 1" in notice_text(response.text)
    assert await status_of(conversion_id) == ("reversed", "Customer returned the boots")
    assert await balances(setup) == {"advertiser": 5_000, "pending": 0, "available": 0, "receivable": 0, "network": 0}
    assert await ledger.check() == []
    event = await AuditEvent.select().where(AuditEvent.action == "conversion.reversed").first()
    assert (event["actor"], event["object_id"]) == (setup.advertiser.id, conversion_id)
    assert "Customer returned the boots" in (await browser.get("/advertiser/conversions")).text


async def test_reversing_after_release_takes_the_earning_from_available(client, new_client, settings):
    setup, [conversion_id], browser = await approved(settings, client, new_client, released=True)
    assert await balances(setup) == {
        "advertiser": 4_000,
        "pending": 0,
        "available": 800,
        "receivable": 0,
        "network": 200,
    }
    response = await decide(browser, [conversion_id], "reverse", "Chargeback")
    assert "Reversed 1" in notice_text(response.text)
    assert await status_of(conversion_id) == ("reversed", "Chargeback")
    assert await balances(setup) == {"advertiser": 5_000, "pending": 0, "available": 0, "receivable": 0, "network": 0}
    assert await ledger.check() == []


async def test_reversing_after_payout_leaves_a_receivable_from_the_publisher(client, new_client, settings):
    setup, [conversion_id], browser = await approved(settings, client, new_client, released=True)
    # The publisher was paid the 8.00: their available balance is empty.
    await postings.reserve_payout(setup.publisher.id, 800, "EUR", reference_id=1, key="payout-line-1:reserved")
    await postings.settle_payout(800, "EUR", reference_id=1, key="payout-line-1:settled")
    assert (await balances(setup))["available"] == 0
    assert await ledger.check() == []

    response = await decide(browser, [conversion_id], "reverse", "Fraudulent order")
    assert "Reversed 1" in notice_text(response.text)
    assert await balances(setup) == {
        "advertiser": 5_000,
        "pending": 0,
        "available": 0,
        "receivable": -800,
        "network": 0,
    }
    assert await ledger.check() == []


async def test_a_partly_paid_out_earning_comes_from_available_first_and_the_rest_is_receivable(
    client, new_client, settings
):
    setup, [first, second], browser = await approved(settings, client, new_client, 2, released=True)
    # 16.00 available; 10.00 of it paid out leaves 6.00 to cover the first reversal's 8.00.
    await postings.reserve_payout(setup.publisher.id, 1_000, "EUR", reference_id=1, key="payout-line-1:reserved")
    await postings.settle_payout(1_000, "EUR", reference_id=1, key="payout-line-1:settled")
    await decide(browser, [first], "reverse", "Returned")
    assert await balances(setup) == {
        "advertiser": 4_000,
        "pending": 0,
        "available": 0,
        "receivable": -200,
        "network": 200,
    }
    assert await status_of(second) == ("approved", "")
    assert await ledger.check() == []


async def test_reversing_twice_changes_nothing_the_second_time(client, new_client, settings):
    setup, [conversion_id], browser = await approved(settings, client, new_client)
    await decide(browser, [conversion_id], "reverse", "Refunded")
    after_first = (await balances(setup), await conversion_txns())
    again = await decide(browser, [conversion_id], "reverse", "Refunded again")
    assert again.status_code == 200
    assert "skipped" in notice_text(again.text) and "Reversed" not in notice_text(again.text)
    assert (await balances(setup), await conversion_txns()) == after_first
    assert await status_of(conversion_id) == ("reversed", "Refunded")
    assert await AuditEvent.count().where(AuditEvent.action == "conversion.reversed") == 1
    assert await ledger.check() == []


async def test_reversal_needs_a_reason(client, new_client, settings):
    setup, [conversion_id], browser = await approved(settings, client, new_client)
    refused = await decide(browser, [conversion_id], "reverse", "   ")
    assert refused.status_code == 422
    assert "reason" in error_text(refused.text)
    assert await status_of(conversion_id) == ("approved", "")
    assert (await balances(setup))["advertiser"] == 4_000


async def test_pending_and_rejected_conversions_are_not_reversed_and_move_no_money(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=5_000)
    pending, rejected = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    await decide(browser, [rejected], "reject", "Test order")
    response = await decide(browser, [pending, rejected], "reverse", "Refunded")
    assert response.status_code == 200
    assert "only approved conversions can be reversed" in notice_text(response.text)
    assert [await status_of(pending), await status_of(rejected)] == [("pending", ""), ("rejected", "Test order")]
    assert await conversion_txns() == 0


async def test_bulk_reversal_refunds_each_once(client, new_client, settings):
    setup, ids, browser = await approved(settings, client, new_client, 3)
    response = await decide(browser, ids, "reverse", "Batch of returns")
    assert "Reversed 3" in notice_text(response.text)
    assert await balances(setup) == {"advertiser": 5_000, "pending": 0, "available": 0, "receivable": 0, "network": 0}
    assert await LedgerTxn.count().where(LedgerTxn.kind == "earning.reversal") == 3
    assert await ledger.check() == []


async def test_another_advertisers_conversion_cannot_be_reversed(client, new_client, settings):
    mine, my_ids, my_browser = await approved(settings, client, new_client, name="Boots")
    theirs, their_ids, _ = await approved(settings, client, new_client, name="Hats")
    before = (await balances(mine), await balances(theirs), await conversion_txns())
    response = await decide(my_browser, [*my_ids, *their_ids], "reverse", "Not yours")
    assert response.status_code == 404
    alone = await decide(my_browser, their_ids, "reverse", "Not yours")
    assert alone.status_code == 404
    assert {r["status"] for r in await Conversion.select(Conversion.status)} == {"approved"}
    assert (await balances(mine), await balances(theirs), await conversion_txns()) == before
    assert await ledger.check() == []
