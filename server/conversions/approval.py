"""Reconciliation: pending conversions whose hold has ended are approved through the ledger, and
earnings approved early become available when their hold ends. Run by the worker (workers/jobs).

Set-based: each batch of conversions is locked, priced against its advertisers' balances, posted
as one `postings.approve_earnings` call (one ledger transaction per conversion, so each earning still
traces to its conversion) and marked with one UPDATE. A conversion approved after its hold goes
straight to the publisher's available balance; one the advertiser approves early goes to
pending, and a later run releases it.

A conversion held by a fraud rule (conversion.held, server/conversions/rules.py), or whose publisher
is held (publisher_hold, server/conversions/holds.py), is skipped by every path here, the job's and
the advertiser's early approval alike, until a reviewer releases it. Every conversion about to be
charged is first screened by the self_conversion rule in the same transaction
(server/conversions/selfcheck.py: the click row it needs may be stored after the conversion), so
none is paid before that rule ran.

Idempotent at the database: the batch's rows are locked (FOR UPDATE SKIP LOCKED on PostgreSQL, so
a second worker takes other rows; SQLite has one writer at a time), every posting carries a key
derived from the conversion id (`conversion:{id}:approved`, `…:released`), and every status
change is conditional on the status it leaves. A second run, or a second worker at the same
moment, changes nothing twice.

One report cannot pause a campaign. A RevShare conversion is priced by the sale amount its
report carries (bounded by the goal's maximum sale), so when a campaign comes up short the
campaign's most expensive RevShare conversion of the batch is set aside: if the rest then fit,
they are charged, it waits alone (charged by a later run once the balance covers it, or
rejected by the advertiser) and the campaign keeps running. The campaign pauses only when it is
short even without it. Likewise when a batch would take an advertiser's balance below their
auto-pause threshold (server/billing: below it every campaign of theirs pauses) and setting
their most expensive RevShare conversion of the batch aside keeps it above: it waits alone.
Flat-priced conversions (CPL, CPA) cost what the advertiser set, whoever
reports them: a campaign that cannot pay its own price pauses as before."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.billing import service as billing
from server.campaigns import service as campaigns
from server.campaigns.tables import PayoutModel
from server.conversions import announce, selfcheck
from server.conversions.holds import NOT_HELD_PUBLISHER
from server.conversions.tables import Conversion, ConversionStatus
from server.core import clock, db
from server.core.hours import utc
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.service import InsufficientFunds
from server.ledger.tables import AccountKind as K
from server.webhooks import events

log = logging.getLogger("affnet.conversions")

BATCH = {"postgres": 5_000, "sqlite": 1_000}
LOW_BALANCE = "waiting: the advertiser's balance cannot cover this conversion (the campaign is paused)"
WAITING_ALONE = (
    "waiting: its price is more than the advertiser's balance can cover (or would take it below their "
    "auto-pause threshold); it is charged once the balance covers it, unless the advertiser rejects it "
    "(the campaign keeps running)"
)
LANES = 2  # PostgreSQL: batches under way at once in one run (see _approve_due)
RETRIES = 5  # a concurrent spend may take the balance we priced against: price again, this many times

_COLUMNS = (
    "c.id, c.campaign, c.publisher, c.currency, c.advertiser_amount_minor, c.publisher_amount_minor, "
    "c.hold_until, c.status_reason, k.advertiser AS advertiser_id, g.payout_model"
)


@dataclass
class Outcome:
    approved: int = 0
    released: int = 0
    unfunded: int = 0
    paused_campaigns: list[int] = field(default_factory=list)
    self_held: int = 0  # conversions the self_conversion rule held in this run (server/conversions/selfcheck.py)


@dataclass
class Charged:
    approved: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)  # approved after their hold: available at once
    unfunded_campaigns: set[int] = field(default_factory=set)
    unfunded: list[int] = field(default_factory=list)
    set_aside: list[int] = field(default_factory=list)  # each waits alone: see the module's docstring


def batch_size() -> int:
    """Conversions approved per transaction on this engine."""
    return BATCH["sqlite" if db.is_sqlite() else "postgres"]


async def due(now: datetime, *, at_least: int = 1) -> bool:
    """Whether at least `at_least` pending conversions are past their hold (the worker invites help
    for a large reconcile)."""
    rows = await Conversion.raw(
        "SELECT 1 FROM conversion c WHERE c.status = 'pending' AND NOT c.held AND c.hold_until <= {} AND "  # noqa: S608
        + NOT_HELD_PUBLISHER
        + " LIMIT {}",
        now,
        int(at_least),
    )
    return len(rows) >= at_least


async def _locked(where: str, *args: Any, limit: int, skip_locked: bool) -> list[dict[str, Any]]:
    """Conversions matching `where` (constant SQL with {} parameters), locked for this transaction."""
    lock = "" if db.is_sqlite() else (" FOR UPDATE OF c SKIP LOCKED" if skip_locked else " FOR UPDATE OF c")
    sql = (
        # The goal's payout model: only RevShare's price follows the reported sale (CPA and CPL may
        # report one too, for the advertiser's figures), so only theirs may be set aside to wait alone.
        f"SELECT {_COLUMNS} FROM conversion c JOIN campaign k ON k.id = c.campaign "  # noqa: S608
        "JOIN goal g ON g.id = c.goal "
        f"WHERE {where} ORDER BY c.id LIMIT {int(limit)}{lock}"
    )
    return await Conversion.raw(sql, *args)


async def _fit(
    rows: Sequence[dict[str, Any]], skip_campaigns: set[int], *, by_hand: bool = False
) -> tuple[list[dict], set[int], list[int]]:
    """The rows the advertisers' balances cover, taken in id order, the campaigns that came up
    short, and the conversions set aside to wait alone. Once a campaign comes up short its later
    conversions wait too, so they stay in order. `by_hand`: the advertiser approves, so their
    auto-pause threshold is theirs to cross."""
    balances = await _balances(r for r in rows if r["campaign"] not in skip_campaigns)
    fitting: list[dict[str, Any]] = []
    short: set[int] = set()
    for row in rows:
        if row["campaign"] in skip_campaigns or row["campaign"] in short:
            short.add(row["campaign"])
            continue
        key = (row["advertiser_id"], row["currency"])
        if row["advertiser_amount_minor"] <= balances[key]:
            balances[key] -= row["advertiser_amount_minor"]
            fitting.append(row)
        else:
            short.add(row["campaign"])
    set_aside: list[int] = []
    for campaign_id in sorted(short - skip_campaigns):
        mine = [r for r in rows if r["campaign"] == campaign_id]
        priced_by_report = [r for r in mine if r["payout_model"] == PayoutModel.revshare.value]
        if not priced_by_report:
            continue
        largest = max(priced_by_report, key=lambda r: (r["advertiser_amount_minor"], -r["id"]))
        rest = [r for r in mine if r is not largest]
        key = (largest["advertiser_id"], largest["currency"])
        # What this campaign may use: what is left, plus what its own rows took in the first pass.
        room = balances[key] + sum(r["advertiser_amount_minor"] for r in fitting if r["campaign"] == campaign_id)
        need = sum(r["advertiser_amount_minor"] for r in rest)
        if need <= room:
            fitting = [r for r in fitting if r["campaign"] != campaign_id] + rest
            balances[key] = room - need
            short.discard(campaign_id)
            set_aside.append(largest["id"])
    if not by_hand:
        fitting = await _keep_above_thresholds(rows, fitting, balances, set_aside)
    fitting.sort(key=lambda r: r["id"])
    return fitting, short, set_aside


async def _balances(rows: Iterable[dict[str, Any]]) -> dict[tuple[int, str], int]:
    """The advertiser balance of every (advertiser, currency) among `rows`: one statement per
    currency, however many advertisers a batch has."""
    by_currency: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        by_currency[row["currency"]].add(row["advertiser_id"])
    balances: dict[tuple[int, str], int] = {}
    for currency, advertisers in sorted(by_currency.items()):
        found = await ledger.balances(K.advertiser_balance, currency, sorted(advertisers))
        balances.update({(advertiser, currency): amount for advertiser, amount in found.items()})
    return balances


async def _keep_above_thresholds(
    rows: Sequence[dict[str, Any]],
    fitting: list[dict[str, Any]],
    balances: dict[tuple[int, str], int],
    set_aside: list[int],
) -> list[dict[str, Any]]:
    """Set aside the one RevShare conversion that would take an advertiser's balance from at or
    above their auto-pause threshold to below it, when without it the balance stays above."""
    settings = await billing.settings_of_many([advertiser for advertiser, _ in balances])
    for key, left in balances.items():
        prefs = settings.get(key[0])
        floor = prefs["auto_pause_threshold_minor"] if prefs and prefs["currency"] == key[1] else 0
        charged = [r for r in fitting if (r["advertiser_id"], r["currency"]) == key]
        start = left + sum(r["advertiser_amount_minor"] for r in charged)
        priced_by_report = [r for r in charged if r["payout_model"] == PayoutModel.revshare.value]
        if not floor or left >= floor or start < floor or not priced_by_report:
            continue
        largest = max(priced_by_report, key=lambda r: (r["advertiser_amount_minor"], -r["id"]))
        if left + largest["advertiser_amount_minor"] >= floor:
            fitting = [r for r in fitting if r is not largest]
            balances[key] = left + largest["advertiser_amount_minor"]
            set_aside.append(largest["id"])
    return fitting


def _earnings(rows: Sequence[dict[str, Any]], now: datetime) -> list[postings.Earning]:
    """One approval per conversion, in the order of `rows` (postings.approve_earnings decides the
    accounts: available when the hold is over, else pending). The split was made at intake by
    server/core/money.py."""
    return [
        postings.Earning(
            advertiser_id=row["advertiser_id"],
            publisher_id=row["publisher"],
            price=row["advertiser_amount_minor"],
            payout=row["publisher_amount_minor"],
            currency=row["currency"],
            reference_type="conversion",
            reference_id=row["id"],
            key=f"conversion:{row['id']}:approved",
            available=utc(row["hold_until"]) <= now,
        )
        for row in rows
    ]


async def _charge(
    rows: list[dict[str, Any]], now: datetime, skip_campaigns: set[int], *, by_hand: bool = False
) -> Charged:
    """Approve the locked pending `rows` the balances cover, inside the caller's transaction."""
    for _ in range(RETRIES):
        fitting, short, set_aside = await _fit(rows, skip_campaigns, by_hand=by_hand)
        try:
            async with db.atomic():
                # The conversions are marked first: their rows are this batch's alone (locked by the
                # caller), so their UPDATE, a batch's largest statement (8 index entries a row), runs
                # before the ledger accounts are locked, while another lane's posting holds them; the
                # accounts are then held only for the ledger's own statements and the commit.
                released = await _mark_approved(fitting, now)
                posted = await postings.approve_earnings(_earnings(fitting, now), effective_at=now)
                approved = [row for row, p in zip(fitting, posted, strict=True) if not p.replayed]
                if len(approved) != len(fitting):
                    # Their key was posted before (nothing moved now): they stay as they were.
                    replayed = [row for row, p in zip(fitting, posted, strict=True) if p.replayed]
                    await _unmark(replayed)
                    gone = {row["id"] for row in replayed}
                    released = [i for i in released if i not in gone]
                # Their conversion.approved events (webhooks, postbacks), with the approval: one
                # emit_many for the batch, nothing at all when none of their owners listens.
                await announce.changed(events.CONVERSION_APPROVED, approved, now=now)
            break
        except InsufficientFunds:
            log.info("a balance changed while a batch was priced; pricing again")
    else:
        raise RuntimeError("balances kept changing under the approval batch")
    charged = Charged(
        approved=[r["id"] for r in approved], released=released, unfunded_campaigns=short, set_aside=set_aside
    )
    done = {r["id"] for r in fitting}
    charged.unfunded = [r["id"] for r in rows if r["id"] not in done]
    return charged


