"""Paying an approved batch: one Stripe Transfer per line, each paid at most once (MONEY.md I8, I10).

A batch goes approved → executing → done, and only while the fingerprint of its lines still matches
the one stored at approval (I9): otherwise the approval is void and nothing is paid. Each line goes
approved → submitting → paid | failed, and every step is committed before the next one starts:

1. submitting: a chunk of lines is claimed in one statement, before Stripe is called for any of them,
   with the claiming worker's name and a lease (`worker`, `lease_until`);
2. the transfer: created with the idempotency key `payout-line:{id}:attempt:{attempt}` (a rerun of a
   line still submitting, after a crash or a lost answer, re-sends the same key and Stripe answers
   with the first transfer instead of paying twice), at most CONCURRENCY calls in flight;
3. the transfer ids are stored on their lines;
4. the lines become paid and their settlements (in transit → stripe_clearing, key
   `payout-line:{id}:settled`) are posted, a group of up to CHUNK lines in one transaction.
Transfers are made while earlier ones are being recorded (a queue between 2 and 3), so Stripe's
latency, not the database's, sets the pace.

Several workers can pay one batch together: the batch's executor (`execute`, one at a time per batch:
the worker's lock) and helpers in other worker processes (`help`). Each claims chunks of the lines no
one holds: approved ones, and submitting ones whose lease has lapsed (a worker that died) or was let
go (a run that ended with the line still to retry). The claim is one conditional UPDATE, its rows
picked with FOR UPDATE SKIP LOCKED on PostgreSQL so two claimers take different lines without
waiting for each other (SQLite has one writer: the same UPDATE, without the lock clause). A run
renews its leases while it lasts and lets them go when it ends. The executor waits for lines other
workers hold before it finishes the batch. A lease that lapses under a run that is merely slow lets
another run send the same key: Stripe answers with the same transfer, and the settlement's ledger key
posts once, so even then nothing is paid twice.

Stripe refusing a transfer (a 4xx) fails the line and returns its reservation to the publisher's
available balance. Except `balance_insufficient`: the platform's available balance at Stripe is short
(card payments stay pending there for days), which is no fault of the line. The line stays submitting,
its money reserved, and takes a new attempt number (Stripe saved the refusal under the old key), and
the worker tries again later (Transient) until the funds are available: then it is paid, once.
Stripe unreachable or answering 5xx leaves the line submitting with the error and raises `Transient`:
the worker tries again later. A line tried again after an error is first looked up at Stripe
(transfers of its batch's transfer_group to its account, by the line id in their metadata): found, it
is recorded as paid. Not found, the same key is sent again, unless Stripe has saved a 5xx under that
key (it would answer the same 5xx for ever): then the line takes a new attempt number, so a new key.
Finance can also retry a failed line (review.retry_line): its money is reserved again and the line
takes a new attempt.

Reversals at Stripe (`transfer.reversed`) are applied by reversals.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import stripe

from server.audit import service as audit
from server.billing.stripe_api import is_transient
from server.core import clock, db, process
from server.core.errors import Conflict
from server.ledger import postings
from server.payouts import notices, review
from server.payouts.keys import idempotency_key, settled_key, transfer_group
from server.payouts.tables import BatchStatus, LineStatus, PayoutBatch, PayoutLine
from server.webhooks import events

log = logging.getLogger("affnet.payouts")

# Transfers in flight. More costs the client more than it gains: httpcore checks every pooled
# connection on each request (bench: 8 → 466 transfers/s, 16 → 325).
CONCURRENCY = 8
CHUNK = 100  # lines claimed per statement, and settled per ledger call
OPEN = (LineStatus.approved.value, LineStatus.submitting.value)
LEASE = timedelta(minutes=2)  # a dead worker's lines are taken over after this
RENEW_EVERY = 20.0  # seconds between renewals of a run's leases
WAIT_FOR_OTHERS = 0.5  # seconds between looks at lines other workers hold, before finishing a batch

Heartbeat = Callable[[], Awaitable[Any]]
JOB = "execute_payout_batch"  # the worker job that runs `execute` (workers/jobs/payouts.py)


class Transient(Exception):
    """Stripe could not be reached or answered 5xx: the line stays submitting; try again later."""


async def execute(
    batch_id: int,
    client: stripe.StripeClient,
    *,
    heartbeat: Heartbeat | None = None,
    worker: str | None = None,
    on_start: Callable[[], Awaitable[None]] | None = None,
) -> str:
    """Pay the batch's lines; resumable (a batch left executing by a crash continues where it stopped).
    Returns the batch's status. Raises Conflict when the approval no longer holds, Transient when
    some line must be retried later. `heartbeat` is awaited after every chunk (the worker extends its
    lock on the batch there). Helpers may pay some of the lines meanwhile (`help`): this waits for
    them before it finishes the batch; `on_start` is awaited once the batch is executing (the worker
    invites them there)."""
    await _start(batch_id)
    if on_start is not None:
        await on_start()
    transient, _ = await _pay(batch_id, client, heartbeat, worker or process.name(), wait_for_others=True)
    if transient:
        raise Transient(
            f"{len(transient)} payout line(s) could not be paid yet (first: {sorted(transient)[:10]}); "
            "they stay submitting"
        )
    return await _finish(batch_id)


async def help(batch_id: int, client: stripe.StripeClient, *, worker: str | None = None) -> int:  # noqa: A001
    """Pay lines of an executing batch beside its executor, until none is left to claim; how many this
    paid. Lines it could not pay stay submitting, let go for the executor or the sweep to retry."""
    if not await claimable(batch_id):
        return 0
    _, paid = await _pay(batch_id, client, None, worker or process.name(), wait_for_others=False)
    await _finish(batch_id)
    return paid


async def open_lines(batch_id: int) -> int:
    return await PayoutLine.count().where(PayoutLine.batch == batch_id, PayoutLine.status.is_in(list(OPEN)))


async def claimable(batch_id: int) -> bool:
    """Whether an executing batch has lines no worker holds (for helpers deciding to join)."""
    rows = await PayoutLine.raw(
        "SELECT l.id FROM payout_line l JOIN payout_batch b ON b.id = l.batch "  # noqa: S608 - constant SQL
        "WHERE l.batch = {} AND b.status = 'executing' AND " + _FREE + " LIMIT 1",
        batch_id,
        clock.now(),
    )
    return bool(rows)


async def _pay(
    batch_id: int, client: stripe.StripeClient, heartbeat: Heartbeat | None, worker: str, *, wait_for_others: bool
) -> tuple[list[int], int]:
    """Claim, transfer and settle lines until none is free (and, `wait_for_others`, every open line is
    this run's); the lines to try again later, and how many this run paid. One crash (an
    exception anywhere) cancels everything in flight, as a dying process would; the run's leases are
    let go whichever way it ends."""
    transient: list[int] = []
    paid = 0
    made: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def send(line: dict[str, Any]) -> None:
        try:
            transfer_id = await _transfer(line, client)
            if transfer_id:
                made.put_nowait((line["id"], transfer_id))
        except Transient:
            transient.append(line["id"])
        finally:
            gate.release()

    async def record() -> None:
        nonlocal paid
        finished = False
        while not finished:
            item = await made.get()
            group = []
            while item is not None:
                group.append(item)
                if len(group) == CHUNK or made.empty():
                    break
                item = made.get_nowait()
            finished = item is None
            if group:
                await _store_transfers(group)
                paid += await _settle([line_id for line_id, _ in group])
                if heartbeat is not None:
                    await heartbeat()

    async def renew() -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            await _renew(batch_id, worker)

    try:
        async with asyncio.TaskGroup() as tasks:
            recorder = tasks.create_task(record())
            renewer = tasks.create_task(renew())
            sending = []
            while True:
                claimed = await _claim(batch_id, worker)
                if not claimed:
                    if not wait_for_others or not await _open_elsewhere(batch_id, worker):
                        break
                    await asyncio.sleep(WAIT_FOR_OTHERS)  # then claim again: a lapsed lease frees a line
                for line in claimed:
                    await gate.acquire()
                    sending.append(tasks.create_task(send(line)))
                if heartbeat is not None:
                    await heartbeat()
            await asyncio.gather(*sending)
            made.put_nowait(None)
            await recorder
            renewer.cancel()
    finally:
        with contextlib.suppress(Exception):  # not let go, the leases lapse by themselves
            await _let_go(batch_id, worker)
    return transient, paid


async def _start(batch_id: int) -> None:
    """approved → executing while the approval's fingerprint still matches; executing: resume."""
    void = False
    async with db.transaction():
        row = await PayoutBatch.select().where(PayoutBatch.id == batch_id).first()
        if row is None:
            raise Conflict("There is no such payout batch.")
        if row["status"] in (BatchStatus.executing.value, BatchStatus.done.value):
            return
        if row["status"] != BatchStatus.approved.value:
            raise Conflict(f"This batch is {row['status']}: only an approved batch is paid.")
        if not row["approved_fingerprint"] or row["approved_fingerprint"] != await review.current_fingerprint(batch_id):
            void = True
            await PayoutBatch.update(
                {
                    PayoutBatch.status: BatchStatus.prepared.value,
                    PayoutBatch.approved_by: None,
                    PayoutBatch.approved_at: None,
                    PayoutBatch.approved_fingerprint: "",
                }
            ).where(PayoutBatch.id == batch_id, PayoutBatch.status == BatchStatus.approved.value)
            await audit.record(
                "payout_batch.approval_voided",
                actor_id=None,
                object_type="payout_batch",
                object_id=batch_id,
                reason="lines changed after approval",
            )
        else:
            await PayoutBatch.update({PayoutBatch.status: BatchStatus.executing.value}).where(
                PayoutBatch.id == batch_id, PayoutBatch.status == BatchStatus.approved.value
            )
            await audit.record("payout_batch.executing", actor_id=None, object_type="payout_batch", object_id=batch_id)
    if void:
        raise Conflict("The lines changed after approval: the approval is void and nothing was paid.")


