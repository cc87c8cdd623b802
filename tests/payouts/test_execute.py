"""Paying an approved batch through the real SDK against the local Stripe stand-in: every line paid
exactly once (counted on the stand-in's side), a crash between any two steps then a rerun still pays
once and settles once, a refused transfer gives the money back, a short Stripe balance keeps it reserved
until the funds arrive, a batch changed after approval is refused, a reversal delivered twice returns
the money once, and every reversal of a transfer counts, read page by page."""

from __future__ import annotations

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from server.accounts.tables import Role
from server.billing import stripe_api
from server.core.errors import Conflict
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.payouts import execute, reconcile, reversals
from server.payouts.keys import idempotency_key, returned_key, settled_key
from server.payouts.tables import PayoutBatch, PayoutLine
from server.stripe_events import service as stripe_events
from tests.factories import login, make_staff
from tests.payouts.factories import approved_batch, lines_of, made, transfer_posts
from tests.stripe_fixtures import deliver
from workers.jobs.payouts import execute_payout_batch, sweep_payout_batches


async def assert_paid_once(stripe_local, batch_id: int, accounts: dict[int, str]) -> None:
    client = stripe_local.client()
    for line in await lines_of(batch_id):
        assert line["status"] == "paid", line
        posts = transfer_posts(stripe_local, line["id"])
        assert len(made(posts)) == 1 and {p["idempotency_key"] for p in posts} == {
            f"payout-line:{line['id']}:attempt:1"
        }
        transfer = await client.v1.transfers.retrieve_async(line["stripe_transfer_id"])
        assert (transfer.amount, transfer.currency, transfer.destination, transfer.transfer_group) == (
            line["amount_minor"],
            "eur",
            accounts[line["publisher"]],
            f"batch-{batch_id}",
        )
        assert transfer.metadata["payout_line_id"] == str(line["id"])
        assert await LedgerTxn.count().where(LedgerTxn.idempotency_key == settled_key(line["id"])) == 1
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
    assert await ledger.check() == []


async def test_every_line_is_paid_exactly_once_and_settled(new_client, settings, stripe_local):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 25_000)
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
        assert await execute.execute(batch_id, gateway.client) == "done"  # again: nothing more is sent
    await assert_paid_once(stripe_local, batch_id, accounts)
    ids = {line["stripe_transfer_id"] for line in await lines_of(batch_id)}
    assert len(ids) == 2
    row = await PayoutBatch.select().where(PayoutBatch.id == batch_id).first()
    assert row["status"] == "done" and row["executed_at"] is not None


class CrashInjected(Exception):
    """Raised right after a step of execute.py: the process 'dies' there."""


# Every gap where a real process could die, and the step of execute.py it follows: the batch marked
# executing, lines claimed (submitting), Stripe's answer to a transfer, transfers stored, lines settled.
STEPS = {
    "batch_executing": "_start",
    "line_submitting": "_claim",
    "transfer_returned": "_transfer",
    "transfer_stored": "_store_transfers",
    "line_settled": "_settle",
}


