"""Payout periods: the schedule and minimums, preparing each period's batch, and what a publisher
will be paid next. Finance review is in review.py.

Preparing is set-based and idempotent. When a period's cut-off has passed, one batch per currency
is created (unique per period and currency, so a second run, or a second worker, prepares nothing)
with one line per publisher whose available balance at the cut-off, net of what they owe
(publisher_receivable), reaches their minimum and whose Connect account can receive payouts; every
other publisher with a balance is carried over with the reason. The whole batch, its lines'
reservations (one `postings.reserve_payouts`) and the carry-overs commit together or not at all.

Netting (MONEY.md I5): a line pays available − owed. Its one reservation posting takes the whole
available amount out, settles the receivable, and puts the net in transit:
    publisher_available −available, publisher_receivable +owed, payouts_in_transit +(available − owed)
so the debt is paid off exactly when, and only if, the publisher is paid. Holding or failing the
line reverses that posting exactly: the balance and the debt come back as they were."""

from __future__ import annotations

import calendar
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from piccolo.query.functions.aggregate import Sum

from server.audit import service as audit
from server.conversions import holds
from server.core import clock, db
from server.core.errors import Invalid
from server.core.hours import utc
from server.core.i18n import _, _l
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.service import InsufficientFunds
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerAccount, LedgerEntry
from server.payouts import four_eyes, notices
from server.payouts.account_tables import PayoutAccount
from server.payouts.keys import reserved_key
from server.payouts.tables import (
    BatchStatus,
    CarryReason,
    ChangeKind,
    LineStatus,
    PayoutBatch,
    PayoutCarryOver,
    PayoutLine,
    PayoutMinimum,
    PayoutSettings,
    PublisherPayoutTerms,
    Schedule,
)

log = logging.getLogger("affnet.payouts")

DEFAULT_MINIMUM_MINOR = 5_000  # 50.00 in a two-decimal currency, where finance set no minimum
RETRIES = 3  # a balance that moved between reading and reserving: prepare again
REASONS = {  # lazy: read in the reader's language (str() before JSON)
    CarryReason.below_minimum: _l("below the minimum payout"),
    CarryReason.account_not_ready: _l("the payout account cannot receive payouts yet"),
    CarryReason.on_hold: _l("payouts are on hold"),
    CarryReason.owes_more_than_earned: _l("what is owed (clawbacks after an earlier payout) exceeds the balance"),
}


# --- the schedule ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleTerms:
    schedule: Schedule = Schedule.monthly
    cutoff_weekday: int = 0
    cutoff_day: int = 1
    cutoff_hour: int = 0
    large_change_percent: int = 50


async def schedule_terms() -> ScheduleTerms:
    row = await PayoutSettings.select().order_by(PayoutSettings.id).first()
    if row is None:
        return ScheduleTerms()
    return ScheduleTerms(
        Schedule(row["schedule"]),
        row["cutoff_weekday"],
        row["cutoff_day"],
        row["cutoff_hour"],
        row["large_change_percent"],
    )


async def save_schedule(terms: ScheduleTerms, *, actor_id: int | None) -> None:
    if not (
        0 <= terms.cutoff_weekday <= 6
        and 1 <= terms.cutoff_day <= 28
        and 0 <= terms.cutoff_hour <= 23
        and terms.large_change_percent > 0
    ):
        raise ledger.LedgerError(_("A cut-off needs a weekday 0–6, a day 1–28, an hour 0–23 (UTC)."))
    now = clock.now()
    values = {
        PayoutSettings.schedule: terms.schedule.value,
        PayoutSettings.cutoff_weekday: terms.cutoff_weekday,
        PayoutSettings.cutoff_day: terms.cutoff_day,
        PayoutSettings.cutoff_hour: terms.cutoff_hour,
        PayoutSettings.large_change_percent: terms.large_change_percent,
        PayoutSettings.updated_by: actor_id,
        PayoutSettings.updated_at: now,
    }
    async with db.transaction():
        before = await schedule_terms()
        row = await PayoutSettings.select(PayoutSettings.id).order_by(PayoutSettings.id).first()
        if row is None:
            await PayoutSettings.insert(PayoutSettings(**{c._meta.name: v for c, v in values.items()}))
        else:
            await PayoutSettings.update(values).where(PayoutSettings.id == row["id"])
        if four_eyes.schedule_text(terms) != four_eyes.schedule_text(before):  # what decides a batch changed
            await four_eyes.record(ChangeKind.schedule, four_eyes.schedule_change(before, terms), actor_id=actor_id)
        await audit.record(
            "payout_schedule.saved",
            actor_id=actor_id,
            object_type="payout_settings",
            object_id=None,
            **{k: str(v) for k, v in terms.__dict__.items()},
        )