async def _finish(batch_id: int) -> str:
    async with db.transaction():
        open_lines = await PayoutLine.count().where(PayoutLine.batch == batch_id, PayoutLine.status.is_in(list(OPEN)))
        if open_lines == 0:
            done = (
                await PayoutBatch.update(
                    {PayoutBatch.status: BatchStatus.done.value, PayoutBatch.executed_at: clock.now()}
                )
                .where(PayoutBatch.id == batch_id, PayoutBatch.status == BatchStatus.executing.value)
                .returning(PayoutBatch.id)
            )
            if done:
                await audit.record("payout_batch.done", actor_id=None, object_type="payout_batch", object_id=batch_id)
        row = await PayoutBatch.select(PayoutBatch.status).where(PayoutBatch.id == batch_id).first()
    return row["status"]


# A line no run holds: approved, or submitting without a live lease. Constant SQL, two parameters
# in the order (batch_id, now) where used.
_FREE = "(l.status = 'approved' OR (l.status = 'submitting' AND (l.lease_until IS NULL OR l.lease_until < {})))"
_LINE = "id, batch, amount_minor, currency, stripe_account_id, stripe_transfer_id, attempt, error"
_CLAIM_SET = "status = 'submitting', worker = {}, lease_until = {}, updated_at = {}"
# SQLite has one writer: the statement is the claim. Parameters: worker, lease, now, batch, now, now.
_CLAIM_SQLITE = (
    f"UPDATE payout_line SET {_CLAIM_SET} WHERE id IN (SELECT id FROM payout_line l WHERE l.batch = {{}} "  # noqa: S608
    f"AND {_FREE} ORDER BY id LIMIT {{chunk}}) AND {_FREE.replace('l.', '')} RETURNING {_LINE}"
)
# PostgreSQL: the rows are picked once, in a CTE, skipping those another claim has locked. (As an IN (…)
# subquery the LIMITed pick may be run again for each row, each time past the rows this statement has
# just updated: one claim took a whole batch.) The outer condition is checked again on each row once
# locked. Parameters: batch, now, worker, lease, now, now.
_CLAIM_PG = (
    f"WITH picked AS (SELECT l.id FROM payout_line l WHERE l.batch = {{}} AND {_FREE} ORDER BY l.id "  # noqa: S608
    f"LIMIT {{chunk}} FOR UPDATE SKIP LOCKED) UPDATE payout_line l SET {_CLAIM_SET} FROM picked "
    f"WHERE l.id = picked.id AND {_FREE} RETURNING " + ", ".join(f"l.{c.strip()}" for c in _LINE.split(","))
)


