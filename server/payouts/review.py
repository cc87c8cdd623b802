"""Finance review of a prepared batch: reading it, holding lines, and approval by a second person.

Four eyes (MONEY.md I9): whoever prepared a batch, held any of its lines, or made a settings or
hold change that counts for it (server/payouts/four_eyes.py) cannot approve it.
Approval stores a fingerprint of the lines (sha256 of each line's id, publisher, amount, currency
and status); any later change to a line voids the approval, and execution pays a batch only while
the fingerprint of its lines still matches the one approved."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from typing import Any

from server.accounts.identity import CurrentUser
from server.audit import service as audit
from server.core import clock, db
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.i18n import _, _l
from server.ledger import postings
from server.ledger.service import InsufficientFunds
from server.ledger.tables import LedgerTxn
from server.payouts import four_eyes
from server.payouts.account_tables import PayoutAccount
from server.payouts.keys import reserved_key, undo_key
from server.payouts.service import REASONS
from server.payouts.tables import (
    BatchStatus,
    CarryReason,
    ChangeKind,
    LineStatus,
    PayoutBatch,
    PayoutCarryOver,
    PayoutLine,
)

log = logging.getLogger("affnet.payouts")
EDITABLE = (BatchStatus.prepared.value, BatchStatus.approved.value)
IN_FLIGHT = (BatchStatus.approved.value, BatchStatus.executing.value)  # the worker is (about to be) paying it
FINAL = (BatchStatus.done.value,)
STATUS_TEXT = {
    BatchStatus.prepared.value: _l("prepared"),
    BatchStatus.approved.value: _l("approved"),
    BatchStatus.executing.value: _l("being paid"),
    BatchStatus.done.value: _l("done"),
}
LINE_STATUS_TEXT = {
    LineStatus.held.value: _l("held"),
    LineStatus.approved.value: _l("to pay"),
    LineStatus.submitting.value: _l("being sent"),
    LineStatus.paid.value: _l("paid"),
    LineStatus.failed.value: _l("failed"),
    LineStatus.returned.value: _l("returned"),
}


async def batches(limit: int = 100) -> list[dict[str, Any]]:
    return await PayoutBatch.select().order_by(PayoutBatch.id, ascending=False).limit(limit)


async def batch(batch_id: int) -> dict[str, Any]:
    row = (
        await PayoutBatch.select(
            PayoutBatch.all_columns(),
            PayoutBatch.prepared_by.email.as_alias("prepared_by_email"),
            PayoutBatch.approved_by.email.as_alias("approved_by_email"),
            PayoutBatch.last_edited_by.email.as_alias("last_edited_by_email"),
        )
        .where(PayoutBatch.id == batch_id)
        .first()
    )
    if row is None:
        raise NotFound(_("There is no such payout batch."))
    return row


async def line_counts(batch_id: int) -> dict[str, int]:
    """How many of the batch's lines are in each status."""
    rows = await PayoutLine.raw(
        "SELECT status, COUNT(*) AS n FROM payout_line WHERE batch = {} GROUP BY status", batch_id
    )
    return {r["status"]: int(r["n"]) for r in rows}


async def lines(batch_id: int) -> list[dict[str, Any]]:
    return (
        await PayoutLine.select(PayoutLine.all_columns(), PayoutLine.publisher.email.as_alias("publisher_email"))
        .where(PayoutLine.batch == batch_id)
        .order_by(PayoutLine.id)
    )


async def carried(batch_id: int) -> list[dict[str, Any]]:
    rows = (
        await PayoutCarryOver.select(
            PayoutCarryOver.all_columns(), PayoutCarryOver.publisher.email.as_alias("publisher_email")
        )
        .where(PayoutCarryOver.batch == batch_id)
        .order_by(PayoutCarryOver.id)
    )
    for row in rows:
        row["reason_text"] = str(REASONS[CarryReason(row["reason"])])
    return rows


