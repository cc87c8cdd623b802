"""A publisher's payout history, read-only: their payout lines and the periods they were carried over,
in words they can act on, and what has been paid to them so far. Behind /publisher/payouts,
/publisher/payouts/lines/{id}, GET /api/v1/publisher/payouts and the publisher's dashboard.

Every query here is filtered by the publisher's own id, so a publisher never reads another's line
(another's line id answers NotFound, as if it did not exist). Finance's internal fields (first payout,
large change, the previous amount, the attempt counter, the Stripe account, who prepared or approved
the batch) are never selected, so they cannot leak into a page or the API by mistake."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from server.core import money
from server.core.errors import NotFound
from server.core.i18n import _, _l
from server.ledger.tables import LedgerEntry
from server.payouts import reversals
from server.payouts.service import REASONS
from server.payouts.tables import BatchStatus, CarryReason, LineStatus, PayoutCarryOver, PayoutLine

PAGE_SIZE = 20  # lines per page on /publisher/payouts and in the API
CARRIED_LIMIT = 24  # the most recent carry-overs shown: two years of monthly periods


class Shown(StrEnum):
    """A line's status as the publisher sees it (data-status on the page, `status` in the API)."""

    processing = "processing"  # approved or submitting: on its way
    paid = "paid"
    failed = "failed"
    returned = "returned"
    held = "held"


_SHOWN = {
    LineStatus.approved.value: Shown.processing,
    LineStatus.submitting.value: Shown.processing,
    LineStatus.paid.value: Shown.paid,
    LineStatus.failed.value: Shown.failed,
    LineStatus.returned.value: Shown.returned,
    LineStatus.held.value: Shown.held,
}

# Lazy, like every text below: each is read in the language of the page or API call that shows it.
WORDS = {
    Shown.processing: _l("On its way"),
    Shown.paid: _l("Paid"),
    Shown.failed: _l("Failed"),
    Shown.returned: _l("Returned (reversed at Stripe)"),
    Shown.held: _l("Held by finance"),
}

BACK_IN_BALANCE = _l("The money is back in your available balance and is paid at a later payout.")

_NOT_COVERED = _l("affnet's Stripe balance could not cover the transfer at that moment (nothing you need to do).")
# Stripe's error codes for a refused transfer (the part of PayoutLine.error before the colon), in words.
FAILURE_WORDS = {
    "balance_insufficient": _NOT_COVERED,
    "insufficient_funds": _NOT_COVERED,
    "account_invalid": _l("Stripe could not pay into your payout account: check it on Stripe."),
    "account_closed": _l("Your payout account at Stripe is closed: set up payouts again."),
    "insufficient_capabilities_for_transfer": _l(
        "Your Stripe account cannot receive transfers yet: finish or update your details on Stripe."
    ),
    "transfers_not_allowed": _l(
        "Stripe does not allow transfers to your account right now: check your details on Stripe."
    ),
    "amount_too_small": _l("Stripe refused the amount as too small."),
    "amount_too_large": _l("Stripe refused the amount as too large."),
}


def failure_words(error: str) -> str:
    """A failed line's error (`code: Stripe's message`) as a sentence the publisher can act on."""
    code = (error or "").partition(":")[0].strip()
    words = FAILURE_WORDS.get(code)
    if words is None:
        words = _("Stripe refused the transfer (%(code)s).", code=code) if code else _("Stripe refused the transfer.")
    return f"{words} {BACK_IN_BALANCE}"


@dataclass(frozen=True)
class HistoryLine:
    """One payout line of the publisher, minor units."""

    id: int
    period_start: datetime
    period_end: datetime  # the cut-off: the balance was taken as it stood then
    currency: str
    available_minor: int  # the publisher's available balance at the cut-off
    netted_minor: int  # what they owed (clawbacks after an earlier payout), taken out of it
    amount_minor: int  # what the line pays: available less netted
    status: Shown
    detail: str  # the status explained: the error, finance's reason, where it is
    stripe_transfer_id: str  # "" unless paid (or paid, then returned)
    prepared_at: datetime
    updated_at: datetime
    returned_minor: int = 0  # given back by reversals at Stripe (part of a paid line, or all of a returned one)

    @property
    def words(self) -> str:
        return str(WORDS[self.status])


@dataclass(frozen=True)
class CarriedPeriod:
    """A period the publisher was left out of, and why; their balance waited for the next one."""

    period_start: datetime
    period_end: datetime
    currency: str
    balance_minor: int  # available at the cut-off less what they owed (negative: they owed more)
    minimum_minor: int
    reason: CarryReason

    @property
    def words(self) -> str:
        return str(REASONS[self.reason])


@dataclass(frozen=True)
class HistoryPage:
    lines: list[HistoryLine]
    page: int
    per_page: int
    has_more: bool


_LINE_COLUMNS = (
    PayoutLine.id,
    PayoutLine.currency,
    PayoutLine.available_minor,
    PayoutLine.netted_minor,
    PayoutLine.amount_minor,
    PayoutLine.status,
    PayoutLine.error,
    PayoutLine.hold_reason,
    PayoutLine.stripe_transfer_id,
    PayoutLine.created_at,
    PayoutLine.updated_at,
    PayoutLine.batch.period_start.as_alias("period_start"),
    PayoutLine.batch.period_end.as_alias("period_end"),
    PayoutLine.batch.status.as_alias("batch_status"),
)