async def set_minimum(currency: str, minimum_minor: int, *, actor_id: int | None) -> None:
    if type(minimum_minor) is not int or minimum_minor < 1:
        raise ledger.LedgerError(_("A minimum payout is a whole number of minor units above zero."))
    now = clock.now()
    async with db.transaction():
        before = await _minimums(currency)
        updated = (
            await PayoutMinimum.update(
                {
                    PayoutMinimum.minimum_minor: minimum_minor,
                    PayoutMinimum.updated_by: actor_id,
                    PayoutMinimum.updated_at: now,
                }
            )
            .where(PayoutMinimum.currency == currency)
            .returning(PayoutMinimum.id)
        )
        if not updated:
            await PayoutMinimum.insert(
                PayoutMinimum(currency=currency, minimum_minor=minimum_minor, updated_by=actor_id, updated_at=now)
            )
        if minimum_minor != before:
            await four_eyes.record(
                ChangeKind.network_minimum,
                four_eyes.phrase(
                    four_eyes.N_("changed the %(currency)s minimum payout from %(before)s to %(after)s"),
                    currency=currency,
                    before=["money", before, currency],
                    after=["money", minimum_minor, currency],
                ),
                actor_id=actor_id,
                currency=currency,
            )
        await audit.record(
            "payout_minimum.saved",
            actor_id=actor_id,
            object_type="payout_minimum",
            object_id=None,
            currency=currency,
            minimum_minor=minimum_minor,
        )


async def set_publisher_terms(
    publisher_id: int,
    *,
    actor_id: int | None,
    minimum_minor: int | None = None,
    minimum_currency: str = "",
    on_hold: bool = False,
    hold_reason: str = "",
) -> None:
    if on_hold and not hold_reason.strip():
        raise ledger.LedgerError(_("Say why the publisher's payouts are on hold."))
    now = clock.now()
    values = {
        PublisherPayoutTerms.minimum_minor: minimum_minor,
        PublisherPayoutTerms.minimum_currency: minimum_currency if minimum_minor is not None else "",
        PublisherPayoutTerms.on_hold: on_hold,
        PublisherPayoutTerms.hold_reason: hold_reason.strip() if on_hold else "",
        PublisherPayoutTerms.updated_by: actor_id,
        PublisherPayoutTerms.updated_at: now,
    }
    async with db.transaction():
        before = await PublisherPayoutTerms.select().where(PublisherPayoutTerms.publisher == publisher_id).first()
        updated = (
            await PublisherPayoutTerms.update(values)
            .where(PublisherPayoutTerms.publisher == publisher_id)
            .returning(PublisherPayoutTerms.id)
        )
        if not updated:
            await PublisherPayoutTerms.insert(
                PublisherPayoutTerms(publisher=publisher_id, **{c._meta.name: v for c, v in values.items()})
            )
        await four_eyes.record_terms(publisher_id, before, {c._meta.name: v for c, v in values.items()}, actor_id)
        await audit.record(
            "publisher_payout_terms.saved",
            actor_id=actor_id,
            object_type="user",
            object_id=publisher_id,
            minimum_minor=minimum_minor,
            minimum_currency=minimum_currency,
            on_hold=on_hold,
            hold_reason=hold_reason,
        )


