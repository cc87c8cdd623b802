"""Earning hours, whatever earned them: the steps CPC click hours (server/earnings/cpc.py) and
CPM impression hours (server/earnings/cpm.py) share once an hour is priced. Each of those modules
says how an hour is priced; this one charges it through the ledger, whole or not at all, makes it
wait for the advertiser's funds (pausing the campaign), retries waiting hours in order, releases
earnings when their hold ends, and runs the job. The rules are in cpc.py's docstring.

Every write is one transaction that first claims its work: pricing takes the campaign's pricing
lock (server/earnings/spend.py) and re-reads the watermark (the campaign's latest priced hour);
charging and releasing are conditional updates on the status they leave; the ledger's
idempotency keys (`{reference}:{id}:approved` / `:released`) replay rather than post again."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from piccolo.columns import Column
from piccolo.table import Table

from server.campaigns import service as campaigns
from server.campaigns.tables import Goal
from server.core import clock, db
from server.core.hours import HOUR, hour_of, utc
from server.earnings import spend
from server.ledger import postings
from server.ledger.service import InsufficientFunds

SETTLE = timedelta(minutes=2)  # an hour is priced once it ended at least this long ago
WAITING_FOR_FUNDS = (
    "Waiting: the advertiser's balance cannot cover this hour; the campaign is paused until funds arrive."
)
WAITING_BEHIND = "Waiting behind an earlier hour of this campaign that the advertiser's balance cannot cover yet."


@dataclass
class Outcome:
    priced: int = 0  # rows created (hours × publishers)
    charged: int = 0  # rows charged to advertisers by this run
    waiting: int = 0  # rows left waiting for funds after this run
    released: int = 0  # rows whose hold ended and whose payout became available
    paused_campaigns: list[int] = field(default_factory=list)


@dataclass
class Priced:
    rows: int
    charged: int
    blocked: bool


async def first_goal_terms(payout_model: str, columns: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    """Each campaign with a goal of this payout model: its first such goal's id and amounts (lowest
    position), its advertiser, and the campaign's `columns`."""
    rows = (
        await Goal.select(
            Goal.id.as_alias("goal_id"),
            Goal.campaign.id.as_alias("campaign_id"),
            Goal.advertiser_amount,
            Goal.publisher_amount,
            Goal.campaign.advertiser.as_alias("advertiser_id"),
            *(getattr(Goal.campaign, c).as_alias(c) for c in columns),
        )
        .where(Goal.payout_model == payout_model)
        .order_by(Goal.campaign)
        .order_by(Goal.position)
        .order_by(Goal.id)
    )
    terms: dict[int, dict[str, Any]] = {}
    for row in rows:
        terms.setdefault(row["campaign_id"], row)
    return terms


# What prices one closed hour of a campaign: (terms, hour, now, blocked) -> the rows to insert.
BuildRows = Callable[[dict[str, Any], datetime, datetime, bool], Awaitable[list[Any]]]


