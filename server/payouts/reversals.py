"""Transfers reversed at Stripe (`transfer.reversed`, handed over by events.py): the paid line
becomes returned and each reversal's amount goes from stripe_clearing back to the publisher's
available balance, once per reversal id, in any order and however often the event comes. A transfer
with more than 10 reversals is read from Stripe page by page: every reversal counts, not the 10 its
event carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from piccolo.query.functions.aggregate import Sum

from server.audit import service as audit
from server.core import clock, db
from server.ledger import postings
from server.ledger.tables import LedgerEntry
from server.payouts.execute import settle_recorded
from server.payouts.keys import reversal_key
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
        returned = 0
        for reversal in every:
            amount = int(reversal["amount"])
            posted = await postings.return_payout(
                line["publisher"],
                amount,
                line["currency"],
                reference_id=line["id"],
                key=reversal_key(reversal["id"]),
                memo=f"transfer {transfer['id']} reversed ({reversal['id']})",
            )
            returned += 0 if posted.replayed else amount
        if transfer.get("reversed"):
            changed = (
                await PayoutLine.update(
                    {PayoutLine.status: LineStatus.returned.value, PayoutLine.updated_at: clock.now()}
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