def crash_after(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Make execute.py's step `step` raise CrashInjected once it has done its work (a transfer: once
    Stripe answered with a transfer)."""
    real = getattr(execute, STEPS[step])

    async def crashing(*args, **kwargs):
        result = await real(*args, **kwargs)
        if step != "transfer_returned" or result:
            raise CrashInjected(step)
        return result

    monkeypatch.setattr(execute, STEPS[step], crashing)


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_crash_between_any_two_steps_then_a_rerun_pays_once(new_client, settings, stripe_local, step):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 25_000, 7_500)
    async with stripe_api.gateway(settings) as gateway:
        with pytest.MonkeyPatch.context() as patch:
            crash_after(patch, step)
            with pytest.raises(ExceptionGroup if step != "batch_executing" else CrashInjected) as crashed:
                await execute.execute(batch_id, gateway.client)
        if step != "batch_executing":
            assert crashed.group_contains(CrashInjected)
        assert (await PayoutBatch.select().where(PayoutBatch.id == batch_id).first())["status"] == "executing"
        assert await ledger.check() == []
        # The worker's sweep picks the batch up again.
        assert batch_id in await execute.resumable()
        assert await execute.execute(batch_id, gateway.client) == "done"
    await assert_paid_once(stripe_local, batch_id, accounts)


async def test_a_refused_transfer_fails_the_line_and_returns_the_money(new_client, settings, stripe_local):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 25_000)
    refused_publisher = next(iter(accounts))
    stripe_local.control(
        "POST",
        f"/_local/accounts/{accounts[refused_publisher]}/fail_next_transfer",
        code="transfers_not_allowed",
        status="400",
    )
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
        assert await execute.execute(batch_id, gateway.client) == "done"
    by_publisher = {line["publisher"]: line for line in await lines_of(batch_id)}
    failed = by_publisher[refused_publisher]
    assert failed["status"] == "failed" and "transfers_not_allowed" in failed["error"]
    assert failed["stripe_transfer_id"] == ""
    assert made(transfer_posts(stripe_local, failed["id"])) == []
    assert await ledger.balance(K.publisher_available, "EUR", refused_publisher) == 10_000
    assert await LedgerTxn.count().where(LedgerTxn.idempotency_key == returned_key(failed["id"])) == 1
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
    assert [line["status"] for line in by_publisher.values()].count("paid") == 1
    assert await ledger.check() == []

    _, email = await make_staff(Role.finance)
    finance = new_client()
    await login(finance, email)
    page = await finance.get(f"/finance/payouts/{batch_id}")
    assert f'data-id="{failed["id"]}" data-status="failed"' in page.text and "transfers_not_allowed" in page.text
    assert 'data-testid="transfer"' in page.text


async def test_a_short_stripe_balance_keeps_the_money_reserved_and_pays_once_when_funds_arrive(
    new_client, settings, new_stripe_account
):
    # A new Stripe account: its only money is a card payment still pending (Stripe holds it for days).
    local = new_stripe_account()
    local.fund_platform(50_000, card="4242424242424242")
    batch_id, accounts = await approved_batch(new_client, settings, local, 10_000)
    [publisher_id] = accounts
    client = local.client()

    for _ in range(2):  # the worker's first try, and its retry while the funds are still pending
        with pytest.raises(execute.Transient):
            await execute.execute(batch_id, client)
        [line] = await lines_of(batch_id)
        assert line["status"] == "submitting" and "balance_insufficient" in line["error"]
        assert line["stripe_transfer_id"] == "" and made(transfer_posts(local, line["id"])) == []
        # The money stays reserved for the line: not back in the publisher's balance, not lost.
        assert await ledger.balance(K.payouts_in_transit, "EUR") == 10_000
        assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 0
        assert (await PayoutBatch.select().where(PayoutBatch.id == batch_id).first())["status"] == "executing"
        assert await ledger.check() == []
    assert line["attempt"] == 3  # each refusal is saved under its key at Stripe: every try takes a new one

    local.control("POST", "/_local/clock/advance", seconds=str(2 * 86400))  # the card payment is available
    assert await execute.execute(batch_id, client) == "done"
    assert await execute.execute(batch_id, client) == "done"
    [line] = await lines_of(batch_id)
    assert line["status"] == "paid" and line["error"] == ""
    posts = transfer_posts(local, line["id"])
    assert [p["status"] for p in posts] == [400, 400, 200]
    assert len(made(posts)) == 1 and made(posts)[0]["idempotency_key"] == idempotency_key(line["id"], 3)
    assert (await client.v1.transfers.retrieve_async(line["stripe_transfer_id"])).amount == 10_000
    assert await LedgerTxn.count().where(LedgerTxn.idempotency_key == settled_key(line["id"])) == 1
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
    assert await ledger.check() == []


async def test_stripe_unreachable_or_5xx_leaves_the_line_submitting_for_a_retry(new_client, settings, stripe_local):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000)
    [account] = accounts.values()
    stripe_local.control("POST", f"/_local/accounts/{account}/fail_next_transfer", code="api_error", status="500")
    client = stripe_local.client()  # no SDK retries: the 500 reaches the executor
    with pytest.raises(execute.Transient):
        await execute.execute(batch_id, client)
    [line] = await lines_of(batch_id)
    assert line["status"] == "submitting" and line["stripe_transfer_id"] == "" and line["error"]
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 10_000  # still reserved, not returned
    assert made(transfer_posts(stripe_local, line["id"])) == []
    assert (await PayoutBatch.select().where(PayoutBatch.id == batch_id).first())["status"] == "executing"
    assert await ledger.check() == []


async def test_a_batch_whose_lines_changed_after_approval_is_refused(new_client, settings, stripe_local):
    batch_id, _ = await approved_batch(new_client, settings, stripe_local, 10_000, 25_000)
    first = (await lines_of(batch_id))[0]
    await PayoutLine.update({PayoutLine.amount_minor: first["amount_minor"] + 1}).where(PayoutLine.id == first["id"])
    async with stripe_api.gateway(settings) as gateway:
        with pytest.raises(Conflict, match="approval is void"):
            await execute.execute(batch_id, gateway.client)
    row = await PayoutBatch.select().where(PayoutBatch.id == batch_id).first()
    assert (row["status"], row["approved_fingerprint"]) == ("prepared", "")
    for line in await lines_of(batch_id):
        assert line["status"] == "approved" and transfer_posts(stripe_local, line["id"]) == []


async def test_a_reversal_delivered_twice_returns_the_money_once(new_client, settings, stripe_local):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000)
    [publisher_id] = accounts
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
        [line] = await lines_of(batch_id)
        client = stripe_local.client()
        await client.v1.transfers.reversals.create_async(
            line["stripe_transfer_id"], options={"idempotency_key": f"test-reversal:{line['id']}"}
        )
        events = [
            e
            for e in (await client.v1.events.list_async({"limit": 100})).data
            if e.type == "transfer.reversed" and e.data.object["id"] == line["stripe_transfer_id"]
        ]
        [event] = events
        answers = await deliver(new_client(), stripe_local, event.id, times=2)
        assert [a.status_code for a in answers] == [200, 200]
        await stripe_events.process(event.id, gateway)
        await stripe_events.process(event.id, gateway)
        # And applied again directly, as a second event for the same reversal would be.
        await reversals.transfer_reversed(event.data.object.to_dict())
    [line] = await lines_of(batch_id)
    assert line["status"] == "returned"
    assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 10_000
    assert await LedgerTxn.count().where(LedgerTxn.kind == "payout.reversed") == 1
    assert await ledger.check() == []


async def test_every_reversal_of_a_transfer_is_returned_and_reconciled_through_pages(
    new_client, settings, stripe_local, monkeypatch
):
    monkeypatch.setattr(stripe_api, "REVERSALS_PAGE", 5)  # pages of 5: 12 reversals take three
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000)
    [publisher_id] = accounts
    client = stripe_local.client()
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
        [line] = await lines_of(batch_id)
        transfer_id = line["stripe_transfer_id"]
        for n in range(12):
            await client.v1.transfers.reversals.create_async(
                transfer_id, {"amount": 100}, {"idempotency_key": f"test-reversal:{line['id']}:{n}"}
            )
        # Only the last event reaches affnet (the others may come later, or were lost): it carries the
        # transfer with its 10 newest reversals and has_more.
        newest = next(
            e
            for e in (await client.v1.events.list_async({"limit": 100, "type": "transfer.reversed"})).data
            if e.data.object["id"] == transfer_id
        )
        embedded = newest.data.object["reversals"]
        assert len(embedded["data"]) == 10 and embedded["has_more"] is True
        assert [a.status_code for a in await deliver(new_client(), stripe_local, newest.id)] == [200]
        assert (
            await stripe_events.process(newest.id, gateway) == f"payout line {line['id']}: 1200 returned to available"
        )
        result = await reconcile.reconcile_batch(batch_id, gateway.client)
        assert result.ok, result.problems

        # A reversal affnet has not heard of yet is named by the reconciliation.
        unheard = await client.v1.transfers.reversals.create_async(
            transfer_id, {"amount": 100}, {"idempotency_key": f"test-reversal:{line['id']}:unheard"}
        )
        result = await reconcile.reconcile_batch(batch_id, gateway.client)
    assert any(unheard.id in p and "never returned" in p for p in result.problems), result.problems
    assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 1_200
    assert await LedgerTxn.count().where(LedgerTxn.kind == "payout.reversed") == 12
    pages = [
        r
        for r in stripe_local.control("GET", "/_local/requests").json()["data"]
        if r["method"] == "GET" and r["path"] == f"/v1/transfers/{transfer_id}/reversals"
    ]
    assert len(pages) == 3 + 3 + 3 and sum("starting_after" in r["query"] for r in pages) == 6
    [line] = await lines_of(batch_id)
    assert line["status"] == "paid"  # 1,300 of 10,000 reversed: not returned
    assert await ledger.check() == []


async def test_approval_enqueues_execution_and_the_worker_job_pays(new_client, settings, stripe_local):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000)
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        jobs = await pool.queued_jobs()
        assert [(j.function, j.args) for j in jobs] == [("execute_payout_batch", (batch_id,))]
        ctx = {"settings": settings, "job_try": 1, "redis": pool}
        assert await execute_payout_batch(ctx, batch_id) == "done"
        assert await sweep_payout_batches(ctx) == {}
    finally:
        await pool.aclose()
    await assert_paid_once(stripe_local, batch_id, accounts)
