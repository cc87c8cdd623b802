"""Four eyes on payout batches (MONEY.md I9): nobody approves a batch that they prepared or shaped.

A batch is shaped by whoever prepared it (none: the scheduled job) and by every finance change
recorded here (`PayoutChange`): the payout schedule, a network minimum, a publisher's own minimum
or hold (placed, released or re-worded), and a line held in a batch. Which changes count for a
batch B (currency C):

- a line held in B itself: always, while B waits for approval (the holder is one of B's editors);
- a change whose scope covers B: the schedule covers every batch, a network minimum the batches
  of its currency, a publisher's minimum or hold every batch in which that publisher has a line or
  is carried over, and a held line the later batches of its currency with that publisher;
- unless it was already answered: another finance person approved a batch of currency C that the
  change covers, prepared after the change and before B. That approval had the change in front of
  it, so it no longer binds its author. Changes made after B was prepared count too (up to B's
  approval), even when they cannot alter B's lines: simple, and never less safe.

So a change stays with its author until someone else has approved a batch it shaped; until then
its author cannot approve any batch it covers. With a single finance person, a batch they shaped
waits until a second one exists. Changes made with no person behind them (the CLI, the scheduled
job, tests' set-up) are not recorded: there is nobody to keep apart."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.accounts.tables import Publisher, Role, User
from server.core import clock, money
from server.core.hours import utc
from server.core.i18n import _, long_datetime_text, ngettext
from server.payouts.tables import ChangeKind, PayoutBatch, PayoutCarryOver, PayoutChange, PayoutLine, Schedule

SHOWN = 3  # changes named in a refusal; the page lists them all
TEXT_MAX = 80  # characters of a reason typed by finance that a summary repeats


@dataclass(frozen=True)
class Change:
    id: int
    actor_id: int
    actor_email: str
    kind: str
    summary: str
    created_at: datetime

    def sentence(self, viewer_id: int | None = None) -> str:
        """ "You changed … on December 3, 2026 2:05 PM", or with the author's email for anyone else,
        in the reader's language and time zone (the page names the zone)."""
        change, moment = words(self.summary), long_datetime_text(self.created_at)
        if viewer_id == self.actor_id:
            return _("You %(change)s on %(when)s", change=change, when=moment)
        return _("%(who)s %(change)s on %(when)s", who=self.actor_email, change=change, when=moment)


def N_(message: str) -> str:  # marks an English phrase for the catalogues; words() translates it
    return message


def phrase(message: str, **values: Any) -> str:
    """What a change is kept as (PayoutChange.summary): its English phrase and the values to fill in,
    so each reader reads it in their own language. A value is text, or ("money", minor, currency),
    ("schedule", terms as a dict) or ("text", a phrase marked with N_), written when read."""
    return json.dumps({"phrase": message, "values": values}, ensure_ascii=False)


def words(summary: str) -> str:
    """A kept change in the reader's language (changes kept before issue 19 are plain English)."""
    try:
        kept = json.loads(summary)
    except ValueError:
        return summary
    if not isinstance(kept, dict) or "phrase" not in kept:
        return summary
    return _(kept["phrase"], **{name: _value(v) for name, v in kept.get("values", {}).items()})


def _value(value: Any) -> str:
    if isinstance(value, list) and value and value[0] == "money":
        return money.display_local(value[1], value[2])
    if isinstance(value, list) and value and value[0] == "schedule":
        return schedule_words(value[1])
    if isinstance(value, list) and value and value[0] == "text":
        return _(value[1])
    return str(value)


