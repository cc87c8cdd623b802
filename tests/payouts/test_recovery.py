"""Lines that did not go through the first time: a transfer Stripe made but whose answer was lost is
found by its transfer group and recorded, never made again; a 5xx Stripe saved under a line's key
gives the line a new key once the transfer is known not to exist; finance retries a failed line
(money reserved again, a new key, paid once); and one worker at a time pays a batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from server.accounts.tables import Role
from server.billing import stripe_api
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.payouts import execute
from server.payouts import service as payouts
from server.payouts.account_tables import PayoutAccount
from server.payouts.keys import idempotency_key, settled_key, transfer_group
from server.payouts.tables import PayoutBatch, PayoutLine
from tests.factories import post_form, staff_client
from tests.payouts.factories import approved_batch, lines_of, made, transfer_posts
from workers.jobs.payouts import BUSY, batch_lock, execute_payout_batch, sweep_payout_batches


def transfers_made_for(stripe_local, line_id: int) -> list[dict]:
    return made(transfer_posts(stripe_local, line_id))


async def test_a_transfer_made_but_not_recorded_is_found_and_not_made_again(new_client, settings, stripe_local):
    """The answer was lost and Stripe no longer replays the key (e.g. a day later): the line, left
    submitting with the error, is looked up by its transfer group and recorded as paid."""
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000)
    [line] = await lines_of(batch_id)
    client = stripe_local.client()
    made_earlier = await client.v1.transfers.create_async(
        {
            "amount": 10_000,
            "currency": "eur",
            "destination": line["stripe_account_id"],
            "transfer_group": transfer_group(batch_id),
            "metadata": {"payout_line_id": str(line["id"])},
        },
        {"idempotency_key": f"expired-key:{line['id']}"},
    )
    await PayoutLine.update({PayoutLine.status: "submitting", PayoutLine.error: "APIConnectionError: timed out"}).where(
        PayoutLine.id == line["id"]
    )
    await PayoutBatch.update({PayoutBatch.status: "executing"}).where(PayoutBatch.id == batch_id)

    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
    [line] = await lines_of(batch_id)
    assert (line["status"], line["stripe_transfer_id"], line["error"]) == ("paid", made_earlier.id, "")
    assert transfer_posts(stripe_local, line["id"]) == []  # nothing sent under the line's own keys
    assert await LedgerTxn.count().where(LedgerTxn.idempotency_key == settled_key(line["id"])) == 1
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
    assert await ledger.check() == []


async def test_a_5xx_saved_under_the_key_gives_the_line_a_new_attempt_and_it_is_paid_once(
    new_client, settings, stripe_local
):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 20_000)
    failing = next(iter(accounts.values()))
    stripe_local.control("POST", f"/_local/accounts/{failing}/fail_next_transfer", code="api_error", status="500")
    client = stripe_local.client()  # no SDK retries: the 500 reaches the executor
    with pytest.raises(execute.Transient):
        await execute.execute(batch_id, client)
    stuck = next(line for line in await lines_of(batch_id) if line["stripe_account_id"] == failing)
    assert stuck["status"] == "submitting" and stuck["attempt"] == 1

    # The worker's retry: the same key would get the saved 500 for ever; no transfer exists, so a new key.
    assert await execute.execute(batch_id, client) == "done"
    line = next(line for line in await lines_of(batch_id) if line["id"] == stuck["id"])
    assert (line["status"], line["attempt"]) == ("paid", 2)
    keys = [p["idempotency_key"] for p in transfer_posts(stripe_local, line["id"])]
    assert keys[0] == idempotency_key(line["id"], 1) and keys[-1] == idempotency_key(line["id"], 2)
    assert [p["idempotency_key"] for p in transfers_made_for(stripe_local, line["id"])] == [
        idempotency_key(line["id"], 2)
    ]
    for other in await lines_of(batch_id):
        assert len(transfers_made_for(stripe_local, other["id"])) == 1
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
    assert await ledger.check() == []


async def _failed_line(new_client, settings, stripe_local) -> tuple[int, dict, int]:
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000)
    [(publisher_id, account)] = accounts.items()
    stripe_local.control(
        "POST", f"/_local/accounts/{account}/fail_next_transfer", code="transfers_not_allowed", status="400"
    )
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
    [line] = await lines_of(batch_id)
    assert line["status"] == "failed"
    assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 10_000
    return batch_id, line, publisher_id


async def _finance(new_client):
    return (await staff_client(new_client, Role.finance, first_page="/finance/payouts"))[0]


async def test_finance_retries_a_failed_line_and_it_is_paid_once_under_a_new_key(new_client, settings, stripe_local):
    batch_id, line, publisher_id = await _failed_line(new_client, settings, stripe_local)
    finance = await _finance(new_client)
    page = await finance.get(f"/finance/payouts/{batch_id}")
    assert f'action="/finance/payouts/{batch_id}/lines/{line["id"]}/retry"' in page.text

    answer = await post_form(finance, f"/finance/payouts/{batch_id}/lines/{line['id']}/retry")
    assert answer.status_code == 303
    [retried] = await lines_of(batch_id)
    assert (retried["status"], retried["attempt"], retried["error"]) == ("approved", 2, "")
    assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 0  # reserved again
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 10_000
    assert (await PayoutBatch.select().where(PayoutBatch.id == batch_id).first())["status"] == "executing"
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        queued = {j.job_id: (j.function, j.args) for j in await pool.queued_jobs()}
        assert queued[f"payout-batch:{batch_id}:line:{line['id']}:attempt:2"] == ("execute_payout_batch", (batch_id,))
        assert await execute_payout_batch({"settings": settings, "job_try": 1, "redis": pool}, batch_id) == "done"
    finally:
        await pool.aclose()

    [paid] = await lines_of(batch_id)
    assert paid["status"] == "paid"
    assert [p["idempotency_key"] for p in transfers_made_for(stripe_local, paid["id"])] == [
        idempotency_key(paid["id"], 2)
    ]
    assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
    assert await LedgerTxn.count().where(LedgerTxn.reference_id == paid["id"], LedgerTxn.kind == "payout.reserved") == 2
    assert await ledger.check() == []
    # Paid: a second retry is refused and changes nothing.
    again = await post_form(finance, f"/finance/payouts/{batch_id}/lines/{line['id']}/retry")
    assert again.status_code == 409 and "only a failed line can be retried" in again.text
    assert len(transfers_made_for(stripe_local, paid["id"])) == 1


async def test_a_retry_is_refused_when_a_later_batch_took_the_money(new_client, settings, stripe_local):
    batch_id, line, publisher_id = await _failed_line(new_client, settings, stripe_local)
    # The next period's batch reserves the returned money for a new line.
    later = await payouts.prepare_due(datetime.now(UTC) + timedelta(days=64))
    assert later.lines == 1
    finance = await _finance(new_client)
    answer = await post_form(finance, f"/finance/payouts/{batch_id}/lines/{line['id']}/retry")
    assert answer.status_code == 409 and "no longer holds this line" in answer.text
    [unchanged] = await lines_of(batch_id)
    assert (unchanged["status"], unchanged["attempt"]) == ("failed", 1)
    assert await ledger.check() == []


async def test_a_retry_is_refused_when_the_payout_account_changed(new_client, settings, stripe_local):
    batch_id, line, publisher_id = await _failed_line(new_client, settings, stripe_local)
    await PayoutAccount.update({PayoutAccount.stripe_account_id: "acct_another"}).where(
        PayoutAccount.publisher == publisher_id
    )
    finance = await _finance(new_client)
    answer = await post_form(finance, f"/finance/payouts/{batch_id}/lines/{line['id']}/retry")
    assert answer.status_code == 409 and "payout account changed" in answer.text
    assert (await lines_of(batch_id))[0]["status"] == "failed"
    assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 10_000
    assert await ledger.check() == []


async def test_only_finance_can_retry_a_line(new_client, settings, stripe_local):
    batch_id, line, publisher_id = await _failed_line(new_client, settings, stripe_local)
    admin, _ = await staff_client(new_client, Role.admin)
    answer = await post_form(admin, f"/finance/payouts/{batch_id}/lines/{line['id']}/retry")
    assert answer.status_code == 403
    assert (await lines_of(batch_id))[0]["status"] == "failed"


async def test_one_worker_at_a_time_pays_a_batch(new_client, settings, stripe_local):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 20_000)
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        ctx = {"settings": settings, "job_try": 1, "redis": pool}
        async with batch_lock(pool, batch_id) as heartbeat:
            assert heartbeat is not None
            # Another worker's job and the sweep meet the lock and leave the batch alone.
            assert await execute_payout_batch(ctx, batch_id) == BUSY
            assert await sweep_payout_batches(ctx) == {batch_id: BUSY}
            assert all(line["status"] == "approved" for line in await lines_of(batch_id))
            await heartbeat()
        # Released: the next one pays it, and two at once pay it once.
        outcomes = await asyncio.gather(execute_payout_batch(ctx, batch_id), execute_payout_batch(ctx, batch_id))
        assert sorted(outcomes) == sorted([BUSY, "done"])
    finally:
        await pool.aclose()
    for line in await lines_of(batch_id):
        assert line["status"] == "paid" and len(transfers_made_for(stripe_local, line["id"])) == 1
    assert await ledger.check() == []
