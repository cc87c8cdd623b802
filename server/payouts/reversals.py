"""Transfers reversed at Stripe (`transfer.reversed`, handed over by events.py): the paid line
becomes returned and each reversal's amount goes from stripe_clearing back to the publisher's
available balance, once per reversal id, in any order and however often the event comes. A transfer
with more than 10 reversals is read from Stripe page by page: every reversal counts, not the 10 its
event carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from piccolo.query.functions.aggregate import Sum

from server.audit import service as audit
from server.core import db
from server.ledger import service as ledger
from server.ledger.service import Line
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerEntry
from server.payouts.execute import settle_recorded
from server.payouts.tables import LineStatus, PayoutLine

ListReversals = Callable[[str], Awaitable[list[dict[str, Any]]]]


async def returned_by_line(line_ids: Sequence[int]) -> dict[int, int]:
    """What reversals at Stripe have given back to the publisher so far, by payout line (lines with none left out)."""
    if not line_ids:
        return {}
    rows = (
        await LedgerEntry.select(
            LedgerEntry.txn.reference_id.as_alias("line"), Sum(LedgerEntry.amount_minor, alias="total")
        )
        .where(
            LedgerEntry.txn.kind == "payout.reversed",
            LedgerEntry.txn.reference_type == "payout_line",
            LedgerEntry.amount_minor > 0,
            LedgerEntry.txn.reference_id.is_in(list(line_ids)),
        )
        .group_by(LedgerEntry.txn.reference_id)
    )
    return {r["line"]: int(r["total"]) for r in rows if r["total"]}


def reversal_key(reversal_id: str) -> str:
    return f"transfer-reversal:{reversal_id}"


async def transfer_reversed(transfer: dict[str, Any], list_all: ListReversals | None = None) -> str:
    """A transfer of a line was reversed at Stripe: each reversal's money back to the publisher's
    available balance once (key from the reversal id), the line returned when fully reversed. The
    transfer carries its 10 most recent reversals only; when its list has more, `list_all` reads them
    all from Stripe (before the transaction: no network call holds a lock)."""
    listed = transfer.get("reversals") or {}
    every = listed.get("data") or []
    if listed.get("has_more"):
        if list_all is None:
            raise ValueError(f"transfer {transfer.get('id')} has more reversals than its event carries")
        every = await list_all(str(transfer["id"]))
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
            await settle_recorded(line["id"], transfer["id"])
        elif line["status"] not in (LineStatus.paid.value, LineStatus.returned.value):
            return f"ignored: payout line {line['id']} is {line['status']}"
        currency = line["currency"]
        clearing = await ledger.account(K.stripe_clearing, currency)
        available = await ledger.account(K.publisher_available, currency, line["publisher"])
        returned = 0
        for reversal in every:
            amount = int(reversal["amount"])
            posted = await ledger.post(
                kind="payout.reversed",
                idempotency_key=reversal_key(reversal["id"]),
                reference_type="payout_line",
                reference_id=line["id"],
                memo=f"transfer {transfer['id']} reversed ({reversal['id']})",
                lines=[Line(clearing, -amount, currency), Line(available, amount, currency)],
            )
            returned += 0 if posted.replayed else amount
        if transfer.get("reversed"):
            changed = (
                await PayoutLine.update(
                    {PayoutLine.status: LineStatus.returned.value, PayoutLine.updated_at: datetime.now(UTC)}
                )
                .where(PayoutLine.id == line["id"], PayoutLine.status == LineStatus.paid.value)
                .returning(PayoutLine.id)
            )
            if changed:
                await audit.record(
                    "payout_line.returned",
                    actor_id=None,
                    object_type="payout_line",
                    object_id=line["id"],
                    transfer=transfer["id"],
                )
    return f"payout line {line['id']}: {returned} returned to available"