async def _claim(batch_id: int, worker: str) -> list[dict[str, Any]]:
    """Up to CHUNK free lines of the batch → submitting, held by `worker` under a lease, in one
    statement, committed before any of them is sent: a line is claimed by one run at a time."""
    now = clock.now()
    if db.is_sqlite():
        sql, args = _CLAIM_SQLITE.replace("{chunk}", str(int(CHUNK))), (worker, now + LEASE, now, batch_id, now, now)
    else:
        sql, args = _CLAIM_PG.replace("{chunk}", str(int(CHUNK))), (batch_id, now, worker, now + LEASE, now, now)
    rows = await PayoutLine.raw(sql, *args)
    return sorted(rows, key=lambda r: r["id"])


async def _renew(batch_id: int, worker: str) -> None:
    now = clock.now()
    await PayoutLine.update({PayoutLine.lease_until: now + LEASE}).where(
        PayoutLine.batch == batch_id,
        PayoutLine.worker == worker,
        PayoutLine.status == LineStatus.submitting.value,
        PayoutLine.lease_until.is_not_null(),
    )


async def _let_go(batch_id: int, worker: str) -> None:
    await PayoutLine.update({PayoutLine.lease_until: None}).where(
        PayoutLine.batch == batch_id,
        PayoutLine.worker == worker,
        PayoutLine.status == LineStatus.submitting.value,
    )


