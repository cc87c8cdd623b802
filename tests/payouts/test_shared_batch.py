"""Several workers paying one batch (issue 16): each claims lines no one else holds, so they share the
lines and each line is still paid once; a line another worker holds is left to it while its lease runs,
and taken over once the lease lapses; the batch's executor finishes the batch only when every line is
closed. On both engines (SQLite: the same conditional UPDATE, without SKIP LOCKED)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from server.core import clock
from server.payouts import execute
from server.payouts.tables import PayoutBatch, PayoutLine
from tests.payouts.factories import approved_batch, lines_of, made, transfer_posts
from tests.payouts.test_execute import assert_paid_once


async def test_an_executor_and_a_helper_share_the_lines_and_pay_each_once(
    new_client, settings, stripe_local, monkeypatch
):
    monkeypatch.setattr(execute, "CHUNK", 3)  # several claims from a small batch
    transfer = execute._transfer

    async def slow_transfer(line, client):  # Stripe's latency: the executor cannot take every chunk at once
        await asyncio.sleep(0.3)
        return await transfer(line, client)

    monkeypatch.setattr(execute, "_transfer", slow_transfer)
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, *[10_000 + n for n in range(12)])
    client = stripe_local.client()
    helping: list[asyncio.Task] = []

    async def invite() -> None:  # what the worker's job does once the batch is executing
        helping.append(asyncio.create_task(execute.help(batch_id, client, worker="host:2")))

    assert await execute.execute(batch_id, client, worker="host:1", on_start=invite) == "done"
    helped = await helping[0]

    await assert_paid_once(stripe_local, batch_id, accounts)
    by_worker = Counter(line["worker"] for line in await lines_of(batch_id))
    assert set(by_worker) == {"host:1", "host:2"} and by_worker["host:2"] == helped > 0
    assert all(line["lease_until"] is None for line in await lines_of(batch_id))


async def test_a_line_held_by_a_live_worker_is_left_to_it_and_a_lapsed_one_taken_over(
    new_client, settings, stripe_local
):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 20_000)
    held, lapsed = await lines_of(batch_id)
    now = clock.now()
    await PayoutBatch.update({PayoutBatch.status: "executing"}).where(PayoutBatch.id == batch_id)
    for line, worker, until in ((held, "other:1", now + timedelta(hours=1)), (lapsed, "gone:1", now - timedelta(1))):
        await PayoutLine.update(
            {PayoutLine.status: "submitting", PayoutLine.worker: worker, PayoutLine.lease_until: until}
        ).where(PayoutLine.id == line["id"])
    client = stripe_local.client()

    assert await execute.help(batch_id, client, worker="host:2") == 1  # the lapsed line only
    running = asyncio.create_task(execute.execute(batch_id, client, worker="host:1"))
    await asyncio.sleep(1.5)
    assert not running.done()  # the executor waits for the line another worker holds
    assert transfer_posts(stripe_local, held["id"]) == []
    # That worker died: its lease lapses, and the executor takes the line over.
    await PayoutLine.update({PayoutLine.lease_until: now - timedelta(seconds=1)}).where(PayoutLine.id == held["id"])
    assert await asyncio.wait_for(running, 30) == "done"

    await assert_paid_once(stripe_local, batch_id, accounts)
    workers = {line["id"]: line["worker"] for line in await lines_of(batch_id)}
    assert workers == {held["id"]: "host:1", lapsed["id"]: "host:2"}
    assert len(made(transfer_posts(stripe_local, held["id"]))) == 1
