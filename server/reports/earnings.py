"""What a publisher has earned: their conversions, their CPC click and CPM impression earnings
and their money, pending vs available, per currency. Read-only queries behind the dashboard,
/publisher/conversions and GET /api/v1/publisher/earnings.

A publisher sees their own payout only: never the advertiser's price nor the network's margin.

Pending = payouts not yet charged to the advertiser (pending conversions, and CPC and CPM hours
waiting for the advertiser's funds) + the ledger's publisher_pending (charged, in their hold).
Available = the ledger's publisher_available (payable at the next payout). Receivable = what
the publisher owes after a clawback of money already paid out (the ledger's
publisher_receivable, shown as a positive amount), netted against the next payout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from piccolo.query.functions.aggregate import Count, Sum

from server.conversions.tables import Conversion, ConversionStatus
from server.core import db, i18n
from server.core.errors import Invalid
from server.core.hours import utc
from server.core.i18n import _
from server.earnings.tables import ClickEarning, ClickEarningStatus, ImpressionEarning, ImpressionEarningStatus
from server.earnings.words import unpaid_words
from server.ledger import service as ledger
from server.ledger.tables import AccountKind, LedgerAccount
from server.reports import traffic

LIST_LIMIT = 500
HOURS_SHOWN = 48  # impression hours on the dashboard, newest first
STATUSES = tuple(s.value for s in ConversionStatus)


@dataclass(frozen=True)
class Money:
    """A publisher's money in one currency, minor units."""

    currency: str
    pending_uncharged_minor: int  # payouts of pending conversions and waiting CPC and CPM hours
    pending_charged_minor: int  # the ledger's publisher_pending: charged, in the hold
    available_minor: int
    receivable_minor: int  # owed by the publisher (a positive amount), netted at the next payout

    @property
    def pending_minor(self) -> int:
        return self.pending_uncharged_minor + self.pending_charged_minor


class ClickEarnings(msgspec.Struct):
    """CPC earnings of one campaign, since it began."""

    campaign_id: int
    campaign_name: str
    currency: str
    valid_clicks: int
    paid_clicks: int
    over_cap_clicks: int
    over_budget_clicks: int
    waiting_minor: int  # waiting for the advertiser's funds
    pending_minor: int  # charged, in its hold
    available_minor: int


class ImpressionHour(msgspec.Struct):
    """CPM earnings of one campaign in one UTC hour."""

    hour: datetime
    campaign_id: int
    campaign_name: str
    slots: list[str]  # names of the slots that showed it
    valid_impressions: int
    paid_impressions: int
    payout_minor: int  # what the publisher earns
    currency: str
    status: str  # unpaid, waiting (for the advertiser's funds), approved (in its hold) or released (available)
    status_text: str


@dataclass(frozen=True, slots=True)
class PublisherConversion:
    """One of the publisher's conversions with their payout (nothing the advertiser pays)."""

    id: int
    campaign_id: int
    campaign_name: str
    goal_name: str
    currency: str
    payout_minor: int
    status: str
    status_reason: str
    converted_at: datetime
    hold_until: datetime
    source: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PublisherConversion:
        return cls(**row)


def parse_status(params: Mapping[str, Any]) -> str | None:
    raw = params.get("status", "")
    status = raw.strip() if isinstance(raw, str) else ""
    if status and status not in STATUSES:
        raise Invalid(_("Status must be one of %(values)s.", values=", ".join(STATUSES)), field="status")
    return status or None


async def conversion_counts(publisher_id: int) -> dict[str, int]:
    """The publisher's conversions by status (every status present, zero included)."""
    rows = (
        await Conversion.select(Conversion.status, Count(Conversion.id, alias="n"))
        .where(Conversion.publisher == publisher_id)
        .group_by(Conversion.status)
    )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({r["status"]: r["n"] for r in rows})
    return counts


async def conversions_of(
    publisher_id: int, *, status: str | None = None, limit: int = LIST_LIMIT
) -> list[PublisherConversion]:
    """The publisher's own conversions, newest first, with their payout (and nothing the advertiser pays)."""
    query = Conversion.select(
        Conversion.id,
        Conversion.campaign.id.as_alias("campaign_id"),
        Conversion.campaign.name.as_alias("campaign_name"),
        Conversion.goal.name.as_alias("goal_name"),
        Conversion.currency,
        Conversion.publisher_amount_minor.as_alias("payout_minor"),
        Conversion.status,
        Conversion.status_reason,
        Conversion.converted_at,
        Conversion.hold_until,
        Conversion.source,
    ).where(Conversion.publisher == publisher_id)
    if status:
        query = query.where(Conversion.status == status)
    rows = (
        await query.order_by(Conversion.converted_at, ascending=False)
        .order_by(Conversion.id, ascending=False)
        .limit(limit)
    )
    return [PublisherConversion.from_row(row) for row in rows]


async def money_of(publisher_id: int) -> list[Money]:
    """Pending, available and receivable per currency the publisher has ever earned in."""
    uncharged: dict[str, int] = {}
    for row in (
        await Conversion.select(Conversion.currency, Sum(Conversion.publisher_amount_minor, alias="total"))
        .where(Conversion.publisher == publisher_id, Conversion.status == ConversionStatus.pending.value)
        .group_by(Conversion.currency)
    ):
        uncharged[row["currency"]] = uncharged.get(row["currency"], 0) + db.whole(row["total"])
    for table, waiting in (
        (ClickEarning, ClickEarningStatus.waiting.value),
        (ImpressionEarning, ImpressionEarningStatus.waiting.value),
    ):
        for row in (
            await table.select(table.currency, Sum(table.payout_minor, alias="total"))
            .where(table.publisher == publisher_id, table.status == waiting)
            .group_by(table.currency)
        ):
            uncharged[row["currency"]] = uncharged.get(row["currency"], 0) + db.whole(row["total"])
    accounts = (
        await LedgerAccount.select(LedgerAccount.currency)
        .where(LedgerAccount.owner == publisher_id)
        .distinct()
        .output(as_list=True)
    )
    found = []
    for currency in sorted(set(uncharged) | set(accounts)):
        found.append(
            Money(
                currency=currency,
                pending_uncharged_minor=uncharged.get(currency, 0),
                pending_charged_minor=await ledger.balance(AccountKind.publisher_pending, currency, publisher_id),
                available_minor=await ledger.balance(AccountKind.publisher_available, currency, publisher_id),
                receivable_minor=-await ledger.balance(AccountKind.publisher_receivable, currency, publisher_id),
            )
        )
    return found