class EarningHours:
    """The shared steps over one table of earning hours (ClickEarning or ImpressionEarning: the
    same status values and money columns) and the events it prices (clicks or impressions)."""

    def __init__(
        self,
        table: type[Table],
        statuses: type[StrEnum],
        *,
        reference: str,
        kind: str,
        event_time: Column,
        event_valid: Any,
        log: logging.Logger,
    ) -> None:
        self.table = table
        self.waiting = statuses("waiting").value
        self.approved = statuses("approved").value
        self.released = statuses("released").value
        self.reference = reference  # the ledger reference type: "click_hour", "impression_hour"
        self.kind = kind  # "CPC", "CPM": for the log
        self.event_time = event_time  # Click.clicked_at, Impression.viewed_at
        self.event_valid = event_valid  # the condition that makes an event billable
        self.log = log

    def _col(self, name: str) -> Any:
        return getattr(self.table, name)

    async def claim_and_charge(self, ids: list[int], advertiser_id: int, now: datetime) -> int:
        """Move waiting rows to approved and charge each to the advertiser, all or nothing: raises
        InsufficientFunds, having changed nothing, when the balance cannot cover them all. Rows
        another run charged a moment ago are no longer waiting, so they are not charged again."""
        t, c = self.table, self._col
        async with db.atomic():
            claimed = (
                await t.update({c("status"): self.approved, c("approved_at"): now, c("status_reason"): ""})
                .where(c("id").is_in(ids), c("status") == self.waiting)
                .returning(c("id"), c("publisher"), c("price_minor"), c("payout_minor"), c("currency"))
            )
            for row in claimed:
                await postings.approve_earning(
                    advertiser_id=advertiser_id,
                    publisher_id=row["publisher"],
                    price=row["price_minor"],
                    payout=row["payout_minor"],
                    currency=row["currency"],
                    reference_type=self.reference,
                    reference_id=row["id"],
                    key=f"{self.reference}:{row['id']}:approved",
                )
        return len(claimed)

    async def mark_waiting(self, campaign_id: int, first_hour: datetime) -> None:
        """The first hour the balance cannot cover, and every later waiting hour behind it, say why."""
        t, c = self.table, self._col
        waiting = (c("campaign") == campaign_id) & (c("status") == self.waiting)
        await t.update({c("status_reason"): WAITING_FOR_FUNDS}).where(waiting & (c("hour") == first_hour))
        await t.update({c("status_reason"): WAITING_BEHIND}).where(waiting & (c("hour") > first_hour))

    async def retry_waiting(self, campaign_id: int, advertiser_id: int, now: datetime, outcome: Outcome) -> bool:
        """Charge the campaign's waiting hours, oldest first, each hour whole. True when all are paid;
        False (the rest stay waiting) at the first hour the balance cannot cover."""
        t, c = self.table, self._col
        hours = (
            await t.select(c("hour"))
            .where(c("campaign") == campaign_id, c("status") == self.waiting)
            .distinct()
            .order_by(c("hour"))
            .output(as_list=True)
        )
        for hour in hours:
            try:
                async with db.transaction():
                    await spend.lock(campaign_id)
                    ids = (
                        await t.select(c("id"))
                        .where(c("campaign") == campaign_id, c("hour") == hour, c("status") == self.waiting)
                        .output(as_list=True)
                    )
                    outcome.charged += await self.claim_and_charge(ids, advertiser_id, now) if ids else 0
            except InsufficientFunds:
                async with db.transaction():
                    await self.mark_waiting(campaign_id, utc(hour))
                return False
        return True

    async def last_priced_hour(self, campaign_id: int) -> datetime | None:
        row = (
            await self.table.select(self._col("hour"))
            .where(self._col("campaign") == campaign_id)
            .order_by(self._col("hour"), ascending=False)
            .first()
        )
        return utc(row["hour"]) if row else None

    async def next_hour(self, campaign_id: int, cutoff: datetime) -> datetime | None:
        """The first closed hour after the campaign's last priced one that has a billable event."""
        last = await self.last_priced_hour(campaign_id)
        events = self.event_time._meta.table
        query = events.select(self.event_time).where(
            events.campaign == campaign_id, self.event_valid, self.event_time < cutoff
        )
        if last is not None:
            query = query.where(self.event_time >= last + HOUR)
        row = await query.order_by(self.event_time).first()
        return hour_of(row[self.event_time._meta.name]) if row else None

    async def price_and_charge(
        self, terms: dict[str, Any], hour: datetime, now: datetime, build: BuildRows, *, blocked: bool
    ) -> Priced | None:
        """Price one closed hour of a campaign (`build` makes its rows) and charge it, unless
        `blocked` by an earlier hour that waits for funds. None if another run priced it first."""
        campaign_id = terms["campaign_id"]
        c = self._col
        async with db.transaction():
            await spend.lock(campaign_id)
            last = await self.last_priced_hour(campaign_id)
            if last is not None and last >= hour:
                return None
            rows = await build(terms, hour, now, blocked)
            if not rows:
                # next_hour saw a billable event in this hour: finding none now would loop for ever.
                raise RuntimeError(f"campaign {campaign_id}: no billable event in the hour from {hour.isoformat()}")
            inserted = await self.table.insert(*rows).returning(c("id"), c("status"))
            payable = [r["id"] for r in inserted if r["status"] == self.waiting]
            if not payable or blocked:
                return Priced(len(inserted), 0, blocked)
            try:
                charged = await self.claim_and_charge(payable, terms["advertiser_id"], now)
            except InsufficientFunds:
                # The savepoint undid the hour's every posting and claim: its rows wait for funds.
                await self.mark_waiting(campaign_id, hour)
                return Priced(len(inserted), 0, True)
        return Priced(len(inserted), charged, False)

    async def campaigns_waiting(self) -> dict[int, int]:
        """Campaigns with hours waiting for funds, and their advertisers."""
        rows = (
            await self.table.select(self._col("campaign"), self._col("campaign").advertiser.as_alias("advertiser_id"))
            .where(self._col("status") == self.waiting)
            .distinct()
        )
        return {r["campaign"]: r["advertiser_id"] for r in rows}

    async def release_due(self, now: datetime, outcome: Outcome) -> None:
        """Approved rows whose hold has ended: the publisher's payout becomes available."""
        t, c = self.table, self._col
        due = (
            await t.select(c("id"), c("publisher"), c("payout_minor"), c("currency"))
            .where(c("status") == self.approved, c("hold_until") <= now)
            .order_by(c("id"))
        )
        for row in due:
            async with db.transaction():
                claimed = (
                    await t.update({c("status"): self.released, c("released_at"): now})
                    .where(c("id") == row["id"], c("status") == self.approved)
                    .returning(c("id"))
                )
                if not claimed:
                    continue  # released by another run a moment ago
                if row["payout_minor"]:
                    await postings.release_earning(
                        row["publisher"],
                        row["payout_minor"],
                        row["currency"],
                        reference_type=self.reference,
                        reference_id=row["id"],
                        key=f"{self.reference}:{row['id']}:released",
                    )
            outcome.released += 1

    async def run(
        self, terms_by_campaign: dict[int, dict[str, Any]], build: BuildRows, now: datetime | None = None
    ) -> Outcome:
        """Retry waiting hours, price and charge every newly closed hour, release earnings past their hold."""
        now = utc(now or clock.now())
        cutoff = hour_of(now - SETTLE)
        outcome = Outcome()
        waiting = await self.campaigns_waiting()
        for campaign_id in sorted(set(terms_by_campaign) | set(waiting)):
            terms = terms_by_campaign.get(campaign_id)
            advertiser_id = terms["advertiser_id"] if terms else waiting[campaign_id]
            blocked = campaign_id in waiting and not await self.retry_waiting(campaign_id, advertiser_id, now, outcome)
            while terms is not None and (hour := await self.next_hour(campaign_id, cutoff)) is not None:
                done = await self.price_and_charge(terms, hour, now, build, blocked=blocked)
                if done is not None:  # else another run priced it a moment ago
                    outcome.priced += done.rows
                    outcome.charged += done.charged
                    blocked = done.blocked
            if blocked:
                if await campaigns.pause_for_balance(campaign_id):
                    outcome.paused_campaigns.append(campaign_id)
                self.log.info("campaign %s: %s earnings wait for the advertiser's funds", campaign_id, self.kind)
        await self.release_due(now, outcome)
        outcome.waiting = await self.table.count().where(self._col("status") == self.waiting)
        return outcome
