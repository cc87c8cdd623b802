"""The mail payouts write: to a publisher when their payout was sent, when it failed or their payout
account needs them; to finance when a batch waits for approval and when a transfer failed.

Each is written through server/accounts/notify.py inside the transaction of its event (a line
becoming paid or failed, a batch prepared, an account state stored), so it exists exactly when the
event does, and under a dedupe key naming the event, so a retried execution or a redelivered
webhook writes nothing more. Amounts go to the templates as minor units and a currency."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from server.accounts import notify
from server.accounts.tables import Publisher, Role, User
from server.core.hours import utc
from server.mail import outbox
from server.payouts import four_eyes
from server.payouts.tables import PayoutBatch

FINANCE = (Role.finance,)  # the pages these notices link to are finance's (admins get a 403 there)
PAYOUTS_PAGE = "/publisher/payouts"
# Stripe stops payouts while it reviews what the publisher gave it: nothing for them to do, no mail.
REVIEWING = frozenset({"requirements.pending_verification", "under_review", "listed"})


def batch_link(batch_id: int) -> str:
    return outbox.link(f"/finance/payouts/{batch_id}")


async def _periods(batch_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    rows = await PayoutBatch.select(
        PayoutBatch.id, PayoutBatch.period_start, PayoutBatch.period_end, PayoutBatch.off_cycle
    ).where(PayoutBatch.id.is_in(sorted(set(batch_ids)) or [0]))
    return {r["id"]: {**r, "period_start": utc(r["period_start"]), "period_end": utc(r["period_end"])} for r in rows}


async def publisher_name(publisher_id: int) -> str:
    """The publisher's public name (their profile's display name), else their address."""
    profile = await Publisher.select(Publisher.display_name).where(Publisher.user == publisher_id).first()
    if profile and profile["display_name"].strip():
        return profile["display_name"].strip()
    row = await User.select(User.email).where(User.id == publisher_id).first()
    return row["email"] if row else f"#{publisher_id}"


async def payouts_sent(lines: Sequence[dict[str, Any]], *, now: datetime | None = None) -> None:
    """Each line just became paid (`id`, `batch`, `publisher`, `amount_minor`, `currency`): its publisher
    is told, once per line."""
    periods = await _periods([line["batch"] for line in lines])
    for line in lines:
        period = periods[line["batch"]]
        await notify.send(
            "payout_sent",
            line["publisher"],
            {
                "amount_minor": line["amount_minor"],
                "currency": line["currency"],
                "period_start": period["period_start"],
                "period_end": period["period_end"],
                "payout_url": outbox.link(f"{PAYOUTS_PAGE}/lines/{line['id']}"),
                "payouts_url": outbox.link(PAYOUTS_PAGE),
            },
            dedupe_key=f"payout_sent:{line['id']}",
            now=now,
        )


async def transfer_failed(line: dict[str, Any], error: str, *, now: datetime | None = None) -> None:
    """Stripe refused the line's transfer (`id`, `batch`, `publisher`, `amount_minor`, `currency`,
    `attempt`): the publisher reads what happened and where to look, finance reads the error. Once per
    attempt: a line retried by finance and refused again is told again."""
    period = (await _periods([line["batch"]]))[line["batch"]]
    key = f"{line['id']}:{line['attempt']}"
    await notify.send(
        "payout_problem",
        line["publisher"],
        {
            "problem": "transfer_failed",
            "amount_minor": line["amount_minor"],
            "currency": line["currency"],
            "period_start": period["period_start"],
            "period_end": period["period_end"],
            "account_url": outbox.link(PAYOUTS_PAGE),
            "stopped": False,
            "details_due": False,
        },
        dedupe_key=f"payout_problem:line:{key}",
        now=now,
    )
    await notify.send_to_role(
        "transfer_failed",
        FINANCE,
        {
            "batch_id": line["batch"],
            "line_id": line["id"],
            "publisher": await publisher_name(line["publisher"]),
            "amount_minor": line["amount_minor"],
            "currency": line["currency"],
            "error": error,
            "batch_url": batch_link(line["batch"]),
        },
        dedupe_key=f"transfer_failed:{key}",
        now=now,
    )


async def batch_prepared(batch_id: int, *, now: datetime | None = None) -> list[int]:
    """A new batch waits for approval: the finance people who may approve it are told, once. Not
    whoever four eyes bars from approving it (its preparer, and anyone whose changes shaped it:
    server/payouts/four_eyes.py); a batch the scheduled job prepared has no preparer. A batch with no
    line to pay (everyone carried over) waits for nobody."""
    batch = await PayoutBatch.select().where(PayoutBatch.id == batch_id).first()
    if batch is None or batch["line_count"] == 0:
        return []
    barred = (await four_eyes.standing(batch)).barred
    context = {
        "batch_id": batch_id,
        "currency": batch["currency"],
        "total_minor": batch["total_minor"],
        "publisher_count": batch["line_count"],
        "carried_count": batch["carried_count"],
        "period_start": utc(batch["period_start"]),
        "period_end": utc(batch["period_end"]),
        "off_cycle": batch["off_cycle"],
        "batch_url": batch_link(batch_id),
    }
    return await notify.send_to_role(
        "batch_awaiting_approval",
        FINANCE,
        context,
        dedupe_key=f"batch_awaiting_approval:{batch_id}",
        now=now,
        skip=set(barred),
    )


def _trouble(row: dict[str, Any] | None) -> tuple[bool, tuple[str, ...], str] | None:
    """What in a stored account state needs its publisher (payouts stopped, details Stripe asks for),
    or None when nothing does: the account is fine, its onboarding is not finished (the publisher is
    at it), or Stripe is merely reviewing what they gave."""
    if row is None or not row["details_submitted"] or row["state_at"] is None:
        return None
    due = tuple(sorted(f for f in row["requirements_due"].split(",") if f))
    stopped = not row["payouts_enabled"]
    if not due and (not stopped or row["disabled_reason"] in REVIEWING):
        return None
    return stopped, due, row["disabled_reason"]


async def account_changed(
    before: dict[str, Any] | None, after: dict[str, Any], *, now: datetime | None = None
) -> int | None:
    """The payout account's state moved (rows of PayoutAccount before and after): when it now needs the
    publisher and did not in this way before, they are told, once per state change."""
    trouble = _trouble(after)
    if trouble is None or trouble == _trouble(before):
        return None
    stopped, due, _ = trouble
    produced = int(utc(after["state_at"]).timestamp())
    return await notify.send(
        "payout_problem",
        after["publisher"],
        {
            "problem": "account",
            "stopped": stopped,
            "details_due": bool(due),
            "account_url": outbox.link(PAYOUTS_PAGE),
        },
        dedupe_key=f"payout_problem:account:{after['id']}:{produced}",
        now=now,
    )