def last_cutoff(terms: ScheduleTerms, now: datetime) -> tuple[datetime, datetime]:
    """The period that ended most recently at or before `now`: (start, cut-off), UTC."""
    if terms.schedule is Schedule.weekly:
        day = now.replace(hour=terms.cutoff_hour, minute=0, second=0, microsecond=0)
        day -= timedelta(days=(day.weekday() - terms.cutoff_weekday) % 7)
        if day > now:
            day -= timedelta(days=7)
        return day - timedelta(days=7), day
    end = now.replace(day=terms.cutoff_day, hour=terms.cutoff_hour, minute=0, second=0, microsecond=0)
    if end > now:
        end = _month_before(end)
    return _month_before(end), end


def next_cutoff(terms: ScheduleTerms, now: datetime) -> datetime:
    _, end = last_cutoff(terms, now)
    if terms.schedule is Schedule.weekly:
        return end + timedelta(days=7)
    year, month = (end.year + 1, 1) if end.month == 12 else (end.year, end.month + 1)
    return end.replace(year=year, month=month)


def _month_before(moment: datetime) -> datetime:
    year, month = (moment.year - 1, 12) if moment.month == 1 else (moment.year, moment.month - 1)
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


# --- who is paid ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """A publisher's position in one currency at a cut-off."""

    publisher_id: int
    currency: str
    available_minor: int
    owed_minor: int
    minimum_minor: int
    stripe_account_id: str
    reason: CarryReason | None  # None: paid

    @property
    def net_minor(self) -> int:
        return self.available_minor - self.owed_minor


async def _minimums(currency: str) -> int:
    row = await PayoutMinimum.select(PayoutMinimum.minimum_minor).where(PayoutMinimum.currency == currency).first()
    return row["minimum_minor"] if row else DEFAULT_MINIMUM_MINOR


CHUNK = 500  # owners per IN (...) list
SCAN = 4 * CHUNK  # from this many owners on, one read of the whole table beats the IN lists


async def _by_owner(query: Callable[[], Any], owners: Sequence[int], column: Any) -> list[dict[str, Any]]:
    """The rows of `query()` for these owners: a few IN lists for a few owners, else one read of
    every row the query selects, kept for these owners. A fresh query per chunk: Piccolo's `.where()`
    adds to the query it is called on, so reusing one would AND every chunk's list."""
    name = column._meta.name
    if len(owners) >= SCAN:
        wanted = set(owners)
        return [r for r in await query() if r[name] in wanted]
    rows: list[dict[str, Any]] = []
    for i in range(0, len(owners), CHUNK):
        rows += await query().where(column.is_in(list(owners[i : i + CHUNK])))
    return rows