def clip(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"


async def publisher_label(publisher_id: int) -> str:
    """ "Ana (ana@example.com)": the publisher's name and address, for a summary."""
    row = await User.select(User.email).where(User.id == publisher_id).first()
    email = row["email"] if row else f"#{publisher_id}"
    profile = await Publisher.select(Publisher.display_name).where(Publisher.user == publisher_id).first()
    name = clip(profile["display_name"]) if profile and profile["display_name"].strip() else email
    return f"{name} ({email})" if name != email else email


async def record(
    kind: ChangeKind,
    summary: str,
    *,
    actor_id: int | None,
    currency: str = "",
    publisher_id: int | None = None,
    batch_id: int | None = None,
) -> None:
    """Keep a change that shapes batches; call it in the transaction that makes the change."""
    if actor_id is None:
        return
    await PayoutChange.insert(
        PayoutChange(
            actor=actor_id,
            kind=kind.value,
            currency=currency,
            publisher=publisher_id,
            batch=batch_id,
            summary=summary,
            created_at=clock.now(),
        )
    )


WEEKDAYS = (N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"), N_("Saturday"), N_("Sunday"))


def schedule_terms(terms: Any) -> dict[str, Any]:
    """What decides a batch in a schedule (a change of any of it is a change that counts)."""
    return {
        "schedule": terms.schedule.value,
        "weekday": terms.cutoff_weekday,
        "day": terms.cutoff_day,
        "hour": terms.cutoff_hour,
        "large_change_percent": terms.large_change_percent,
    }


def schedule_text(terms: Any) -> str:
    """The schedule as comparable text: two schedules that differ in anything differ here."""
    return json.dumps(schedule_terms(terms), sort_keys=True)


def schedule_words(kept: dict[str, Any]) -> str:
    """ "monthly, cut-off on day 1 at 00:00 UTC, large change 50%", in the reader's language."""
    hour, percent = f"{kept['hour']:02d}:00", kept["large_change_percent"]
    if kept["schedule"] == Schedule.weekly.value:
        return _(
            "weekly, cut-off on %(weekday)s at %(hour)s UTC, large change %(percent)s%%",
            weekday=_(WEEKDAYS[kept["weekday"]]),
            hour=hour,
            percent=percent,
        )
    return _(
        "monthly, cut-off on day %(day)s at %(hour)s UTC, large change %(percent)s%%",
        day=kept["day"],
        hour=hour,
        percent=percent,
    )


def schedule_change(before: Any, after: Any) -> str:
    return phrase(
        N_("changed the payout schedule from %(before)s to %(after)s"),
        before=["schedule", schedule_terms(before)],
        after=["schedule", schedule_terms(after)],
    )


async def record_terms(
    publisher_id: int, before: dict[str, Any] | None, new: dict[str, Any], actor_id: int | None
) -> None:
    """Four eyes: what a save of a publisher's terms changed (a save that changes nothing is no change)."""
    if actor_id is None:
        return
    old = before or {"minimum_minor": None, "minimum_currency": "", "on_hold": False, "hold_reason": ""}
    who = await publisher_label(publisher_id)

    def minimum(row: dict[str, Any]) -> list[Any]:
        if row["minimum_minor"] is None:
            return ["text", N_("the network minimum")]
        return ["money", row["minimum_minor"], row["minimum_currency"]]

    if (old["minimum_minor"], old["minimum_currency"]) != (new["minimum_minor"], new["minimum_currency"]):
        await record(
            ChangeKind.publisher_minimum,
            phrase(
                N_("changed the minimum payout of %(who)s from %(before)s to %(after)s"),
                who=who,
                before=minimum(old),
                after=minimum(new),
            ),
            actor_id=actor_id,
            publisher_id=publisher_id,
        )
    if old["on_hold"] and not new["on_hold"]:
        done = phrase(N_("released the payout hold on %(who)s"), who=who)
    elif new["on_hold"] and not old["on_hold"]:
        done = phrase(N_("put the payouts of %(who)s on hold (“%(reason)s”)"), who=who, reason=clip(new["hold_reason"]))
    elif new["on_hold"] and old["hold_reason"] != new["hold_reason"]:
        done = phrase(
            N_("changed the reason of the payout hold on %(who)s to “%(reason)s”"),
            who=who,
            reason=clip(new["hold_reason"]),
        )
    else:
        return
    await record(ChangeKind.publisher_hold, done, actor_id=actor_id, publisher_id=publisher_id)


async def _members(batch_ids: Iterable[int], publisher_ids: Iterable[int]) -> set[tuple[int, int]]:
    """(batch, publisher) pairs where the publisher has a line or a carry-over in the batch."""
    batches, publishers = sorted(set(batch_ids)), sorted(set(publisher_ids))
    if not batches or not publishers:
        return set()
    found: set[tuple[int, int]] = set()
    for table in (PayoutLine, PayoutCarryOver):
        rows = await table.select(table.batch, table.publisher).where(
            table.batch.is_in(batches), table.publisher.is_in(publishers)
        )
        found |= {(r["batch"], r["publisher"]) for r in rows}
    return found


async def counting(batch: dict[str, Any]) -> list[Change]:
    """The changes that count for `batch` (a row of PayoutBatch), oldest first: the rules above."""
    batch_id, currency = batch["id"], batch["currency"]
    rows = (
        await PayoutChange.select(PayoutChange.all_columns(), PayoutChange.actor.email.as_alias("actor_email"))
        .where(
            (PayoutChange.batch == batch_id)
            | (
                PayoutChange.currency.is_in(["", currency])
                & PayoutChange.publisher.is_null()
                & (PayoutChange.kind != ChangeKind.line_held.value)
            )
            | (PayoutChange.currency.is_in(["", currency]) & PayoutChange.publisher.is_not_null())
        )
        .order_by(PayoutChange.id)
    )
    scoped = [r for r in rows if r["batch"] != batch_id]
    publishers = {r["publisher"] for r in scoped if r["publisher"] is not None}
    mine = {p for _, p in await _members([batch_id], publishers)}
    scoped = [r for r in scoped if r["publisher"] is None or r["publisher"] in mine]
    answered: set[int] = set()
    if scoped:
        # Compared here, not in SQL: SQLite keeps times as text.
        approved = [
            b
            for b in await PayoutBatch.select(PayoutBatch.id, PayoutBatch.prepared_at, PayoutBatch.approved_by).where(
                PayoutBatch.currency == currency, PayoutBatch.id < batch_id, PayoutBatch.approved_by.is_not_null()
            )
        ]
        pairs = await _members([b["id"] for b in approved], publishers)
        for r in scoped:
            if any(
                utc(b["prepared_at"]) >= utc(r["created_at"])
                and b["approved_by"] != r["actor"]
                and (r["publisher"] is None or (b["id"], r["publisher"]) in pairs)
                for b in approved
            ):
                answered.add(r["id"])
    counted = {r["id"] for r in rows if r["batch"] == batch_id} | {r["id"] for r in scoped}
    return [
        Change(r["id"], r["actor"], r["actor_email"], r["kind"], r["summary"], utc(r["created_at"]))
        for r in rows
        if r["id"] in counted and r["id"] not in answered
    ]


@dataclass(frozen=True)
class Standing:
    """Who may approve a batch, and why the others may not."""

    changes: list[Change]  # every change that counts, oldest first
    barred: dict[int, list[str]]  # finance person's id -> sentences addressed to them ("You …")
    approvers: list[str]  # emails of the active finance people who may approve

    def refusal(self, user_id: int) -> str | None:
        """The message refusing `user_id`, or None when they may approve."""
        reasons = self.barred.get(user_id)
        if not reasons:
            return None
        text = "; ".join(reasons[:SHOWN])
        if len(reasons) > SHOWN:
            more = len(reasons) - SHOWN
            text = ngettext(
                "%(reasons)s; and %(num)s more change listed on the batch's page",
                "%(reasons)s; and %(num)s more changes listed on the batch's page",
                more,
                reasons=text,
            )
        return _("%(reasons)s: another finance person must approve this batch.", reasons=text)


async def standing(batch: dict[str, Any]) -> Standing:
    changes = await counting(batch)
    barred: dict[int, list[str]] = defaultdict(list)
    if batch["prepared_by"] is not None:
        barred[batch["prepared_by"]].append(_("You prepared this batch"))
    for change in changes:
        barred[change.actor_id].append(change.sentence(change.actor_id))
    finance = (
        await User.select(User.id, User.email)
        .where(User.role == Role.finance.value, User.is_active.eq(True))
        .order_by(User.email)
    )
    return Standing(changes, dict(barred), [u["email"] for u in finance if u["id"] not in barred])


async def editor_emails(batch_id: int) -> list[str]:
    """Everyone who held a line of the batch (its editors), by email."""
    return (
        await PayoutChange.select(PayoutChange.actor.email)
        .where(PayoutChange.batch == batch_id, PayoutChange.kind == ChangeKind.line_held.value)
        .distinct()
        .order_by(PayoutChange.actor.email)
        .output(as_list=True)
    )
