"""What payouts brought a publisher, on their dashboard and their payouts page: "Paid to you" (every
transfer that reached them, less what Stripe reversed of it) and their last payout with its date, so a
publisher whose balance went to zero at a payout still sees what they got."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.billing import stripe_api
from server.core import i18n
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.payouts import execute, history, reversals, review
from server.payouts import service as payouts
from tests.payouts.factories import after_next_cutoff, earning_publisher
from tests.payouts.test_history import (
    API,
    line_of,
    more_available,
    paid_publisher,
    publisher_key,
    signed_in,
    staff,
    text_of,
)


async def reverse_at_stripe(stripe_local, line: dict, amount: int | None = None) -> None:
    """Stripe reverses `amount` of the line's transfer (all of it when None), and affnet hears of it."""
    params = {"amount": amount} if amount else {}
    reversal = await stripe_local.client().v1.transfers.reversals.create_async(
        line["stripe_transfer_id"], params, {"idempotency_key": f"paid-to-you:{line['id']}:{amount}"}
    )
    transfer = await stripe_local.client().v1.transfers.retrieve_async(reversal.transfer)
    await reversals.transfer_reversed(transfer.to_dict())


async def pay_next_period(settings, publisher: int, amount: int, months_later: int) -> dict:
    """`amount` more earned, prepared at a later cut-off, approved and sent: the new paid line."""
    await more_available(publisher, amount, 100 + months_later)
    batch_id = (await payouts.prepare_due(after_next_cutoff() + timedelta(days=32 * months_later))).batches[0]
    await review.approve(await staff(), batch_id)
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
    return await line_of(publisher)


async def figures(new_client, publisher: int, language: str = "en") -> dict[str, str]:
    browser = await signed_in(new_client, publisher)
    headers = {"Accept-Language": language}
    dashboard = (await browser.get("/publisher", headers=headers)).text
    payouts_page = (await browser.get("/publisher/payouts", headers=headers)).text
    return {
        "dashboard_available": text_of(dashboard, "earnings-available"),
        "dashboard_paid": text_of(dashboard, "earnings-paid"),
        "dashboard_last": text_of(dashboard, "earnings-last-payout"),
        "page_available": text_of(payouts_page, "payout-available"),
        "page_paid": text_of(payouts_page, "payout-paid"),
        "page_last": text_of(payouts_page, "payout-last"),
    }


def today() -> str:
    return i18n.date_text(datetime.now(UTC))


async def test_a_publisher_never_paid_sees_nothing_paid_to_them_and_no_last_payout(new_client, settings):
    publisher = await earning_publisher(settings, 10_000)
    shown = await figures(new_client, publisher)
    assert (shown["dashboard_available"], shown["dashboard_paid"], shown["dashboard_last"]) == ("€100.00", "€0.00", "")
    assert (shown["page_paid"], shown["page_last"]) == ("€0.00", "—")
    assert await history.paid_to_you(publisher) == {}


async def test_after_a_payout_the_dashboard_and_payouts_page_show_what_was_paid_and_when(
    new_client, settings, stripe_local
):
    publisher, line = await paid_publisher(settings, stripe_local, 10_000)
    assert await ledger.balance(K.publisher_available, "EUR", publisher) == 0

    shown = await figures(new_client, publisher)
    assert shown["dashboard_available"] == shown["page_available"] == "€0.00"
    assert shown["dashboard_paid"] == shown["page_paid"] == "€100.00"
    assert shown["dashboard_last"] == shown["page_last"] == f"€100.00 on {today()}"

    french = await figures(new_client, publisher, "fr-FR")
    assert french["dashboard_paid"] == french["page_paid"] == "100,00\u00a0€"
    assert french["dashboard_last"] == f"100,00\u00a0€ le {datetime.now(UTC):%d/%m/%Y}"
    assert await ledger.check() == []


async def test_paid_to_you_adds_every_payout_net_of_reversals_and_the_last_is_the_newest_still_yours(
    new_client, settings, stripe_local
):
    publisher, first = await paid_publisher(settings, stripe_local, 10_000)
    second = await pay_next_period(settings, publisher, 6_000, 1)  # above the 50.00 minimum
    assert second["id"] != first["id"] and second["status"] == "paid"
    await reverse_at_stripe(stripe_local, first, 2_500)  # part of the first comes back to the balance

    shown = await figures(new_client, publisher)
    assert shown["dashboard_paid"] == shown["page_paid"] == "€135.00"  # 100 - 25 + 60
    assert shown["dashboard_last"] == shown["page_last"] == f"€60.00 on {today()}"
    assert shown["dashboard_available"] == "€25.00"

    body = (await new_client().get(API, headers=await publisher_key(publisher))).json()
    [paid] = body["paid_to_you"]
    assert (paid["currency"], paid["paid_minor"], paid["last_payout_minor"]) == ("EUR", 13_500, 6_000)

    await reverse_at_stripe(stripe_local, second)  # the newest payout reversed in full: no longer "last"
    shown = await figures(new_client, publisher)
    assert shown["dashboard_paid"] == shown["page_paid"] == "€75.00"
    assert shown["dashboard_last"] == shown["page_last"] == f"€75.00 on {today()}"
    assert shown["dashboard_available"] == "€85.00"
    assert await ledger.check() == []