async def standings(
    currency: str, cutoff: datetime | None, publisher_ids: Sequence[int] | None = None
) -> list[Standing]:
    """Every publisher with an available balance in `currency`, as it stood at `cutoff` (None: now),
    and whether they would be paid. Set-based: a handful of statements however many publishers."""
    query = LedgerAccount.select(LedgerAccount.id, LedgerAccount.owner, LedgerAccount.balance_minor).where(
        LedgerAccount.kind == K.publisher_available.value,
        LedgerAccount.currency == currency,
        LedgerAccount.balance_minor > 0,
    )
    if publisher_ids is not None:
        query = query.where(LedgerAccount.owner.is_in(list(publisher_ids) or [0]))
    balances = {r["owner"]: (r["id"], r["balance_minor"]) for r in await query}
    if cutoff is not None and balances:
        # What moved after the cut-off belongs to the next period (I14): take it back out.
        later = (
            await LedgerEntry.select(LedgerEntry.account, Sum(LedgerEntry.amount_minor, alias="total"))
            .where(
                LedgerEntry.txn.effective_at > cutoff,
                LedgerEntry.account.kind == K.publisher_available.value,
                LedgerEntry.account.currency == currency,
            )
            .group_by(LedgerEntry.account)
        )
        after = {r["account"]: int(r["total"] or 0) for r in later}
        balances = {
            owner: (acct, max(0, min(now, now - after.get(acct, 0)))) for owner, (acct, now) in balances.items()
        }
    owners = sorted(o for o, (_, b) in balances.items() if b > 0)
    if not owners:
        return []
    owed = {
        r["owner"]: -r["balance_minor"]
        for r in await _by_owner(
            lambda: LedgerAccount.select(LedgerAccount.owner, LedgerAccount.balance_minor).where(
                LedgerAccount.kind == K.publisher_receivable.value,
                LedgerAccount.currency == currency,
                LedgerAccount.balance_minor < 0,
            ),
            owners,
            LedgerAccount.owner,
        )
    }
    ready = {
        r["publisher"]: r["stripe_account_id"]
        for r in await _by_owner(
            lambda: PayoutAccount.select(PayoutAccount.publisher, PayoutAccount.stripe_account_id).where(
                PayoutAccount.payouts_enabled.eq(True)
            ),
            owners,
            PayoutAccount.publisher,
        )
    }
    terms = {
        r["publisher"]: r for r in await _by_owner(PublisherPayoutTerms.select, owners, PublisherPayoutTerms.publisher)
    }
    network_minimum = await _minimums(currency)
    held = await holds.held_publishers(owners)  # a publisher-level fraud hold (server/conversions/holds.py)
    found = []
    for owner in owners:
        available = balances[owner][1]
        own = terms.get(owner)
        minimum = network_minimum
        if own and own["minimum_minor"] is not None and own["minimum_currency"] == currency:
            minimum = own["minimum_minor"]
        debt = owed.get(owner, 0)
        if (own and own["on_hold"]) or owner in held:
            reason: CarryReason | None = CarryReason.on_hold
        elif available - debt <= 0:
            reason = CarryReason.owes_more_than_earned
        elif available - debt < minimum:
            reason = CarryReason.below_minimum
        elif owner not in ready:
            reason = CarryReason.account_not_ready
        else:
            reason = None
        found.append(Standing(owner, currency, available, debt, minimum, ready.get(owner, ""), reason))
    return found


# --- preparing ------------------------------------------------------------------------------------


@dataclass
class Made:
    """A currency's batch of the period: made by this run, or found made already."""

    batch_id: int
    currency: str
    new: bool
    lines: int = 0
    carried: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # carried over, per CarryReason


@dataclass
class Prepared:
    """What one run of preparing did, per currency: what finance reads after "Prepare now"."""

    start: datetime | None = None
    end: datetime | None = None  # the cut-off
    off_cycle: bool = False
    batches: list[int] = field(default_factory=list)  # made by this run
    lines: int = 0
    carried: int = 0
    made: list[Made] = field(default_factory=list)  # every currency's batch, new or found made already
    # Currencies with no batch: nobody had an available balance at the cut-off. The count is how
    # many publishers have one now (it arrived after the cut-off and waits for the next period).
    empty: dict[str, int] = field(default_factory=dict)

    @property
    def existing(self) -> list[Made]:
        return [m for m in self.made if not m.new]


OFF_CYCLE_FRESH = timedelta(hours=1)  # an off-cycle form older than this is refused: read the page again


async def prepare_due(now: datetime, *, actor_id: int | None = None) -> Prepared:
    """Prepare the batches of the period whose cut-off passed last, one per currency, once."""
    terms = await schedule_terms()
    start, end = last_cutoff(terms, now)
    return await _prepare_period(start, end, terms, actor_id, now, off_cycle=False)


async def prepare_off_cycle(moment: datetime, *, now: datetime, actor_id: int) -> Prepared:
    """An off-cycle run: batches with their cut-off at `moment` (when finance opened the page, so
    a second click, or a second tab, finds the batches of that moment made and makes no other),
    under the same rules as a period's (minimums, holds, four eyes, the same execution). It pays
    what is available at `moment`; the next regular period pays what arrives after it."""
    if moment > now or now - moment > OFF_CYCLE_FRESH:
        raise Invalid(_("This page is too old to prepare an off-cycle run from: read it again."), field="moment")
    terms = await schedule_terms()
    start = last_cutoff(terms, moment)[1]
    recent = await PayoutBatch.select(PayoutBatch.period_end).order_by(PayoutBatch.id, ascending=False).limit(50)
    ends = [utc(r["period_end"]) for r in recent]  # compared here: SQLite keeps times as text
    start = max([start, *(e for e in ends if e < moment)])
    return await _prepare_period(start, moment, terms, actor_id, now, off_cycle=True)