async def _open_elsewhere(batch_id: int, worker: str) -> bool:
    """Whether the batch has open lines this run does not hold: held by another worker (wait for it),
    or free since the last claim (a lease lapsed just then: claim it)."""
    rows = await PayoutLine.raw(
        "SELECT id FROM payout_line WHERE batch = {} AND status IN ('approved', 'submitting') "
        "AND NOT (worker = {} AND lease_until IS NOT NULL) LIMIT 1",
        batch_id,
        worker,
    )
    return bool(rows)


async def _transfer(line: dict[str, Any], client: stripe.StripeClient) -> str | None:
    """The line's transfer id: known, found at Stripe, or made now. None when Stripe refused it (the
    line is failed); Transient when it must be tried again later."""
    if line["stripe_transfer_id"]:
        return line["stripe_transfer_id"]
    looked = False
    if line["error"]:  # an earlier try got no answer, or a 5xx: the transfer may exist
        looked = True
        found = await _find_transfer(line, client)
        if found:
            return found
    try:
        return await _create(line, client)
    except stripe.StripeError as exc:
        await _wait_if_short(line, exc)
        if not _saved_server_error(exc):
            return await _refused(line, exc)
        # Stripe saved a 5xx under this key and will answer it for ever: when no transfer was made,
        # the line needs a new key.
        if not looked and (found := await _find_transfer(line, client)):
            return found
        line = await _next_attempt(line, exc)
    try:
        return await _create(line, client)
    except stripe.StripeError as exc:
        await _wait_if_short(line, exc)
        return await _refused(line, exc)


