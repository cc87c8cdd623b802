"""The reconciliation job: conversions past their hold are charged once, earnings released once,
and an advertiser who cannot pay is never overdrawn: the campaign pauses instead."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from server.campaigns.tables import Campaign
from server.conversions import approval
from server.conversions.tables import Conversion
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from tests.conversions.factories import campaign_and_click, click_id_of, postback
from tests.worker_burst import run_burst
from workers import settings as worker_settings


async def pending_conversions(settings, client, n: int, *, hold_days: int = 0, fund: int | None = None):
    """n pending CPA conversions (10.00, publisher 8.00) on one campaign; optionally fund the advertiser."""
    setup, click_id, token = await campaign_and_click(settings, client, hold_days=hold_days)
    for i in range(n):
        if i:
            client._transport.client = (f"198.51.100.{i}", 4000)
            click_id = await click_id_of(client, setup.code)
        response = await postback(client, click_id=click_id, txn_id=f"order-{i}", token=token)
        assert response.json()["status"] == "accepted", response.text
    if fund is not None:
        await postings.fund_advertiser(
            setup.advertiser.id, fund, "EUR", reference_id=1, key=f"fund-{setup.campaign_id}"
        )
    return setup


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


async def test_due_conversions_are_charged_and_their_earnings_released(client, settings):
    setup = await pending_conversions(settings, client, 3, fund=5_000)
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.released, outcome.unfunded) == (3, 3, 0)
    assert {c["status"] for c in await Conversion.select(Conversion.status)} == {"approved"}
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 5_000 - 3 * 1_000
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 3 * 800
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 0
    assert await ledger.balance(K.network_revenue, "EUR") == 3 * 200
    assert await ledger.check() == []


async def test_conversions_still_in_their_hold_are_left_alone(client, settings):
    await pending_conversions(settings, client, 2, hold_days=30, fund=5_000)
    outcome = await approval.run(now=later())
    assert outcome.approved == 0
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion") == 0


async def test_running_twice_or_in_two_workers_at_once_charges_each_conversion_once(client, settings):
    setup = await pending_conversions(settings, client, 4, fund=10_000)
    now = later()
    first, second = await asyncio.gather(approval.run(now=now), approval.run(now=now))
    assert first.approved + second.approved == 4
    assert (await approval.run(now=now)).approved == 0
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 10_000 - 4 * 1_000
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 4 * 800
    # Past their hold, each is approved straight to available: one ledger transaction per conversion.
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion") == 4
    assert await ledger.check() == []


async def test_a_conversion_whose_approval_was_posted_before_is_left_as_it_was(client, settings):
    # The batch marks its conversions approved before posting them; one whose key the ledger holds
    # already (posted, nothing moves now) goes back to pending with its reason, the rest are approved.
    setup = await pending_conversions(settings, client, 3, fund=10_000)
    rows = await Conversion.select(Conversion.id).order_by(Conversion.id)
    posted_before = rows[1]["id"]
    await Conversion.update({Conversion.status_reason: "kept"}).where(Conversion.id == posted_before)
    await postings.approve_earning(
        advertiser_id=setup.advertiser.id,
        publisher_id=setup.publisher.id,
        price=1_000,
        payout=800,
        currency="EUR",
        reference_type="conversion",
        reference_id=posted_before,
        key=f"conversion:{posted_before}:approved",
    )
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.released) == (2, 2)
    left = await Conversion.select().where(Conversion.id == posted_before).first()
    assert (left["status"], left["status_reason"], left["approved_at"], left["released_at"]) == (
        "pending",
        "kept",
        None,
        None,
    )
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion") == 3  # none twice
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 10_000 - 3 * 1_000
    assert await ledger.check() == []


async def test_an_advertiser_who_cannot_pay_is_never_overdrawn_and_the_campaign_pauses(client, settings):
    setup = await pending_conversions(settings, client, 3, fund=2_500)  # enough for two of three
    outcome = await approval.run(now=later())
    assert outcome.approved == 2 and outcome.unfunded == 1
    assert outcome.paused_campaigns == [setup.campaign_id]
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 500
    waiting = await Conversion.select().where(Conversion.status == "pending")
    assert len(waiting) == 1 and "balance cannot cover" in waiting[0]["status_reason"]
    campaign = await Campaign.select(Campaign.status, Campaign.status_reason).first()
    assert campaign["status"] == "paused" and "Add funds" in campaign["status_reason"]
    assert await ledger.check() == []

    # Funds arrive: the next run approves what waited.
    await postings.fund_advertiser(setup.advertiser.id, 1_000, "EUR", reference_id=2, key="top-up")
    assert (await approval.run(now=later())).approved == 1
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 500


async def test_a_refused_posting_inside_a_callers_transaction_leaves_nothing_behind(client, settings):
    """db.atomic: the ledger's savepoint keeps a caught InsufficientFunds from committing half a posting."""
    from server.core import db
    from server.ledger.service import InsufficientFunds

    setup = await pending_conversions(settings, client, 1, fund=100)
    before = await LedgerTxn.count()
    async with db.transaction():
        try:
            await postings.approve_earning(
                advertiser_id=setup.advertiser.id,
                publisher_id=setup.publisher.id,
                price=1_000,
                payout=800,
                currency="EUR",
                reference_type="conversion",
                reference_id=1,
                key="too-much",
            )
        except InsufficientFunds:
            pass
    assert await LedgerTxn.count() == before
    assert await ledger.check() == []


async def test_the_worker_runs_reconciliation_on_a_real_redis(client, settings):
    await pending_conversions(settings, client, 1, fund=5_000)
    [result] = await run_burst(settings, {"clock": later}, "reconcile_conversions")
    assert result["approved"] == 1 and result["released"] == 1
    assert "cron:reconcile_conversions" in {j.name for j in worker_settings.WorkerSettings.cron_jobs}


async def test_batches_under_way_at_once_charge_each_conversion_once_and_never_overdraw(client, settings, monkeypatch):
    """Small batches, so PostgreSQL's lanes run several at once on one advertiser's balance: funded for
    7 of 12, exactly 7 are charged, each once, and the balance ends at zero, never below."""
    monkeypatch.setitem(approval.BATCH, "postgres", 2)
    monkeypatch.setitem(approval.BATCH, "sqlite", 2)
    setup = await pending_conversions(settings, client, 12, fund=7 * 1_000)
    outcome = await approval.run(now=later())
    assert (outcome.approved, outcome.unfunded) == (7, 5)
    assert await Conversion.count().where(Conversion.status == "approved") == 7
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion") == 7
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 0
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 7 * 800
    assert outcome.paused_campaigns == [setup.campaign_id]
    assert (await approval.run(now=later())).approved == 0
    assert await ledger.check() == []
