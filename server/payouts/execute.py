"""Paying an approved batch: one Stripe Transfer per line, each paid at most once (MONEY.md I8, I10).

A batch goes approved → executing → done, and only while the fingerprint of its lines still matches
the one stored at approval (I9): otherwise the approval is void and nothing is paid. Each line goes
approved → submitting → paid | failed, every step in its own short transaction:

1. submitting is committed before Stripe is called;
2. the transfer is created with the idempotency key `payout-line:{id}:attempt:{attempt}`: a rerun of
   a line still submitting (a crash, a lost answer) re-sends the same key, and Stripe answers with
   the first transfer instead of paying twice;
3. the transfer id is stored on the line;
4. the line becomes paid and `settle_payout` (in transit → stripe_clearing, key
   `payout-line:{id}:settled`) is posted, in one transaction.

Stripe refusing a transfer (a 4xx, e.g. balance_insufficient) fails the line and returns its
reservation to the publisher's available balance (`payout-line:{id}:returned`). Stripe unreachable
or answering 5xx leaves the line submitting and raises `Transient`: the worker retries later with
the same key. Lines run concurrently (at most CONCURRENCY at once), never inside one transaction.

`transfer.reversed` (events.py): the paid line becomes returned and each reversal's amount goes from
stripe_clearing back to the publisher's available balance, once per reversal id, in any order."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import stripe

from server import db
from server.audit import service as audit
from server.billing.stripe_api import is_transient
from server.errors import Conflict
from server.ledger import service as ledger
from server.ledger import templates
from server.ledger.service import Line
from server.ledger.tables import AccountKind as K
from server.payouts import review
from server.payouts.tables import BatchStatus, LineStatus, PayoutBatch, PayoutLine

log = logging.getLogger("affnet.payouts")

CONCURRENCY = 8
# The steps a crash can be injected after (tests): every gap where a real process could die.
STEPS = ("batch_executing", "line_submitting", "transfer_returned", "transfer_stored", "line_settled")


class Transient(Exception):
    """Stripe could not be reached or answered 5xx: the line stays submitting; try again later."""


class CrashInjected(Exception):
    """Raised between two steps by `crash_after` (tests): the process 'dies' there."""


def idempotency_key(line_id: int, attempt: int) -> str:
    return f"payout-line:{line_id}:attempt:{attempt}"


def settled_key(line_id: int) -> str:
    return f"payout-line:{line_id}:settled"


def returned_key(line_id: int) -> str:
    return f"payout-line:{line_id}:returned"


def reversal_key(reversal_id: str) -> str:
    return f"transfer-reversal:{reversal_id}"


def _crash(crash_after: str | None, step: str) -> None:
    if crash_after == step:
        raise CrashInjected(step)


async def execute(batch_id: int, client: stripe.StripeClient, *, crash_after: str | None = None) -> str:
    """Pay the batch's lines; resumable (a batch left executing by a crash continues where it stopped).
    Returns the batch's status. Raises Conflict when the approval no longer holds, Transient when
    some line must be retried later."""
    if crash_after is not None and crash_after not in STEPS:
        raise ValueError(f"unknown step {crash_after!r}")
    await _start(batch_id)
    _crash(crash_after, "batch_executing")
    pending = await PayoutLine.select(PayoutLine.id).where(
        PayoutLine.batch == batch_id,
        PayoutLine.status.is_in([LineStatus.approved.value, LineStatus.submitting.value])
    ).order_by(PayoutLine.id).output(as_list=True)
    gate = asyncio.Semaphore(CONCURRENCY)
    transient: list[int] = []

    async def one(line_id: int) -> None:
        async with gate:
            try:
                await pay_line(line_id, client, crash_after=crash_after)
            except Transient:
                transient.append(line_id)

    async with asyncio.TaskGroup() as group:  # one crash cancels the rest, as a dying process would
        for line_id in pending:
            group.create_task(one(line_id))
    if transient:
        raise Transient(f"payout lines {sorted(transient)} could not reach Stripe; they stay submitting")
    return await _finish(batch_id)


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
        if not row["approved_fingerprint"] or row["approved_fingerprint"] != await review.current_fingerprint(
                batch_id):
            void = True
            await PayoutBatch.update({PayoutBatch.status: BatchStatus.prepared.value, PayoutBatch.approved_by: None,
                                      PayoutBatch.approved_at: None, PayoutBatch.approved_fingerprint: ""}
                                     ).where(PayoutBatch.id == batch_id,
                                             PayoutBatch.status == BatchStatus.approved.value)
            await audit.record("payout_batch.approval_voided", actor_id=None, object_type="payout_batch",
                               object_id=batch_id, reason="lines changed after approval")
        else:
            await PayoutBatch.update({PayoutBatch.status: BatchStatus.executing.value}).where(
                PayoutBatch.id == batch_id, PayoutBatch.status == BatchStatus.approved.value)
            await audit.record("payout_batch.executing", actor_id=None, object_type="payout_batch",
                               object_id=batch_id)
    if void:
        raise Conflict("The lines changed after approval: the approval is void and nothing was paid.")


async def _finish(batch_id: int) -> str:
    async with db.transaction():
        open_lines = await PayoutLine.count().where(
            PayoutLine.batch == batch_id,
            PayoutLine.status.is_in([LineStatus.approved.value, LineStatus.submitting.value]))
        if open_lines == 0:
            done = await PayoutBatch.update({PayoutBatch.status: BatchStatus.done.value,
                                             PayoutBatch.executed_at: datetime.now(UTC)}).where(
                PayoutBatch.id == batch_id, PayoutBatch.status == BatchStatus.executing.value
            ).returning(PayoutBatch.id)
            if done:
                await audit.record("payout_batch.done", actor_id=None, object_type="payout_batch",
                                   object_id=batch_id)
        row = await PayoutBatch.select(PayoutBatch.status).where(PayoutBatch.id == batch_id).first()
    return row["status"]


async def pay_line(line_id: int, client: stripe.StripeClient, *, crash_after: str | None = None) -> str:
    """One line's steps, each committed on its own; safe to run again after a crash at any point."""
    async with db.transaction():
        await PayoutLine.update({PayoutLine.status: LineStatus.submitting.value,
                                 PayoutLine.updated_at: datetime.now(UTC)}).where(
            PayoutLine.id == line_id, PayoutLine.status == LineStatus.approved.value)
        line = await PayoutLine.select().where(PayoutLine.id == line_id).first()
    if line["status"] != LineStatus.submitting.value:
        return line["status"]  # paid, failed, returned or held: nothing to do
    _crash(crash_after, "line_submitting")

    transfer_id = line["stripe_transfer_id"]
    if not transfer_id:
        try:
            transfer = await client.v1.transfers.create_async({
                "amount": line["amount_minor"], "currency": line["currency"].lower(),
                "destination": line["stripe_account_id"], "transfer_group": f"batch-{line['batch']}",
                "metadata": {"payout_line_id": str(line_id), "payout_batch_id": str(line["batch"])},
                "description": f"affnet payout line {line_id}",
            }, {"idempotency_key": idempotency_key(line_id, line["attempt"])})
        except stripe.StripeError as exc:
            return await _refused(line, exc)
        transfer_id = transfer.id
        _crash(crash_after, "transfer_returned")
        await PayoutLine.update({PayoutLine.stripe_transfer_id: transfer_id, PayoutLine.error: "",
                                 PayoutLine.updated_at: datetime.now(UTC)}).where(
            PayoutLine.id == line_id, PayoutLine.status == LineStatus.submitting.value)
        _crash(crash_after, "transfer_stored")
    async with db.transaction():
        status = await _settle(line_id, transfer_id)
    _crash(crash_after, "line_settled")
    return status