async def _create(line: dict[str, Any], client: stripe.StripeClient) -> str:
    transfer = await client.v1.transfers.create_async(
        {
            "amount": line["amount_minor"],
            "currency": line["currency"].lower(),
            "destination": line["stripe_account_id"],
            "transfer_group": transfer_group(line["batch"]),
            "metadata": {
                "payout_line_id": str(line["id"]),
                "payout_batch_id": str(line["batch"]),
                "attempt": str(line["attempt"]),
            },
            "description": f"affnet payout line {line['id']}",
        },
        {"idempotency_key": idempotency_key(line["id"], line["attempt"])},
    )
    return transfer.id


async def _find_transfer(line: dict[str, Any], client: stripe.StripeClient) -> str | None:
    """A transfer Stripe made for this line under any attempt, if there is one (Transient when Stripe
    cannot be asked)."""
    try:
        page = await client.v1.transfers.list_async(
            {"destination": line["stripe_account_id"], "limit": 100, "transfer_group": transfer_group(line["batch"])}
        )
        async for transfer in page.auto_paging_iter():
            if (transfer.metadata.to_dict() if transfer.metadata else {}).get("payout_line_id") == str(line["id"]):
                return transfer.id
    except stripe.StripeError as exc:
        await _note_error(line["id"], f"looking the transfer up: {_describe(exc)}")
        raise Transient(str(exc)) from exc
    return None


async def _wait_if_short(line: dict[str, Any], exc: stripe.StripeError) -> None:
    """balance_insufficient: no transfer was made, and Stripe keeps that answer under the key. The line
    keeps its money reserved and takes a new key; Transient makes the worker try again later."""
    if getattr(exc, "code", None) != "balance_insufficient":
        return
    await _next_attempt(line, exc)
    await _note_error(line["id"], f"waiting for Stripe's available balance: {_describe(exc)}")
    raise Transient(f"payout line {line['id']}: Stripe's available balance is short") from exc


def _saved_server_error(exc: stripe.StripeError) -> bool:
    """A 5xx that Stripe's idempotency layer replayed: the first request ended in an error, for good."""
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    return (exc.http_status or 0) >= 500 and headers.get("idempotent-replayed") == "true"


async def _next_attempt(line: dict[str, Any], exc: stripe.StripeError) -> dict[str, Any]:
    async with db.transaction():
        bumped = (
            await PayoutLine.update({PayoutLine.attempt: line["attempt"] + 1, PayoutLine.updated_at: clock.now()})
            .where(
                PayoutLine.id == line["id"],
                PayoutLine.status == LineStatus.submitting.value,
                PayoutLine.attempt == line["attempt"],
            )
            .returning(PayoutLine.id)
        )
        if bumped:
            await audit.record(
                "payout_line.new_attempt",
                actor_id=None,
                object_type="payout_line",
                object_id=line["id"],
                attempt=line["attempt"] + 1,
                why=f"Stripe saved an error under the last key: {_describe(exc)}",
            )
    row = await PayoutLine.select().where(PayoutLine.id == line["id"]).first()
    if row["status"] != LineStatus.submitting.value or not bumped:
        raise Transient(f"payout line {line['id']} changed meanwhile")
    return row


def _describe(exc: stripe.StripeError) -> str:
    return f"{getattr(exc, 'code', None) or type(exc).__name__}: {exc.user_message or str(exc)}"[:500]


async def _note_error(line_id: int, message: str) -> None:
    await PayoutLine.update({PayoutLine.error: message[:500], PayoutLine.updated_at: clock.now()}).where(
        PayoutLine.id == line_id, PayoutLine.status == LineStatus.submitting.value
    )


async def _store_transfers(made: Sequence[tuple[int, str]]) -> None:
    await db.execute_many(
        "UPDATE payout_line SET stripe_transfer_id = ?, error = '', updated_at = ? WHERE id = ? AND status = ?",
        [(transfer_id, clock.now(), line_id, LineStatus.submitting.value) for line_id, transfer_id in made],
    )


