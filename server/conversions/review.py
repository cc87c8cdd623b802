"""Advertisers review their own conversions: list them with filters, approve (charged through the
ledger exactly as reconciliation does, even before the hold ends) or reject pending ones, and
reverse approved ones (server/conversions/reversal.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.records import PublicProfile
from server.accounts.tables import Publisher
from server.audit import service as audit
from server.conversions import announce, approval, holds, reversal
from server.conversions.tables import Conversion, ConversionSource, ConversionStatus
from server.core import clock, db
from server.core.errors import Invalid, NotFound
from server.core.hours import utc
from server.core.i18n import _
from server.webhooks import events

LIST_LIMIT = 500
MAX_DECISIONS = 500
REASON_MAX = 500
ACTIONS = ("approve", "reject", "reverse")
Action = Literal["approve", "reject", "reverse"]


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    campaign_id: int | None = None
    publisher: str | None = None  # part of the publisher's public name or site
    date_from: date | None = None
    date_to: date | None = None
    source: str | None = None  # how it was reported: the pixel's can be fired by anyone with a click id

    def as_form(self) -> dict[str, str]:
        """The filters as the form fields (and query parameters) that carry them."""
        return {
            "status": self.status or "",
            "campaign": "" if self.campaign_id is None else str(self.campaign_id),
            "publisher": self.publisher or "",
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "source": self.source or "",
        }


def _date(raw: str, field: str, label: str) -> date | None:
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        value = None
    if value is None:
        raise Invalid(_("%(label)s must be a date written YYYY-MM-DD, such as 2026-03-31.", label=label), field=field)
    return value


def parse_filters(params: Mapping[str, Any]) -> Filters:
    """Query parameters (status, campaign, publisher, from, to) as Filters; Invalid names the bad one."""

    def get(name: str) -> str:
        value = params.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    status = get("status")
    if status and status not in {s.value for s in ConversionStatus}:
        raise Invalid(
            _("Status must be one of: %(values)s.", values=", ".join(s.value for s in ConversionStatus)), field="status"
        )
    campaign = get("campaign")
    if campaign and not (campaign.isascii() and campaign.isdigit() and len(campaign) < 19):
        raise Invalid(_("Pick a campaign from the list."), field="campaign")
    date_from, date_to = _date(get("from"), "from", _("From")), _date(get("to"), "to", _("To"))
    if date_from and date_to and date_from > date_to:
        raise Invalid(_("“From” must not be after “To”."), field="from")
    publisher = get("publisher")
    if len(publisher) > 500:
        raise Invalid(_("That publisher name is too long."), field="publisher")
    source = get("source")
    if source and source not in {s.value for s in ConversionSource}:
        raise Invalid(
            _("Reported by must be one of: %(values)s.", values=", ".join(s.value for s in ConversionSource)),
            field="source",
        )
    return Filters(
        status=status or None,
        campaign_id=int(campaign) if campaign else None,
        publisher=publisher or None,
        date_from=date_from,
        date_to=date_to,
        source=source or None,
    )


@dataclass(frozen=True, slots=True)
class ConversionListing:
    """One of the advertiser's conversions as their review page lists it: what they pay, what the
    publisher earns, and where it stands."""

    id: int
    txn_id: str
    currency: str
    status: str
    status_reason: str
    advertiser_amount_minor: int
    publisher_amount_minor: int
    sale_amount_minor: int | None
    converted_at: datetime
    hold_until: datetime
    approved_at: datetime | None
    source: str
    campaign_id: int
    campaign_name: str
    goal_name: str
    publisher_id: int
    publisher_name: str  # their public profile: an advertiser never sees a publisher's e-mail address
    publisher_site: str

    @classmethod
    def from_row(cls, row: dict[str, Any], publisher: PublicProfile) -> ConversionListing:
        return cls(**row, publisher_name=publisher.name, publisher_site=publisher.site)


async def list_conversions(
    advertiser: CurrentUser,
    *,
    status: str | None = None,
    campaign_id: int | None = None,
    publisher: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    source: str | None = None,
    limit: int = LIST_LIMIT,
    txn_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    conversion_id: int | None = None,
    before_id: int | None = None,
    by_id: bool = False,
) -> list[ConversionListing]:
    """The advertiser's own conversions, newest first, their publishers named by their public
    profile. Dates are whole UTC days, both ends included; `publisher` is part of the publisher's
    public name or site (never matched against their e-mail address, which the advertiser must
    not learn, not even by guessing). The API's lists (server/http/advertiser_api) page by id:
    `by_id` orders by id alone, `before_id` continues below one; `since` (included) and `until`
    (excluded) are instants of conversion."""
    query = Conversion.select(
        Conversion.id,
        Conversion.txn_id,
        Conversion.currency,
        Conversion.status,
        Conversion.status_reason,
        Conversion.advertiser_amount_minor,
        Conversion.publisher_amount_minor,
        Conversion.sale_amount_minor,
        Conversion.converted_at,
        Conversion.hold_until,
        Conversion.approved_at,
        Conversion.source,
        Conversion.campaign.as_alias("campaign_id"),
        Conversion.campaign.name.as_alias("campaign_name"),
        Conversion.goal.name.as_alias("goal_name"),
        Conversion.publisher.as_alias("publisher_id"),
    ).where(Conversion.campaign.advertiser == advertiser.id)
    if status:
        query = query.where(Conversion.status == status)
    if source:
        query = query.where(Conversion.source == source)
    if campaign_id is not None:
        query = query.where(Conversion.campaign == campaign_id)
    if publisher:
        pattern = f"%{publisher}%"
        query = query.where(
            Conversion.publisher.is_in(
                Publisher.select(Publisher.user).where(
                    Publisher.display_name.ilike(pattern) | Publisher.blog_url.ilike(pattern)
                )
            )
        )
    if date_from:
        query = query.where(Conversion.converted_at >= datetime.combine(date_from, time(), UTC))
    if date_to:
        query = query.where(Conversion.converted_at < datetime.combine(date_to + timedelta(days=1), time(), UTC))
    if txn_id is not None:
        query = query.where(Conversion.txn_id == txn_id)
    if since is not None:
        query = query.where(Conversion.converted_at >= since)
    if until is not None:
        query = query.where(Conversion.converted_at < until)
    if conversion_id is not None:
        query = query.where(Conversion.id == conversion_id)
    if before_id is not None:
        query = query.where(Conversion.id < before_id)
    if not by_id:
        query = query.order_by(Conversion.converted_at, ascending=False)
    rows = await query.order_by(Conversion.id, ascending=False).limit(limit)
    profiles = await accounts.public_profiles({r["publisher_id"] for r in rows})
    return [ConversionListing.from_row(row, profiles[row["publisher_id"]]) for row in rows]


@dataclass
class Decision:
    """What one review did, by conversion id."""

    action: str = "approve"
    approved: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    reversed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # not in the status the action applies to: nothing changed
    unfunded: list[int] = field(default_factory=list)  # the advertiser's balance could not cover it: still pending
    failed: list[int] = field(default_factory=list)  # the ledger refused a reversal this time: nothing changed
    held: list[int] = field(default_factory=list)  # held by a fraud rule: release it in the review queue first

    def as_dict(self) -> dict[str, list[int]]:
        return asdict(self)


async def _owned(advertiser: CurrentUser, ids: list[int]) -> list[dict[str, Any]]:
    """The rows approval.approve expects, for every id, or NotFound if any is not the advertiser's."""
    rows = (
        await Conversion.select(
            Conversion.id,
            Conversion.campaign,
            Conversion.publisher,
            Conversion.currency,
            Conversion.status,
            Conversion.advertiser_amount_minor,
            Conversion.publisher_amount_minor,
            Conversion.hold_until,
            Conversion.held,
            Conversion.campaign.advertiser.as_alias("advertiser_id"),
        )
        .where(Conversion.id.is_in(ids), Conversion.campaign.advertiser == advertiser.id)
        .order_by(Conversion.id)
    )
    if len(rows) != len(ids):
        raise NotFound(_("There is no such conversion."))  # someone else's looks the same as none
    return rows