async def click_earnings_of(publisher_id: int, *, since: datetime | None = None) -> list[ClickEarnings]:
    """CPC click earnings (since a moment, or ever) by campaign and currency: valid and paid clicks,
    clicks not paid (over a cap or the budget), and the payout by where it stands."""
    query = ClickEarning.select(
        ClickEarning.campaign.id.as_alias("campaign_id"),
        ClickEarning.campaign.name.as_alias("campaign_name"),
        ClickEarning.currency,
        ClickEarning.status,
        Sum(ClickEarning.valid_clicks, alias="valid"),
        Sum(ClickEarning.paid_clicks, alias="paid"),
        Sum(ClickEarning.over_cap_clicks, alias="over_cap"),
        Sum(ClickEarning.over_budget_clicks, alias="over_budget"),
        Sum(ClickEarning.payout_minor, alias="payout"),
    ).where(ClickEarning.publisher == publisher_id)
    if since is not None:
        query = query.where(ClickEarning.hour >= since)
    rows = await query.group_by(
        ClickEarning.campaign.id, ClickEarning.campaign.name, ClickEarning.currency, ClickEarning.status
    )
    table: dict[tuple[int, str], ClickEarnings] = {}
    for r in rows:
        entry = table.setdefault(
            (r["campaign_id"], r["currency"]),
            ClickEarnings(r["campaign_id"], r["campaign_name"], r["currency"], 0, 0, 0, 0, 0, 0, 0),
        )
        entry.valid_clicks += db.whole(r["valid"])
        entry.paid_clicks += db.whole(r["paid"])
        entry.over_cap_clicks += db.whole(r["over_cap"])
        entry.over_budget_clicks += db.whole(r["over_budget"])
        payout = db.whole(r["payout"])
        if r["status"] == ClickEarningStatus.waiting.value:
            entry.waiting_minor += payout
        elif r["status"] == ClickEarningStatus.approved.value:
            entry.pending_minor += payout
        elif r["status"] == ClickEarningStatus.released.value:
            entry.available_minor += payout
    return sorted(table.values(), key=lambda e: (e.campaign_name.lower(), e.campaign_id, e.currency))


def _impression_status(row: dict[str, Any]) -> str:
    """Where an impression hour's earning stands, in the publisher's words."""
    status = row["status"]
    if status == ImpressionEarningStatus.waiting.value:
        return _("Waiting for the advertiser's funds")
    if status == ImpressionEarningStatus.approved.value:
        until = i18n.datetime_text(utc(row["hold_until"]))
        return _("Pending: in its hold until %(when)s (%(zone)s)", when=until, zone=i18n.zone_name())
    if status == ImpressionEarningStatus.released.value:
        return _("Available")
    if row["paid_impressions"]:
        return _("Less than a cent so far: carried into a later hour")
    if row["unpaid_reason"]:
        return _("Not paid: %(reason)s", reason=unpaid_words(row["unpaid_reason"]))
    return _("Not paid")


async def impression_earnings_of(publisher_id: int, *, limit: int = HOURS_SHOWN) -> list[ImpressionHour]:
    """The publisher's CPM impression hours, newest first: hour, campaign, the slots that showed it
    (from the rollups, so also once retention dropped the views), valid and paid impressions, their earning and where
    it stands. Their payout only, never the advertiser's price."""
    rows = (
        await ImpressionEarning.select(
            ImpressionEarning.id,
            ImpressionEarning.hour,
            ImpressionEarning.campaign.id.as_alias("campaign_id"),
            ImpressionEarning.campaign.name.as_alias("campaign_name"),
            ImpressionEarning.valid_impressions,
            ImpressionEarning.paid_impressions,
            ImpressionEarning.payout_minor,
            ImpressionEarning.currency,
            ImpressionEarning.status,
            ImpressionEarning.unpaid_reason,
            ImpressionEarning.hold_until,
        )
        .where(ImpressionEarning.publisher == publisher_id)
        .order_by(ImpressionEarning.hour, ascending=False)
        .order_by(ImpressionEarning.id, ascending=False)
        .limit(limit)
    )
    slots: dict[int, dict[datetime, list[str]]] = {}
    for campaign_id in {r["campaign_id"] for r in rows}:
        hours = [utc(r["hour"]) for r in rows if r["campaign_id"] == campaign_id]
        slots[campaign_id] = await traffic.view_slots(
            publisher_id, campaign_id, min(hours), max(hours) + timedelta(hours=1)
        )
    return [
        ImpressionHour(
            hour=utc(r["hour"]),
            campaign_id=r["campaign_id"],
            campaign_name=r["campaign_name"],
            slots=slots[r["campaign_id"]].get(utc(r["hour"]), []),
            valid_impressions=r["valid_impressions"],
            paid_impressions=r["paid_impressions"],
            payout_minor=r["payout_minor"],
            currency=r["currency"],
            status=r["status"],
            status_text=_impression_status(r),
        )
        for r in rows
    ]