async def _mark_approved(rows: list[dict[str, Any]], now: datetime) -> list[int]:
    """Status approved for the rows this batch charges (in the transaction that posts them, before
    the posting: see _charge); those past their hold are released at once.
    The rows are locked and pending, so every one must change: anything else would leave money
    moved for a conversion that is not approved, and is refused (the batch rolls back)."""
    due = [r["id"] for r in rows if utc(r["hold_until"]) <= now]
    early = [r["id"] for r in rows if utc(r["hold_until"]) > now]
    changed = 0
    for ids, released_at in ((due, now), (early, None)):
        if not ids:
            continue
        if db.is_sqlite():
            changed += len(
                await Conversion.update(
                    {
                        Conversion.status: ConversionStatus.approved.value,
                        Conversion.approved_at: now,
                        Conversion.released_at: released_at,
                        Conversion.status_reason: "",
                    }
                )
                .where(Conversion.id.is_in(ids), Conversion.status == ConversionStatus.pending.value)
                .returning(Conversion.id)
            )
        else:  # one array parameter: thousands of ids without thousands of placeholders to parse and plan
            changed += len(
                await Conversion.raw(
                    "UPDATE conversion SET status = 'approved', approved_at = {}, released_at = {}, status_reason = '' "
                    "WHERE id = ANY({}::bigint[]) AND status = 'pending' RETURNING id",
                    now,
                    released_at,
                    ids,
                )
            )
    if changed != len(rows):
        raise RuntimeError("a conversion charged in this batch was no longer pending")
    return due