async def owned_statuses(advertiser: CurrentUser, ids: list[int]) -> dict[int, str]:
    """The status of each of these conversions that is the advertiser's (others are left out)."""
    rows = await Conversion.select(Conversion.id, Conversion.status).where(
        Conversion.id.is_in(sorted(set(ids)) or [0]), Conversion.campaign.advertiser == advertiser.id
    )
    return {r["id"]: r["status"] for r in rows}


async def decide(
    advertiser: CurrentUser, conversion_ids: list[int], action: Action, reason: str = "", *, now: datetime | None = None
) -> Decision:
    """Approve or reject the advertiser's pending conversions, or reverse approved ones. Every id is
    checked to be theirs before anything changes; those not in the status the action applies to are
    skipped. Approval charges through the ledger with the same idempotency key as reconciliation,
    and reversal refunds with its own, so nothing is ever charged or refunded twice."""
    if action not in ACTIONS:
        raise Invalid(_("Choose approve, reject or reverse."), field="action")
    ids = sorted(set(conversion_ids))
    if not ids:
        raise Invalid(_("Tick at least one conversion."), field="conversion_id")
    if len(ids) > MAX_DECISIONS:
        raise Invalid(_("Decide on at most %(max)s conversions at a time.", max=MAX_DECISIONS), field="conversion_id")
    reason = (reason or "").strip()
    if action == "reject" and not reason:
        raise Invalid(_("Give a reason for rejecting: the publisher sees it."), field="reason")
    if action == "reverse":
        reason = reversal.check_reason(reason)
    if len(reason) > REASON_MAX:
        raise Invalid(_("The reason is limited to %(max)s characters.", max=REASON_MAX), field="reason")
    rows = await _owned(advertiser, ids)
    now = now or clock.now()
    result = Decision(action=action)
    held_publishers = await holds.held_publishers([r["publisher"] for r in rows]) if action == "approve" else set()
    for row in rows:
        if action == "reverse":
            await reverse_row(advertiser, row, reason, result)
        elif row["status"] != ConversionStatus.pending.value:
            result.skipped.append(row["id"])
        elif action == "approve" and (row["held"] or row["publisher"] in held_publishers):
            result.held.append(row["id"])  # never approved while held (server/conversions/flags.py)
        elif action == "approve":
            await approve_row(advertiser, row, reason, now, result)
        else:
            await reject_row(advertiser, row, reason, result)
    return result


