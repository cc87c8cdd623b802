"""Reversal of approved conversions (a refund or chargeback of the sale): the approval's money is
undone through the ledger and the conversion becomes `reversed`, once.

The status change comes first, conditional on `approved`, and the posting follows in the same
transaction: the conditional update both decides who reverses (a second reversal, or a second
click, finds nothing to update and moves nothing) and, on PostgreSQL, locks the row, so the
`released_at` it returns is the one committed last. Whether the publisher's share comes out of
pending or available money depends on exactly that: released means `released_at IS NOT NULL`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from server.accounts.identity import CurrentUser
from server.audit import service as audit
from server.conversions import announce
from server.conversions.tables import Conversion, ConversionStatus
from server.core import db
from server.core.errors import Invalid, NotFound
from server.core.i18n import _
from server.ledger import postings
from server.ledger.service import InsufficientFunds
from server.webhooks import events

MAX_REVERSALS = 500
REASON_MAX = 500


@dataclass
class Reversal:
    """What one request to reverse did, by conversion id."""

    reversed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # not approved (pending, rejected or already reversed)
    failed: list[int] = field(default_factory=list)  # the ledger refused it this time: nothing changed

    def as_dict(self) -> dict[str, list[int]]:
        return asdict(self)


def check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise Invalid(_("Give a reason for reversing: the publisher sees it."), field="reason")
    if len(reason) > REASON_MAX:
        raise Invalid(_("The reason is limited to %(max)s characters.", max=REASON_MAX), field="reason")
    return reason


async def reverse_one(
    conversion_id: int, reason: str, *, advertiser_id: int, actor_id: int, source: str = "review"
) -> bool | None:
    """Reverse one approved conversion the caller has checked is of `advertiser_id`'s campaigns.

    True if this call reversed it; None if it was not approved (never approved, or reversed
    already: nothing changes); False if the ledger refused the posting (a concurrent payout took
    the publisher's available money between the read and the write): nothing changed, try again."""
    try:
        async with db.transaction():
            rows = (
                await Conversion.update(
                    {Conversion.status: ConversionStatus.reversed.value, Conversion.status_reason: reason}
                )
                .where(
                    Conversion.id == conversion_id,
                    Conversion.status == ConversionStatus.approved.value,
                )
                .returning(
                    Conversion.id,
                    Conversion.publisher,
                    Conversion.currency,
                    Conversion.advertiser_amount_minor,
                    Conversion.publisher_amount_minor,
                    Conversion.released_at,
                )
            )
            if not rows:
                return None
            row = rows[0]
            released = row["released_at"] is not None
            posted = await postings.reverse_earning(
                advertiser_id=advertiser_id,
                publisher_id=row["publisher"],
                price=row["advertiser_amount_minor"],
                payout=row["publisher_amount_minor"],
                currency=row["currency"],
                released=released,
                reference_type="conversion",
                reference_id=conversion_id,
                key=f"conversion:{conversion_id}:reversed",
            )
            await audit.record(
                "conversion.reversed",
                actor_id=actor_id,
                object_type="conversion",
                object_id=conversion_id,
                reason=reason,
                released=released,
                source=source,
                refund=row["advertiser_amount_minor"],
                payout=row["publisher_amount_minor"],
                currency=row["currency"],
                ledger_txn=posted.txn_id,
                replayed=posted.replayed,
            )
            await announce.changed(
                events.CONVERSION_REVERSED,
                [{"id": conversion_id, "publisher": row["publisher"], "advertiser_id": advertiser_id}],
            )
    except InsufficientFunds:
        return False
    return True


async def _owned_ids(advertiser: CurrentUser, ids: list[int]) -> None:
    found = await Conversion.count().where(Conversion.id.is_in(ids), Conversion.campaign.advertiser == advertiser.id)
    if found != len(ids):
        raise NotFound(_("There is no such conversion."))  # someone else's looks the same as none


async def reverse(advertiser: CurrentUser, conversion_ids: list[int], reason: str) -> Reversal:
    """Reverse the advertiser's approved conversions. Every id is checked to be theirs before
    anything changes; those not approved are skipped, so reversing twice changes nothing."""
    ids = sorted(set(conversion_ids))
    if not ids:
        raise Invalid(_("Tick at least one conversion."), field="conversion_id")
    if len(ids) > MAX_REVERSALS:
        raise Invalid(_("Reverse at most %(max)s conversions at a time.", max=MAX_REVERSALS), field="conversion_id")
    reason = check_reason(reason)
    await _owned_ids(advertiser, ids)
    result = Reversal()
    for conversion_id in ids:
        done = await reverse_one(conversion_id, reason, advertiser_id=advertiser.id, actor_id=advertiser.id)
        (result.reversed if done else result.failed if done is False else result.skipped).append(conversion_id)
    return result
