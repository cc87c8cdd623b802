"""Reconciling a paid batch with Stripe (MONEY.md I10): every transfer Stripe holds in the batch's
transfer group matches exactly one line, paid once, for the line's amount, currency and account,
with one settlement in the ledger; every line the ledger says was paid has its transfer there; and
every reversal of those transfers (all of them, page by page) was returned to the publisher once.

Run by the worker when a batch is done and on finance's request. Each result is an audit event
(`payout_batch.reconciled`: who asked, when, the counts and every difference), so finance sees the
latest on the batch page and the history in the audit log. Nothing is changed: a difference is for a
person to look into."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import stripe

from server.audit import service as audit
from server.audit.tables import AuditEvent
from server.billing.stripe_api import all_reversals
from server.ledger.tables import LedgerTxn
from server.payouts import reversals
from server.payouts.keys import reversal_key, settled_key, transfer_group
from server.payouts.tables import LineStatus, PayoutLine

ACTION = "payout_batch.reconciled"
PAID = (LineStatus.paid.value, LineStatus.returned.value)


@dataclass
class Reconciliation:
    batch_id: int
    transfers: int = 0  # in the batch's transfer group at Stripe
    transferred_minor: int = 0
    paid_lines: int = 0  # paid or returned, as the ledger has it
    paid_minor: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def reconcile_batch(batch_id: int, client: stripe.StripeClient, *, actor_id: int | None = None) -> Reconciliation:
    lines = {r["id"]: r for r in await PayoutLine.select().where(PayoutLine.batch == batch_id)}
    result = Reconciliation(batch_id)
    by_line: dict[int, list[Any]] = defaultdict(list)
    page = await client.v1.transfers.list_async({"transfer_group": transfer_group(batch_id), "limit": 100})
    async for transfer in page.auto_paging_iter():
        result.transfers += 1
        result.transferred_minor += transfer.amount
        raw = (transfer.metadata.to_dict() if transfer.metadata else {}).get("payout_line_id", "")
        if not raw.isdigit() or int(raw) not in lines:
            result.problems.append(
                f"Stripe transfer {transfer.id} ({transfer.amount} {transfer.currency}) is in "
                f"this batch's group but belongs to no line of it."
            )
            continue
        by_line[int(raw)].append(transfer)
    returned = await reversals.returned_by_line(list(lines))
    # Every reversal at Stripe, read page by page (a transfer itself lists only its 10 most recent).
    stripe_reversals: dict[int, list[Any]] = {}
    for line_id, transfers in by_line.items():
        for transfer in transfers:
            if transfer.amount_reversed:
                every = await all_reversals(client, transfer.id)
                stripe_reversals.setdefault(line_id, []).extend([r async for r in every])
    recorded = set(
        await LedgerTxn.select(LedgerTxn.idempotency_key)
        .where(
            LedgerTxn.idempotency_key.is_in(
                [reversal_key(r.id) for found in stripe_reversals.values() for r in found] or ["-"]
            )
        )
        .output(as_list=True)
    )
    settled = set(
        await LedgerTxn.select(LedgerTxn.idempotency_key)
        .where(LedgerTxn.idempotency_key.is_in([settled_key(i) for i in lines] or ["-"]))
        .output(as_list=True)
    )
    for line_id, line in sorted(lines.items()):
        result.problems += _line_problems(
            line, by_line.get(line_id, []), settled_key(line_id) in settled, returned.get(line_id, 0)
        )
        result.problems += [
            f"Line {line_id}: Stripe's reversal {r.id} ({r.amount} {r.currency.upper()}) was "
            "never returned to the publisher here."
            for r in stripe_reversals.get(line_id, [])
            if reversal_key(r.id) not in recorded
        ]
        if line["status"] in PAID:
            result.paid_lines += 1
            result.paid_minor += line["amount_minor"]
    await audit.record(
        ACTION,
        actor_id=actor_id,
        object_type="payout_batch",
        object_id=batch_id,
        **{k: v for k, v in asdict(result).items() if k != "batch_id"},
        ok=result.ok,
    )
    return result


def _line_problems(line: dict[str, Any], transfers: list[Any], settled: bool, returned: int) -> list[str]:
    name = f"Line {line['id']}"
    if len(transfers) > 1:
        return [f"{name} was paid {len(transfers)} times at Stripe: {', '.join(t.id for t in transfers)}."]
    if line["status"] not in PAID:
        if transfers:
            return [f"{name} is {line['status']} here, but Stripe made transfer {transfers[0].id} for it."]
        return [f"{name} has settled in the ledger though it is {line['status']}."] if settled else []
    if not transfers:
        return [f"{name} is {line['status']} here, but Stripe has no transfer for it in this batch."]
    [transfer] = transfers
    found = []
    if transfer.id != line["stripe_transfer_id"]:
        found.append(f"{name} records transfer {line['stripe_transfer_id']}, Stripe made {transfer.id}.")
    if (transfer.amount, transfer.currency.upper(), transfer.destination) != (
        line["amount_minor"],
        line["currency"],
        line["stripe_account_id"],
    ):
        found.append(
            f"{name} pays {line['amount_minor']} {line['currency']} to {line['stripe_account_id']}; "
            f"Stripe's transfer is {transfer.amount} {transfer.currency.upper()} to {transfer.destination}."
        )
    if not settled:
        found.append(f"{name} is {line['status']} but has no settlement in the ledger.")
    if (transfer.amount_reversed or 0) != returned:
        found.append(
            f"{name}: Stripe reversed {transfer.amount_reversed or 0} of its transfer, the ledger "
            f"returned {returned} to the publisher."
        )
    if bool(transfer.reversed) != (line["status"] == LineStatus.returned.value):
        found.append(
            f"{name} is {line['status']} here; Stripe says the transfer is "
            f"{'reversed' if transfer.reversed else 'not reversed'}."
        )
    return found


async def latest(batch_id: int) -> dict[str, Any] | None:
    """The batch's last reconciliation, as recorded: counts, problems, when and by whom."""
    row = (
        await AuditEvent.select(AuditEvent.all_columns(), AuditEvent.actor.email.as_alias("actor_email"))
        .where(AuditEvent.action == ACTION, AuditEvent.object_type == "payout_batch", AuditEvent.object_id == batch_id)
        .order_by(AuditEvent.id, ascending=False)
        .first()
    )
    if row is None:
        return None
    detail = row["detail"] if isinstance(row["detail"], dict) else json.loads(row["detail"] or "{}")
    return {**detail, "at": row["created_at"], "by": row["actor_email"]}