async def approve_row(
    advertiser: CurrentUser, row: dict[str, Any], reason: str, now: datetime, result: Decision
) -> None:
    done = await approval.skip_if_raced(approval.approve, row, now)
    if done is False:
        result.unfunded.append(row["id"])
        await audit.record(
            "conversion.approve_unfunded",
            actor_id=advertiser.id,
            object_type="conversion",
            object_id=row["id"],
            price=row["advertiser_amount_minor"],
            currency=row["currency"],
        )
    elif done:
        result.approved.append(row["id"])
        await audit.record(
            "conversion.approved",
            actor_id=advertiser.id,
            object_type="conversion",
            object_id=row["id"],
            reason=reason,
            early=utc(row["hold_until"]) > now,
            price=row["advertiser_amount_minor"],
            currency=row["currency"],
        )
    else:  # reconciliation or another click approved it a moment ago
        result.skipped.append(row["id"])


async def reject_row(advertiser: CurrentUser, row: dict[str, Any], reason: str, result: Decision) -> None:
    async with db.transaction():
        changed = (
            await Conversion.update(
                {Conversion.status: ConversionStatus.rejected.value, Conversion.status_reason: reason}
            )
            .where(Conversion.id == row["id"], Conversion.status == ConversionStatus.pending.value)
            .returning(Conversion.id)
        )
        if changed:
            await audit.record(
                "conversion.rejected",
                actor_id=advertiser.id,
                object_type="conversion",
                object_id=row["id"],
                reason=reason,
            )
            await announce.changed(events.CONVERSION_REJECTED, [row])
    (result.rejected if changed else result.skipped).append(row["id"])


async def reverse_row(advertiser: CurrentUser, row: dict[str, Any], reason: str, result: Decision) -> None:
    if row["status"] != ConversionStatus.approved.value:
        result.skipped.append(row["id"])
        return
    done = await reversal.reverse_one(row["id"], reason, advertiser_id=advertiser.id, actor_id=advertiser.id)
    (result.reversed if done else result.failed if done is False else result.skipped).append(row["id"])


def summary(decision: Decision) -> str:
    """One sentence for the page: what happened, and what did not (each clause whole, in the
    reader's language)."""
    parts = []
    if decision.approved:
        parts.append(_("Approved %(num)s (charged to your balance)", num=len(decision.approved)))
    if decision.rejected:
        parts.append(_("Rejected %(num)s", num=len(decision.rejected)))
    if decision.reversed:
        parts.append(_("Reversed %(num)s (refunded to your balance)", num=len(decision.reversed)))
    if decision.unfunded:
        parts.append(
            _(
                "%(num)s still pending: your balance cannot cover them (%(ids)s); add funds and try again",
                num=len(decision.unfunded),
                ids=_ids(decision.unfunded),
            )
        )
    if decision.failed:
        parts.append(
            _(
                "%(num)s could not be reversed just now (%(ids)s); try again",
                num=len(decision.failed),
                ids=_ids(decision.failed),
            )
        )
    if decision.held:
        parts.append(
            _(
                "%(num)s not approved: held by a fraud rule (%(ids)s); release them in the review queue first",
                num=len(decision.held),
                ids=_ids(decision.held),
            )
        )
    if decision.skipped:
        n, ids = len(decision.skipped), _ids(decision.skipped)
        if decision.action == "reverse":
            parts.append(_("%(num)s skipped, only approved conversions can be reversed (%(ids)s)", num=n, ids=ids))
        else:
            parts.append(_("%(num)s skipped, already decided (%(ids)s)", num=n, ids=ids))
    return "; ".join(parts) + "." if parts else _("Nothing changed.")


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in ids)