async def _settle(line_id: int, transfer_id: str) -> str:
    """submitting → paid with the transfer id, and the settlement posted; inside the caller's transaction."""
    paid = await PayoutLine.update({PayoutLine.status: LineStatus.paid.value, PayoutLine.stripe_transfer_id:
                                    transfer_id, PayoutLine.error: "", PayoutLine.updated_at: datetime.now(UTC)}
                                   ).where(PayoutLine.id == line_id,
                                           PayoutLine.status == LineStatus.submitting.value
                                           ).returning(PayoutLine.amount_minor, PayoutLine.currency)
    if paid:
        await templates.settle_payout(paid[0]["amount_minor"], paid[0]["currency"], reference_id=line_id,
                                      key=settled_key(line_id))
        await audit.record("payout_line.paid", actor_id=None, object_type="payout_line", object_id=line_id,
                           transfer=transfer_id)
    row = await PayoutLine.select(PayoutLine.status).where(PayoutLine.id == line_id).first()
    return row["status"]


async def _refused(line: dict[str, Any], exc: stripe.StripeError) -> str:
    line_id = line["id"]
    message = f"{getattr(exc, 'code', None) or type(exc).__name__}: {exc.user_message or str(exc)}"[:500]
    if is_transient(exc) or isinstance(exc, stripe.IdempotencyError):
        # Unknown whether Stripe made the transfer: keep submitting (and the same key) and try again later.
        await PayoutLine.update({PayoutLine.error: message, PayoutLine.updated_at: datetime.now(UTC)}).where(
            PayoutLine.id == line_id, PayoutLine.status == LineStatus.submitting.value)
        raise Transient(message) from exc
    async with db.transaction():
        failed = await PayoutLine.update({PayoutLine.status: LineStatus.failed.value, PayoutLine.error: message,
                                          PayoutLine.updated_at: datetime.now(UTC)}).where(
            PayoutLine.id == line_id, PayoutLine.status == LineStatus.submitting.value).returning(PayoutLine.id)
        if failed:
            await review._return_reservation(line_id, memo=f"transfer failed: {message}", actor_id=None,
                                             key=returned_key(line_id))
            await audit.record("payout_line.failed", actor_id=None, object_type="payout_line", object_id=line_id,
                               error=message)
    return LineStatus.failed.value