async def _settle(line_ids: Sequence[int]) -> int:
    """submitting (with a stored transfer id) → paid, and each line's settlement posted, together;
    how many became paid."""
    now = clock.now()
    async with db.transaction():
        paid = (
            await PayoutLine.update(
                {
                    PayoutLine.status: LineStatus.paid.value,
                    PayoutLine.error: "",
                    PayoutLine.lease_until: None,
                    PayoutLine.updated_at: now,
                }
            )
            .where(
                PayoutLine.id.is_in(list(line_ids)),
                PayoutLine.status == LineStatus.submitting.value,
                PayoutLine.stripe_transfer_id != "",
            )
            .returning(
                PayoutLine.id,
                PayoutLine.batch,
                PayoutLine.publisher,
                PayoutLine.amount_minor,
                PayoutLine.currency,
                PayoutLine.stripe_transfer_id,
            )
        )
        if not paid:
            return 0
        await postings.settle_payouts(
            [postings.Settlement(r["amount_minor"], r["currency"], r["id"], settled_key(r["id"])) for r in paid]
        )
        await audit.record_many(
            "payout_line.paid",
            actor_id=None,
            object_type="payout_line",
            items=[(r["id"], {"transfer": r["stripe_transfer_id"]}) for r in paid],
        )
        await notices.payouts_sent(paid, now=now)  # each publisher's "payout sent", with the line it is about
        await events.payouts(events.PAYOUT_PAID, paid, now=now)  # their webhooks' payout.paid
    return len(paid)


async def settle_recorded(line_id: int, transfer_id: str) -> None:
    """A line's transfer learnt from elsewhere (a Stripe event): stored and settled, in the caller's
    transaction."""
    await _store_transfers([(line_id, transfer_id)])
    await _settle([line_id])


async def _refused(line: dict[str, Any], exc: stripe.StripeError) -> None:
    """Stripe said no: a 4xx fails the line and returns its money; anything else is Transient."""
    line_id = line["id"]
    message = _describe(exc)
    if is_transient(exc) or isinstance(exc, stripe.IdempotencyError):
        # Unknown whether Stripe made the transfer: keep submitting (and the same key) and try again later.
        await _note_error(line_id, message)
        raise Transient(message) from exc
    async with db.transaction():
        failed = (
            await PayoutLine.update(
                {
                    PayoutLine.status: LineStatus.failed.value,
                    PayoutLine.error: message,
                    PayoutLine.lease_until: None,
                    PayoutLine.updated_at: clock.now(),
                }
            )
            .where(PayoutLine.id == line_id, PayoutLine.status == LineStatus.submitting.value)
            .returning(
                PayoutLine.id,
                PayoutLine.batch,
                PayoutLine.publisher,
                PayoutLine.amount_minor,
                PayoutLine.currency,
                PayoutLine.attempt,
            )
        )
        if failed:
            await review.return_reservation(line_id, "returned", memo=f"transfer failed: {message}", actor_id=None)
            await audit.record(
                "payout_line.failed",
                actor_id=None,
                object_type="payout_line",
                object_id=line_id,
                error=message,
                attempt=line["attempt"],
            )
            await notices.transfer_failed(failed[0], message)  # the publisher's and finance's mail
            await events.payouts(events.PAYOUT_FAILED, [{**failed[0], "error": message}])
    return None


async def resumable(limit: int = 50) -> list[int]:
    """Batches to pay or to finish paying: approved, or left executing by a crash."""
    return (
        await PayoutBatch.select(PayoutBatch.id)
        .where(PayoutBatch.status.is_in([BatchStatus.approved.value, BatchStatus.executing.value]))
        .order_by(PayoutBatch.id)
        .limit(limit)
        .output(as_list=True)
    )