async def _prepare_period(
    start: datetime, end: datetime, terms: ScheduleTerms, actor_id: int | None, now: datetime, *, off_cycle: bool
) -> Prepared:
    currencies = (
        await LedgerAccount.select(LedgerAccount.currency)
        .where(LedgerAccount.kind == K.publisher_available.value)
        .distinct()
        .output(as_list=True)
    )
    outcome = Prepared(start=start, end=end, off_cycle=off_cycle)
    for currency in sorted(currencies):
        for attempt in range(RETRIES):
            try:
                made = await _prepare_batch(currency, start, end, terms, actor_id, now, off_cycle)
                break
            except InsufficientFunds:
                if attempt == RETRIES - 1:
                    raise
                log.info("a publisher's balance moved while %s %s was prepared; preparing again", currency, end)
        if made is None:
            outcome.empty[currency] = await LedgerAccount.count().where(
                LedgerAccount.kind == K.publisher_available.value,
                LedgerAccount.currency == currency,
                LedgerAccount.balance_minor > 0,
            )
            continue
        outcome.made.append(made)
        if made.new:
            outcome.batches.append(made.batch_id)
            outcome.lines += made.lines
            outcome.carried += made.carried
    return outcome


async def _existing(currency: str, end: datetime) -> Made | None:
    row = (
        await PayoutBatch.select(PayoutBatch.id, PayoutBatch.line_count, PayoutBatch.carried_count)
        .where(PayoutBatch.period_end == end, PayoutBatch.currency == currency)
        .first()
    )
    return Made(row["id"], currency, False, row["line_count"], row["carried_count"]) if row else None


async def _prepare_batch(
    currency: str,
    start: datetime,
    end: datetime,
    terms: ScheduleTerms,
    actor_id: int | None,
    now: datetime,
    off_cycle: bool = False,
) -> Made | None:
    """The currency's batch of the period ending at `end`: made now, or the one made before; None
    when nobody had an available balance at `end` (no batch: there is nothing to pay or carry)."""
    async with db.transaction():
        if (found := await _existing(currency, end)) is not None:
            return found
        everyone = await standings(currency, end)
        if not everyone:
            return None
        try:
            async with db.atomic():
                batch_id = (
                    await PayoutBatch.insert(
                        PayoutBatch(
                            period_start=start,
                            period_end=end,
                            currency=currency,
                            status=BatchStatus.prepared.value,
                            prepared_by=actor_id,
                            prepared_at=now,
                            off_cycle=off_cycle,
                        )
                    ).returning(PayoutBatch.id)
                )[0]["id"]
        except Exception as exc:  # a concurrent run prepared it a moment ago
            if db.is_unique_violation(exc):
                found = None
            else:
                raise
        else:
            found = await _fill_batch(batch_id, currency, end, terms, everyone, actor_id, now, off_cycle)
    return found if found is not None else await _existing(currency, end)