def _detail(row: dict[str, Any], shown: Shown, returned: int) -> str:
    if shown is Shown.failed:
        return failure_words(row["error"])
    if shown is Shown.held:
        reason = (row["hold_reason"] or "").strip()
        held = _("Finance held this payout: %(reason)s.", reason=reason) if reason else _("Finance held this payout.")
        return f"{held} {BACK_IN_BALANCE}"
    if shown is Shown.returned:
        return f"{_('Stripe reversed the transfer after it was paid.')} {BACK_IN_BALANCE}"
    if shown is Shown.paid and returned:
        return _(
            "Sent to your Stripe account; Stripe later reversed %(amount)s of it, and that part is back in your "
            "available balance.",
            amount=money.display(returned, row["currency"]),
        )
    if shown is Shown.paid:
        return _("Sent to your Stripe account; Stripe pays it into your bank account on its own schedule.")
    if row["status"] == LineStatus.approved.value and row["batch_status"] == BatchStatus.prepared.value:
        return _("Finance is reviewing this period's payouts; it is sent once a second person has approved them.")
    return _("Approved and being sent to your Stripe account.")


def _line(row: dict[str, Any], returned: dict[int, int]) -> HistoryLine:
    shown = _SHOWN[row["status"]]
    back = returned.get(row["id"], 0)
    transfer = row["stripe_transfer_id"] if shown in (Shown.paid, Shown.returned) else ""
    return HistoryLine(
        id=row["id"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        currency=row["currency"],
        available_minor=row["available_minor"],
        netted_minor=row["netted_minor"],
        amount_minor=row["amount_minor"],
        status=shown,
        detail=_detail(row, shown, back),
        stripe_transfer_id=transfer,
        prepared_at=row["created_at"],
        updated_at=row["updated_at"],
        returned_minor=back,
    )


async def lines_of(publisher_id: int, *, page: int = 1, per_page: int | None = None) -> HistoryPage:
    """The publisher's payout lines, newest first, one page at a time (page 1 is the newest)."""
    page, per_page = max(1, page), per_page or PAGE_SIZE
    rows = (
        await PayoutLine.select(*_LINE_COLUMNS)
        .where(PayoutLine.publisher == publisher_id)
        .order_by(PayoutLine.id, ascending=False)
        .limit(per_page + 1)
        .offset((page - 1) * per_page)
    )
    rows, more = rows[:per_page], len(rows) > per_page
    returned = await reversals.returned_by_line([r["id"] for r in rows])
    return HistoryPage([_line(r, returned) for r in rows], page, per_page, more)


async def line_of(publisher_id: int, line_id: int) -> HistoryLine:
    """One of the publisher's own lines; anyone else's is NotFound, as if it did not exist."""
    row = (
        await PayoutLine.select(*_LINE_COLUMNS)
        .where(PayoutLine.id == line_id, PayoutLine.publisher == publisher_id)
        .first()
    )
    if row is None:
        raise NotFound(_("You have no such payout."))
    return _line(row, await reversals.returned_by_line([line_id]))


async def carried_of(publisher_id: int, *, limit: int = CARRIED_LIMIT) -> list[CarriedPeriod]:
    """The periods the publisher was carried over, newest first."""
    rows = (
        await PayoutCarryOver.select(
            PayoutCarryOver.currency,
            PayoutCarryOver.balance_minor,
            PayoutCarryOver.minimum_minor,
            PayoutCarryOver.reason,
            PayoutCarryOver.batch.period_start.as_alias("period_start"),
            PayoutCarryOver.batch.period_end.as_alias("period_end"),
        )
        .where(PayoutCarryOver.publisher == publisher_id)
        .order_by(PayoutCarryOver.id, ascending=False)
        .limit(limit)
    )
    return [
        CarriedPeriod(
            period_start=r["period_start"],
            period_end=r["period_end"],
            currency=r["currency"],
            balance_minor=r["balance_minor"],
            minimum_minor=r["minimum_minor"],
            reason=CarryReason(r["reason"]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class PaidToYou:
    """What payouts have brought the publisher in one currency, from the ledger, minor units."""

    currency: str
    paid_minor: int  # every transfer that reached them, less what Stripe reversed of it since
    last_minor: int  # the newest payout still (at least partly) theirs, less what was reversed of it
    last_paid_at: datetime  # when that payout's transfer was made


async def paid_to_you(publisher_id: int) -> dict[str, PaidToYou]:
    """By currency, the payouts that reached the publisher (the ledger's payout.settled transactions of
    their lines) net of the reversals at Stripe (payout.reversed); currencies never paid are left out.
    A payout reversed in full counts for nothing and is not the last payout."""
    line_ids = await PayoutLine.select(PayoutLine.id).where(PayoutLine.publisher == publisher_id).output(as_list=True)
    if not line_ids:
        return {}
    settled = (
        await LedgerEntry.select(
            LedgerEntry.txn.reference_id.as_alias("line"),
            LedgerEntry.txn.effective_at.as_alias("at"),
            LedgerEntry.amount_minor,
            LedgerEntry.currency,
        )
        .where(
            LedgerEntry.txn.kind == "payout.settled",
            LedgerEntry.txn.reference_type == "payout_line",
            LedgerEntry.amount_minor > 0,  # the stripe_clearing side: what the transfer carried
            LedgerEntry.txn.reference_id.is_in(line_ids),
        )
        .order_by(LedgerEntry.txn.effective_at)
        .order_by(LedgerEntry.txn.id)
    )
    returned = await reversals.returned_by_line(line_ids)
    found: dict[str, PaidToYou] = {}
    for row in settled:  # oldest first: the last one kept in a currency is the newest
        kept = row["amount_minor"] - returned.get(row["line"], 0)
        if kept <= 0:
            continue
        before = found.get(row["currency"])
        found[row["currency"]] = PaidToYou(
            currency=row["currency"],
            paid_minor=(before.paid_minor if before else 0) + kept,
            last_minor=kept,
            last_paid_at=row["at"],
        )
    return found