async def _unmark(rows: list[dict[str, Any]]) -> None:
    """Undo _mark_approved for `rows` (in the same transaction): pending again, with their reason."""
    for row in rows:
        changed = (
            await Conversion.update(
                {
                    Conversion.status: ConversionStatus.pending.value,
                    Conversion.approved_at: None,
                    Conversion.released_at: None,
                    Conversion.status_reason: row["status_reason"],
                }
            )
            .where(Conversion.id == row["id"], Conversion.status == ConversionStatus.approved.value)
            .returning(Conversion.id)
        )
        if not changed:
            raise RuntimeError("a conversion marked approved in this batch changed under it")


async def approve(conversion: dict[str, Any], now: datetime) -> bool | None:
    """Charge one conversion to its advertiser (an early approval, or the job): True if this call
    did it, None if it was no longer pending, False (and nothing moved) if the balance is short."""
    async with db.transaction():
        rows = await _locked(
            "c.id = {} AND c.status = 'pending' AND NOT c.held AND " + NOT_HELD_PUBLISHER,
            conversion["id"],
            limit=1,
            skip_locked=False,
        )
        rows, _, _ = await selfcheck.screen(rows, now)
        if not rows:
            return None
        charged = await _charge(rows, now, set(), by_hand=True)
    if charged.unfunded:
        return False
    return True if charged.approved else None


