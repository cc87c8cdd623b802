"""Preparing a period: one batch per currency once, lines only for publishers who reach their
minimum with a ready account, everyone else carried over with the reason, every line's money
reserved so it can be neither spent nor paid twice, and debts netted."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from server.core.hours import utc
from server.ledger import engine
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.payouts import service as payouts
from server.payouts.tables import PayoutBatch, PayoutCarryOver, PayoutLine
from tests.payouts.factories import after_next_cutoff, earning_publisher
from tests.worker_burst import run_burst


async def test_a_period_pays_who_reaches_the_minimum_and_carries_the_others_over_with_the_reason(
    client, settings, chunk=payouts.CHUNK
):
    payouts.CHUNK = chunk
    paid = await earning_publisher(settings, 10_000)
    small = await earning_publisher(settings, 1_000)
    not_ready = await earning_publisher(settings, 8_000, ready=False)
    held = await earning_publisher(settings, 9_000)
    await payouts.set_publisher_terms(held, actor_id=None, on_hold=True, hold_reason="identity check")

    outcome = await payouts.prepare_due(after_next_cutoff())

    assert (len(outcome.batches), outcome.lines, outcome.carried) == (1, 1, 3)
    line = await PayoutLine.select().first()
    assert (line["publisher"], line["amount_minor"], line["status"], line["first_payout"]) == (
        paid,
        10_000,
        "approved",
        True,
    )
    reasons = {r["publisher"]: r["reason"] for r in await PayoutCarryOver.select()}
    assert reasons == {small: "below_minimum", not_ready: "account_not_ready", held: "on_hold"}
    # Reserved: out of the publisher's available balance, into payouts in transit, once.
    assert await ledger.balance(K.publisher_available, "EUR", paid) == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 10_000
    assert await ledger.balance(K.publisher_available, "EUR", small) == 1_000
    assert await LedgerTxn.count().where(LedgerTxn.idempotency_key == f"payout-line:{line['id']}:reserved") == 1
    assert await ledger.check() == []


async def test_publishers_are_looked_up_in_chunks_and_each_chunk_counts(client, settings):
    """The same period, read one publisher at a time (as 100,000 publishers are read 500 at a time):
    a publisher in a later chunk is paid, held or carried over exactly as in the first."""
    try:
        await test_a_period_pays_who_reaches_the_minimum_and_carries_the_others_over_with_the_reason(
            client, settings, chunk=1
        )
    finally:
        payouts.CHUNK = 500


async def test_many_publishers_are_read_in_one_pass_and_each_counts(client, settings, monkeypatch):
    """The same period read as for 100,000 publishers (one read of each table instead of IN lists):
    each publisher is paid, held or carried over exactly as when looked up by id."""
    monkeypatch.setattr(payouts, "SCAN", 1)
    await test_a_period_pays_who_reaches_the_minimum_and_carries_the_others_over_with_the_reason(client, settings)


async def test_many_publishers_read_in_one_pass_have_their_debts_netted(client, settings, monkeypatch):
    monkeypatch.setattr(payouts, "SCAN", 1)
    owing = await earning_publisher(settings, 9_000, owed=1_500)
    clear = await earning_publisher(settings, 6_000)
    outcome = await payouts.prepare_due(after_next_cutoff())
    assert (outcome.lines, outcome.carried) == (2, 0)
    lines = {r["publisher"]: (r["netted_minor"], r["amount_minor"]) for r in await PayoutLine.select()}
    assert lines == {owing: (1_500, 7_500), clear: (0, 6_000)}
    assert await ledger.balance(K.publisher_receivable, "EUR", owing) == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 13_500
    assert await ledger.check() == []


async def test_preparing_twice_or_in_two_workers_at_once_prepares_once(client, settings):
    await earning_publisher(settings, 10_000)
    now = after_next_cutoff()
    first, second = await asyncio.gather(payouts.prepare_due(now), payouts.prepare_due(now))
    assert len(first.batches) + len(second.batches) == 1
    assert (await payouts.prepare_due(now)).batches == []
    assert await PayoutBatch.count() == 1 and await PayoutLine.count() == 1
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 10_000
    assert await ledger.check() == []


async def test_one_batch_per_currency(client, settings):
    await earning_publisher(settings, 10_000, currency="EUR")
    await earning_publisher(settings, 7_000, currency="USD")
    outcome = await payouts.prepare_due(after_next_cutoff())
    assert sorted(r["currency"] for r in await PayoutBatch.select(PayoutBatch.currency)) == ["EUR", "USD"]
    assert outcome.lines == 2
    assert await ledger.check() == []


async def test_a_debt_is_netted_the_line_pays_available_less_owed_and_the_receivable_is_settled(client, settings):
    publisher = await earning_publisher(settings, 9_000, owed=1_500)
    assert await ledger.balance(K.publisher_receivable, "EUR", publisher) == -1_500
    await payouts.prepare_due(after_next_cutoff())
    line = await PayoutLine.select().first()
    assert (line["available_minor"], line["netted_minor"], line["amount_minor"]) == (9_000, 1_500, 7_500)
    assert await ledger.balance(K.publisher_available, "EUR", publisher) == 0
    assert await ledger.balance(K.publisher_receivable, "EUR", publisher) == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 7_500
    assert await ledger.check() == []


async def test_netting_counts_against_the_minimum_and_a_bigger_debt_carries_over(client, settings):
    short = await earning_publisher(settings, 6_000, owed=2_000)  # 40.00 net, below the 50.00 minimum
    deep = await earning_publisher(settings, 3_000, owed=5_000)
    await payouts.prepare_due(after_next_cutoff())
    assert await PayoutLine.count() == 0
    reasons = {r["publisher"]: (r["reason"], r["balance_minor"]) for r in await PayoutCarryOver.select()}
    assert reasons == {short: ("below_minimum", 4_000), deep: ("owes_more_than_earned", -2_000)}
    assert await ledger.balance(K.publisher_receivable, "EUR", deep) == -5_000
    assert await ledger.check() == []


async def test_minimums_per_currency_and_per_publisher(client, settings):
    await payouts.set_minimum("EUR", 20_000, actor_id=None)
    regular = await earning_publisher(settings, 10_000)
    special = await earning_publisher(settings, 10_000)
    await payouts.set_publisher_terms(special, actor_id=None, minimum_minor=2_000, minimum_currency="EUR")
    await payouts.prepare_due(after_next_cutoff())
    assert [r["publisher"] for r in await PayoutLine.select(PayoutLine.publisher)] == [special]
    assert [r["publisher"] for r in await PayoutCarryOver.select(PayoutCarryOver.publisher)] == [regular]


async def test_money_that_arrives_after_the_cut_off_waits_for_the_next_period(client, settings):
    publisher = await earning_publisher(settings, 10_000)
    _, cutoff = payouts.last_cutoff(await payouts.schedule_terms(), after_next_cutoff())
    available = await ledger.account(K.publisher_available, "EUR", publisher)
    revenue = await ledger.account(K.network_revenue, "EUR")
    # A manual adjustment effective an hour after the cut-off: it belongs to the next period (I14).
    await engine.post(
        kind="manual",
        idempotency_key="late-bonus",
        reference_type="manual",
        reference_id=1,
        lines=[engine.Line(revenue, -4_000, "EUR"), engine.Line(available, 4_000, "EUR")],
        effective_at=cutoff + timedelta(hours=1),
    )
    await payouts.prepare_due(after_next_cutoff())
    line = await PayoutLine.select().first()
    assert line["amount_minor"] == 10_000
    assert await ledger.balance(K.publisher_available, "EUR", publisher) == 4_000
    assert await ledger.check() == []


async def test_the_publisher_sees_what_the_next_cut_off_would_pay_and_why_not(client, settings):
    ready = await earning_publisher(settings, 9_000, owed=1_000)
    small = await earning_publisher(settings, 1_000)
    [preview] = await payouts.next_payout_preview(ready)
    assert (preview.net_minor, preview.owed_minor, preview.will_be_paid, preview.reason) == (8_000, 1_000, True, "")
    [preview] = await payouts.next_payout_preview(small)
    assert not preview.will_be_paid and preview.reason == "below the minimum payout"
    assert preview.minimum_minor == payouts.DEFAULT_MINIMUM_MINOR


async def test_the_worker_prepares_the_period_on_a_real_redis(client, settings):
    await earning_publisher(settings, 10_000)
    await run_burst(settings, {"clock": after_next_cutoff}, "prepare_payouts")
    assert await PayoutLine.count() == 1
    assert await ledger.check() == []


async def test_a_period_is_prepared_at_the_moment_it_is_given(client, settings):
    """prepare_due's `now` is the moment the batch, its lines and its carry-overs are stamped with
    (the worker passes its clock; a test its own moment), not the wall clock."""
    await earning_publisher(settings, 10_000)
    await earning_publisher(settings, 1_000)
    moment = (after_next_cutoff() + timedelta(days=3)).replace(microsecond=0)

    outcome = await payouts.prepare_due(moment)

    assert (len(outcome.batches), outcome.lines, outcome.carried) == (1, 1, 1)
    batch = await PayoutBatch.select().where(PayoutBatch.id == outcome.batches[0]).first()
    line = await PayoutLine.select().where(PayoutLine.batch == batch["id"]).first()
    carried = await PayoutCarryOver.select().where(PayoutCarryOver.batch == batch["id"]).first()
    assert [utc(t) for t in (batch["prepared_at"], line["created_at"], line["updated_at"], carried["created_at"])] == [
        moment
    ] * 4