async def transfer_reversed(transfer: dict[str, Any]) -> str:
    """A transfer of a line was reversed at Stripe: each reversal's money back to the publisher's
    available balance once (key from the reversal id), the line returned when fully reversed."""
    raw = (transfer.get("metadata") or {}).get("payout_line_id")
    query = PayoutLine.select()
    if raw and str(raw).isdigit():
        query = query.where(PayoutLine.id == int(raw))
    else:
        query = query.where(PayoutLine.stripe_transfer_id == str(transfer.get("id") or "-"))
    async with db.transaction():
        line = await query.first()
        if line is None:
            return "ignored: not a payout transfer"
        if line["status"] == LineStatus.submitting.value:
            # The event proves the transfer exists; the executor has not recorded it yet.
            await _settle(line["id"], transfer["id"])
        elif line["status"] not in (LineStatus.paid.value, LineStatus.returned.value):
            return f"ignored: payout line {line['id']} is {line['status']}"
        currency = line["currency"]
        clearing = await ledger.account(K.stripe_clearing, currency)
        available = await ledger.account(K.publisher_available, currency, line["publisher"])
        returned = 0
        for reversal in (transfer.get("reversals") or {}).get("data") or []:
            amount = int(reversal["amount"])
            posted = await ledger.post(kind="payout.reversed", idempotency_key=reversal_key(reversal["id"]),
                                       reference_type="payout_line", reference_id=line["id"],
                                       memo=f"transfer {transfer['id']} reversed ({reversal['id']})",
                                       lines=[Line(clearing, -amount, currency), Line(available, amount, currency)])
            returned += 0 if posted.replayed else amount
        if transfer.get("reversed"):
            changed = await PayoutLine.update({PayoutLine.status: LineStatus.returned.value,
                                               PayoutLine.updated_at: datetime.now(UTC)}).where(
                PayoutLine.id == line["id"], PayoutLine.status == LineStatus.paid.value).returning(PayoutLine.id)
            if changed:
                await audit.record("payout_line.returned", actor_id=None, object_type="payout_line",
                                   object_id=line["id"], transfer=transfer["id"])
    return f"payout line {line['id']}: {returned} returned to available"


async def resumable(limit: int = 50) -> list[int]:
    """Batches to pay or to finish paying: approved, or left executing by a crash."""
    return await PayoutBatch.select(PayoutBatch.id).where(
        PayoutBatch.status.is_in([BatchStatus.approved.value, BatchStatus.executing.value])
    ).order_by(PayoutBatch.id).limit(limit).output(as_list=True)