async def skip_if_raced(step, conversion: dict[str, Any], now: datetime) -> Any:
    """Another worker may post the same key at the same moment: its unique key wins, we move on."""
    try:
        return await step(conversion, now)
    except Exception as exc:
        if db.is_unique_violation(exc):
            log.info("conversion %s was reconciled by another worker", conversion["id"])
            return None
        raise


async def _approve_due(now: datetime, outcome: Outcome) -> set[int]:
    """Every pending conversion past its hold, batch by batch; the campaigns that came up short.
    Conversions set aside to wait alone say so, in the same transaction as the batch.

    On PostgreSQL LANES batches are under way at once, each in its own transaction on its own
    connection (their rows taken with SKIP LOCKED, as two workers take theirs): while one batch's
    statements and commit run in the database, the next is read, priced and built in Python. They
    queue on the ledger accounts they share (locked in id order), and a batch priced against a
    balance another lane has since spent is priced again (InsufficientFunds, `_charge`)."""
    cursor = {"after": 0}
    short: set[int] = set()

    async def lane() -> None:
        while True:
            async with db.transaction():
                locked = await _locked(
                    "c.status = 'pending' AND NOT c.held AND c.hold_until <= {} AND c.id > {} AND "
                    + NOT_HELD_PUBLISHER,
                    now,
                    cursor["after"],
                    limit=batch_size(),
                    skip_locked=True,
                )
                if not locked:
                    return
                cursor["after"] = max(cursor["after"], locked[-1]["id"])
                rows, _, _ = await selfcheck.screen(locked, now)
                if not rows:
                    continue
                charged = await _charge(rows, now, set(short))
                if charged.set_aside:
                    await Conversion.update({Conversion.status_reason: WAITING_ALONE}).where(
                        Conversion.id.is_in(charged.set_aside), Conversion.status == ConversionStatus.pending.value
                    )
            short.update(charged.unfunded_campaigns)
            outcome.approved += len(charged.approved)
            outcome.released += len(charged.released)
            outcome.unfunded += len(charged.unfunded)

    # SQLite has one writer; inside a caller's transaction every query shares its one connection.
    if db.is_sqlite() or db.engine().current_transaction.get() is not None:
        await lane()
        return short
    lanes = [asyncio.create_task(lane()) for _ in range(LANES)]
    try:
        await asyncio.gather(*lanes)
    except BaseException:
        for task in lanes:  # one lane failed: the others stop too (their batches roll back)
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        raise
    return short


async def _release_due(now: datetime) -> int:
    """Earnings approved early whose hold has now ended: publisher pending → available."""
    released = 0
    after = 0
    while True:
        async with db.transaction():
            rows = await _locked(
                "c.status = 'approved' AND c.released_at IS NULL AND c.hold_until <= {} AND c.id > {}",
                now,
                after,
                limit=batch_size(),
                skip_locked=True,
            )
            if not rows:
                return released
            after = rows[-1]["id"]
            await postings.release_earnings(
                [
                    postings.Release(
                        r["publisher"],
                        r["publisher_amount_minor"],
                        r["currency"],
                        reference_type="conversion",
                        reference_id=r["id"],
                        key=f"conversion:{r['id']}:released",
                    )
                    for r in rows
                    if r["publisher_amount_minor"]
                ],
                effective_at=now,
            )
            changed = (
                await Conversion.update({Conversion.released_at: now})
                .where(Conversion.id.is_in([r["id"] for r in rows]), Conversion.released_at.is_null())
                .returning(Conversion.id)
            )
            released += len(changed)


async def run(now: datetime | None = None) -> Outcome:
    """Approve every pending conversion whose hold has ended, then release earnings approved early."""
    now = now or clock.now()
    outcome = Outcome()
    outcome.self_held = await selfcheck.screen_recent(now)
    short = await _approve_due(now, outcome)
    for campaign_id in sorted(short):
        await Conversion.update({Conversion.status_reason: LOW_BALANCE}).where(
            Conversion.campaign == campaign_id,
            Conversion.status == ConversionStatus.pending.value,
            Conversion.hold_until <= now,
            Conversion.held.eq(False),
        )
        if await campaigns.pause_for_balance(campaign_id):
            outcome.paused_campaigns.append(campaign_id)
    outcome.released += await _release_due(now)
    return outcome