async def _fill_batch(
    batch_id: int,
    currency: str,
    end: datetime,
    terms: ScheduleTerms,
    everyone: list[Standing],
    actor_id: int | None,
    now: datetime,
    off_cycle: bool,
) -> Made:
    """The new batch's lines, their reservations and its carry-overs (in the caller's transaction)."""
    paid = [s for s in everyone if s.reason is None]
    previous = await _last_paid(currency, [s.publisher_id for s in paid])
    lines = []
    for s in paid:
        before = previous.get(s.publisher_id)
        large = before is not None and abs(s.net_minor - before) * 100 > terms.large_change_percent * before
        lines.append(
            (
                batch_id,
                s.publisher_id,
                s.net_minor,
                currency,
                s.available_minor,
                s.owed_minor,
                LineStatus.approved.value,
                1,
                s.stripe_account_id,
                "",
                "",
                "",
                before is None,
                large,
                before,
                now,
                now,
            )
        )
    ids = await db.insert_rows(PayoutLine, LINE_COLUMNS, lines)
    await postings.reserve_payouts(_reservations(currency, paid, ids))
    carried = [
        (batch_id, s.publisher_id, currency, s.net_minor, s.minimum_minor, s.reason.value, now)
        for s in everyone
        if s.reason
    ]
    await db.insert_rows(PayoutCarryOver, CARRY_COLUMNS, carried)
    await PayoutBatch.update(
        {
            PayoutBatch.total_minor: sum(s.net_minor for s in paid),
            PayoutBatch.line_count: len(paid),
            PayoutBatch.carried_count: len(carried),
        }
    ).where(PayoutBatch.id == batch_id)
    await audit.record(
        "payout_batch.prepared",
        actor_id=actor_id,
        object_type="payout_batch",
        object_id=batch_id,
        currency=currency,
        period_end=end.isoformat(),
        lines=len(paid),
        carried=len(carried),
        off_cycle=off_cycle,
    )
    await notices.batch_prepared(batch_id)  # finance: it waits for approval (not to its preparer)
    reasons = Counter(s.reason.value for s in everyone if s.reason)
    return Made(batch_id, currency, True, len(paid), len(carried), dict(sorted(reasons.items())))


LINE_COLUMNS = (
    "batch",
    "publisher",
    "amount_minor",
    "currency",
    "available_minor",
    "netted_minor",
    "status",
    "attempt",
    "stripe_account_id",
    "stripe_transfer_id",
    "error",
    "hold_reason",
    "first_payout",
    "large_change",
    "previous_amount_minor",
    "created_at",
    "updated_at",
)
CARRY_COLUMNS = ("batch", "publisher", "currency", "balance_minor", "minimum_minor", "reason", "created_at")


def _reservations(currency: str, paid: Sequence[Standing], line_ids: Sequence[int]) -> list[postings.Reservation]:
    """One reservation per line (`line_ids` in the order of `paid`), netted against what the publisher owes."""
    return [
        postings.Reservation(s.publisher_id, s.available_minor, s.owed_minor, currency, line_id, reserved_key(line_id))
        for s, line_id in zip(paid, line_ids, strict=True)
    ]


async def _last_paid(currency: str, publisher_ids: Sequence[int]) -> dict[int, int]:
    """Each publisher's last paid amount in `currency` (for the first-payout and large-change flags)."""
    if not publisher_ids:
        return {}
    rows = await PayoutLine.raw(
        "SELECT l.publisher, l.amount_minor FROM payout_line l JOIN (SELECT publisher, MAX(id) AS id "
        "FROM payout_line WHERE currency = {} AND status = {} GROUP BY publisher) m ON m.id = l.id",
        currency,
        LineStatus.paid.value,
    )
    wanted = set(publisher_ids)
    return {r["publisher"]: r["amount_minor"] for r in rows if r["publisher"] in wanted}


# --- the publisher's view -------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    currency: str
    cutoff: datetime
    available_minor: int
    owed_minor: int
    net_minor: int
    minimum_minor: int
    will_be_paid: bool
    reason: str  # why not, in words; "" when it will be paid


async def next_payout_preview(publisher_id: int, *, now: datetime | None = None) -> list[Preview]:
    """What the next cut-off would pay the publisher in each currency if nothing changed, and why not."""
    now = now or clock.now()
    cutoff = next_cutoff(await schedule_terms(), now)
    currencies = (
        await LedgerAccount.select(LedgerAccount.currency)
        .where(LedgerAccount.owner == publisher_id, LedgerAccount.kind == K.publisher_available.value)
        .distinct()
        .output(as_list=True)
    )
    found = []
    for currency in sorted(currencies):
        rows = await standings(currency, None, [publisher_id])
        if rows:
            s = rows[0]
            found.append(
                Preview(
                    currency,
                    cutoff,
                    s.available_minor,
                    s.owed_minor,
                    s.net_minor,
                    s.minimum_minor,
                    s.reason is None,
                    str(REASONS[s.reason]) if s.reason else "",
                )
            )
        else:
            found.append(
                Preview(
                    currency, cutoff, 0, 0, 0, await _minimums(currency), False, _("nothing is available to pay yet")
                )
            )
    return found