def fingerprint(batch_id: int, rows: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(f"batch:{batch_id}".encode())
    for r in sorted(rows, key=lambda r: r["id"]):
        digest.update(f"|{r['id']}:{r['publisher']}:{r['amount_minor']}:{r['currency']}:{r['status']}".encode())
    return digest.hexdigest()


async def current_fingerprint(batch_id: int) -> str:
    return fingerprint(
        batch_id,
        await PayoutLine.select(
            PayoutLine.id, PayoutLine.publisher, PayoutLine.amount_minor, PayoutLine.currency, PayoutLine.status
        ).where(PayoutLine.batch == batch_id),
    )


async def hold_line(actor: CurrentUser, batch_id: int, line_id: int, reason: str) -> None:
    """Hold a line out of the batch: its reservation is reversed (the publisher's available balance,
    and any debt it settled, are back as they were), the batch's approval is void, and the holder
    becomes one of its editors, who may not approve it."""
    reason = reason.strip()
    if not reason:
        raise Invalid(_("Say why the line is held; the publisher's support will ask."), field="reason")
    async with db.transaction():
        row = await batch(batch_id)
        if row["status"] not in EDITABLE:
            raise Conflict(_("This batch is being paid or was paid: its lines can no longer change."))
        now = clock.now()
        changed = (
            await PayoutLine.update(
                {PayoutLine.status: LineStatus.held.value, PayoutLine.hold_reason: reason, PayoutLine.updated_at: now}
            )
            .where(
                PayoutLine.id == line_id, PayoutLine.batch == batch_id, PayoutLine.status == LineStatus.approved.value
            )
            .returning(PayoutLine.id, PayoutLine.amount_minor, PayoutLine.publisher)
        )
        if not changed:
            raise Conflict(_("This line is not waiting to be paid, so it cannot be held."))
        await return_reservation(line_id, "released", memo=f"held: {reason}", actor_id=actor.id)
        publisher_id, amount = changed[0]["publisher"], changed[0]["amount_minor"]
        # The holder becomes an editor of this batch, and the held money goes out with the
        # publisher's next batch in this currency: both count against the holder (four_eyes.py).
        who = await four_eyes.publisher_label(publisher_id)
        await four_eyes.record(
            ChangeKind.line_held,
            four_eyes.phrase(
                four_eyes.N_("held line #%(line)s of %(who)s (%(amount)s) in batch #%(batch)s (“%(reason)s”)"),
                line=line_id,
                who=who,
                amount=["money", amount, row["currency"]],
                batch=batch_id,
                reason=four_eyes.clip(reason),
            ),
            actor_id=actor.id,
            currency=row["currency"],
            publisher_id=publisher_id,
            batch_id=batch_id,
        )
        await PayoutBatch.update(
            {
                PayoutBatch.status: BatchStatus.prepared.value,
                PayoutBatch.approved_by: None,
                PayoutBatch.approved_at: None,
                PayoutBatch.approved_fingerprint: "",
                PayoutBatch.last_edited_by: actor.id,
                PayoutBatch.total_minor: PayoutBatch.total_minor - amount,
                PayoutBatch.held_count: PayoutBatch.held_count + 1,
            }
        ).where(PayoutBatch.id == batch_id)
        await audit.record(
            "payout_line.held",
            actor_id=actor.id,
            object_type="payout_line",
            object_id=line_id,
            batch_id=batch_id,
            reason=reason,
            approval_voided=row["status"] == "approved",
        )


async def _reservations(line_id: int) -> list[dict[str, Any]]:
    """The line's reservations in the ledger, oldest first: one, and one more per retry."""
    return (
        await LedgerTxn.select(LedgerTxn.id, LedgerTxn.idempotency_key)
        .where(
            LedgerTxn.kind == "payout.reserved",
            LedgerTxn.reference_type == "payout_line",
            LedgerTxn.reference_id == line_id,
        )
        .order_by(LedgerTxn.id)
    )


async def return_reservation(line_id: int, undone: str, *, memo: str, actor_id: int | None) -> None:
    """The exact opposite of the line's latest reservation (in transit back to available, debt
    restored), under its `undone` key (released: held; returned: the transfer failed)."""
    reservations = await _reservations(line_id)
    if not reservations:
        raise Conflict(_("Payout line %(id)s has no reservation in the ledger.", id=line_id))
    await postings.reverse(
        reservations[-1]["id"], key=undo_key(line_id, undone, len(reservations) - 1), memo=memo, actor_id=actor_id
    )


async def retry_line(actor: CurrentUser, batch_id: int, line_id: int) -> int:
    """A failed line is tried again: the same amount to the same payout account, as approved. Its
    money is reserved again exactly as the first time (refused if the publisher's balance no longer
    holds it, e.g. a later batch paid it), and it takes a new attempt, so a new Stripe key."""
    async with db.transaction():
        row = await batch(batch_id)
        line = await PayoutLine.select().where(PayoutLine.id == line_id, PayoutLine.batch == batch_id).first()
        if line is None:
            raise NotFound(_("There is no such line in this batch."))
        if line["status"] != LineStatus.failed.value:
            raise Conflict(
                _(
                    "This line is %(status)s: only a failed line can be retried.",
                    status=LINE_STATUS_TEXT[line["status"]],
                )
            )
        account = (
            await PayoutAccount.select(PayoutAccount.stripe_account_id, PayoutAccount.payouts_enabled)
            .where(PayoutAccount.publisher == line["publisher"])
            .first()
        )
        if account is None or account["stripe_account_id"] != line["stripe_account_id"]:
            raise Conflict(
                _(
                    "The publisher's payout account changed since this batch was approved: the money "
                    "stays in their available balance and goes out with the next period."
                )
            )
        if not account["payouts_enabled"]:
            raise Conflict(
                _(
                    "The publisher's payout account cannot receive payouts yet (Stripe needs more from "
                    "them): retry once it can."
                )
            )
        retry = len(await _reservations(line_id))
        try:
            await postings.reserve_payout(
                line["publisher"],
                line["available_minor"],
                line["currency"],
                owed=line["netted_minor"],
                reference_id=line_id,
                key=reserved_key(line_id, retry),
                memo=f"retry {retry} of a failed transfer",
                actor_id=actor.id,
            )
        except InsufficientFunds as exc:
            raise Conflict(
                _(
                    "The publisher's available balance no longer holds this line's money (a later batch "
                    "may have paid it), so it cannot be retried."
                )
            ) from exc
        await PayoutLine.update(
            {
                PayoutLine.status: LineStatus.approved.value,
                PayoutLine.attempt: line["attempt"] + 1,
                PayoutLine.error: "",
                PayoutLine.updated_at: clock.now(),
            }
        ).where(PayoutLine.id == line_id, PayoutLine.status == LineStatus.failed.value)
        if row["status"] == BatchStatus.done.value:
            await PayoutBatch.update({PayoutBatch.status: BatchStatus.executing.value}).where(
                PayoutBatch.id == batch_id
            )
        await audit.record(
            "payout_line.retried",
            actor_id=actor.id,
            object_type="payout_line",
            object_id=line_id,
            batch_id=batch_id,
            attempt=line["attempt"] + 1,
            last_error=line["error"],
        )
    return line["attempt"] + 1


async def approve(actor: CurrentUser, batch_id: int) -> str:
    """Approve exactly the lines as they are now; refused to the preparer, every editor, and anyone
    whose settings or hold changes count for the batch (four_eyes.py, MONEY.md I9)."""
    async with db.transaction():
        # Take the batch's row first (a no-op write): a hold racing this approval either commits
        # before it, and is seen below, or waits and voids the approval after.
        await PayoutBatch.raw("UPDATE payout_batch SET status = status WHERE id = {}", batch_id)
        row = await batch(batch_id)
        if row["status"] != BatchStatus.prepared.value:
            raise Conflict(
                _(
                    "This batch is %(status)s: only a prepared batch can be approved.",
                    status=STATUS_TEXT[row["status"]],
                )
            )
        refusal = (await four_eyes.standing(row)).refusal(actor.id)
        if refusal:
            raise Forbidden(refusal, code="four_eyes")
        print_ = await current_fingerprint(batch_id)
        approved = (
            await PayoutBatch.update(
                {
                    PayoutBatch.status: BatchStatus.approved.value,
                    PayoutBatch.approved_by: actor.id,
                    PayoutBatch.approved_at: clock.now(),
                    PayoutBatch.approved_fingerprint: print_,
                }
            )
            .where(PayoutBatch.id == batch_id, PayoutBatch.status == BatchStatus.prepared.value)
            .returning(PayoutBatch.id)
        )
        if not approved:
            raise Conflict(_("This batch changed while you approved it; read it again."))
        await audit.record(
            "payout_batch.approved",
            actor_id=actor.id,
            object_type="payout_batch",
            object_id=batch_id,
            fingerprint=print_,
            total_minor=row["total_minor"],
        )
    return print_


CSV_COLUMNS = [
    "line",
    "publisher",
    "email",
    "currency",
    "available",
    "netted",
    "amount",
    "status",
    "first_payout",
    "large_change",
    "previous_amount",
    "hold_reason",
    "stripe_transfer",
    "error",
]


def lines_csv(rows: list[dict[str, Any]]) -> str:
    """The batch page's lines table, row for row (amounts in minor units, as stored)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r["id"],
                r["publisher"],
                _cell(r["publisher_email"]),
                r["currency"],
                r["available_minor"],
                r["netted_minor"],
                r["amount_minor"],
                r["status"],
                "yes" if r["first_payout"] else "",
                "yes" if r["large_change"] else "",
                "" if r["previous_amount_minor"] is None else r["previous_amount_minor"],
                _cell(r["hold_reason"]),
                r["stripe_transfer_id"],
                _cell(r["error"]),
            ]
        )
    return out.getvalue()


def _cell(text: str | None) -> str:
    """No formula injection when the file is opened in a spreadsheet."""
    text = text or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
