"""Stripe, in: webhook events verified over the raw body, recorded once by event id, and applied
by the worker, idempotently and in any order (MONEY.md I11): a payment's, refund's or dispute's
event by billing (server/billing/funding_events.py), a connected account's or a transfer's by
payouts (server/payouts/events.py). It sits above both in the domain order, so that neither
reaches up into the other.

Stripe sends two kinds of events to two endpoints, each with its own signing secret: the platform's
own (payments, refunds, disputes, transfers) to /stripe/webhook (STRIPE_WEBHOOK_SECRET), and those of
connected accounts, which carry `account` (a publisher's `account.updated`), to the Connect endpoint
/stripe/connect-webhook (STRIPE_CONNECT_WEBHOOK_SECRET). An event is accepted only on its own endpoint,
and only a connected account's event about itself changes a payout account; a connected account's
event never touches a funding."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stripe

from server.accounts import notify
from server.accounts.tables import Role
from server.audit import service as audit
from server.billing import funding_events
from server.billing.stripe_api import Gateway, is_transient
from server.core import clock, db
from server.core.errors import Conflict, DomainError
from server.mail import outbox
from server.payouts import events as payout_events
from server.stripe_events.tables import StripeEvent

log = logging.getLogger("affnet.stripe_events")

PROCESS_JOB = "process_stripe_event"  # the worker's job that applies one event (workers/jobs/billing.py)
MAX_ATTEMPTS = 20  # the sweep stops retrying an event after this many failures (it stays visible)
SWEEP_AFTER = timedelta(seconds=30)  # leave fresh events to the job enqueued for them
SWEEP_BATCH = 200
# Finance is told of an event that failed for a reason that will not pass by itself at once; of one
# that Stripe being away (or a payment Stripe has not finished) holds back, after this many tries.
NOTICE_AFTER = 5
EVENTS_PAGE = "/finance/stripe-events"


class BadWebhook(DomainError):
    status_code = 400
    code = "bad_webhook"


@dataclass(frozen=True)
class Recorded:
    event_id: str
    new: bool
    processed: bool


async def record(payload: bytes, signature: str | None, secret: str, *, connect: bool = False) -> Recorded:
    """Verify a delivery and store its event once. Forged, stale or malformed, or on the wrong endpoint
    (`connect`: the Connect endpoint, whose events all carry `account`; else the platform's, whose events
    never do): BadWebhook, nothing stored."""
    if not secret:
        setting = "STRIPE_CONNECT_WEBHOOK_SECRET" if connect else "STRIPE_WEBHOOK_SECRET"
        raise BadWebhook(f"Webhooks are not configured ({setting} is empty).")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except (ValueError, stripe.SignatureVerificationError):
        raise BadWebhook("The signature or the payload is not valid.") from None
    data = event.to_dict()
    event_id, event_type = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise BadWebhook("The event has no id or type.")
    account = data.get("account")
    if connect and not (isinstance(account, str) and account):
        raise BadWebhook("The Connect endpoint takes connected accounts' events only; this one has no account.")
    if not connect and account:
        raise BadWebhook("A connected account's event belongs on the Connect endpoint (/stripe/connect-webhook).")
    rows = (
        await StripeEvent.insert(
            StripeEvent(
                event_id=event_id,
                type=event_type,
                payload=payload.decode("utf-8"),
                received_at=clock.now(),
            )
        )
        .on_conflict(target=StripeEvent.event_id, action="DO NOTHING")
        .returning(StripeEvent.id)
    )
    if rows:
        return Recorded(event_id, new=True, processed=False)
    existing = await StripeEvent.select(StripeEvent.processed_at).where(StripeEvent.event_id == event_id).first()
    return Recorded(event_id, new=False, processed=bool(existing and existing["processed_at"]))


async def process(event_id: str, gateway: Gateway) -> str:
    """Apply one recorded event; its outcome. Raises (and notes the error) when it should be retried."""
    row = await StripeEvent.select().where(StripeEvent.event_id == event_id).first()
    if row is None:
        return "unknown event"
    if row["processed_at"] is not None:
        return row["outcome"]
    try:
        event = json.loads(row["payload"])
        outcome = await _apply(
            row["type"], event["data"]["object"], gateway, created=event.get("created"), account=event.get("account")
        )
    except Exception as exc:
        await _failed(row, exc)
        raise
    await StripeEvent.update(
        {StripeEvent.processed_at: clock.now(), StripeEvent.outcome: outcome[:40], StripeEvent.error: ""}
    ).where(StripeEvent.event_id == event_id, StripeEvent.processed_at.is_null())
    return outcome


async def _failed(row: dict[str, Any], exc: Exception) -> None:
    """Note the failure on the event and, when it is worth a person's look, tell finance in the same
    transaction (once per event id, however often it fails again)."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    async with db.transaction():
        noted = (
            await StripeEvent.update({StripeEvent.error: error, StripeEvent.attempts: StripeEvent.attempts + 1})
            .where(StripeEvent.event_id == row["event_id"])
            .returning(StripeEvent.attempts)
        )
        passes_by_itself = isinstance(exc, funding_events.NotYet) or is_transient(exc)
        if noted and (not passes_by_itself or noted[0]["attempts"] >= NOTICE_AFTER):
            await notify.send_to_role(
                "stripe_event_failed",
                (Role.finance,),
                {
                    "event_id": row["event_id"],
                    "event_type": row["type"],
                    "error": error[:500],
                    "attempts": noted[0]["attempts"],
                    "events_url": outbox.link(EVENTS_PAGE),
                },
                dedupe_key=f"stripe_event_failed:{_short(row['event_id'])}",
            )


def _short(event_id: str) -> str:
    """The event id, or its digest when it is too long for a dedupe key (Stripe's ids are ~30 characters)."""
    return event_id if len(event_id) <= 100 else hashlib.sha256(event_id.encode()).hexdigest()[:40]


async def pending(now: datetime | None = None, limit: int = SWEEP_BATCH) -> list[str]:
    """Events not processed yet (an enqueue lost, a job that failed), oldest first."""
    before = (now or clock.now()) - SWEEP_AFTER
    rows = (
        await StripeEvent.select(StripeEvent.event_id)
        .where(
            StripeEvent.processed_at.is_null(), StripeEvent.received_at <= before, StripeEvent.attempts < MAX_ATTEMPTS
        )
        .order_by(StripeEvent.id)
        .limit(limit)
    )
    return [r["event_id"] for r in rows]


async def unprocessed(limit: int = 200) -> list[dict[str, Any]]:
    """Events not applied yet, newest first, for finance: failing ones with their error and attempts,
    and those the sweep gave up on (MAX_ATTEMPTS)."""
    rows = (
        await StripeEvent.select(
            StripeEvent.id,
            StripeEvent.event_id,
            StripeEvent.type,
            StripeEvent.received_at,
            StripeEvent.attempts,
            StripeEvent.error,
        )
        .where(StripeEvent.processed_at.is_null())
        .order_by(StripeEvent.id, ascending=False)
        .limit(limit)
    )
    for row in rows:
        row["given_up"] = row["attempts"] >= MAX_ATTEMPTS
    return rows


async def retry(event_id: str, *, actor_id: int) -> None:
    """Finance asks for an event to be processed again (after fixing its cause): its attempts start over,
    so the sweep tries it again too. Refused for an event already applied or unknown."""
    async with db.transaction():
        changed = (
            await StripeEvent.update({StripeEvent.attempts: 0})
            .where(StripeEvent.event_id == event_id, StripeEvent.processed_at.is_null())
            .returning(StripeEvent.attempts)
        )
        if not changed:
            raise Conflict("This event was applied already, or there is no such event.")
        await audit.record(
            "stripe_event.retried", actor_id=actor_id, object_type="stripe_event", object_id=None, event_id=event_id
        )


async def sweep(gateway: Gateway, now: datetime | None = None) -> dict[str, int]:
    done = failed = 0
    for event_id in await pending(now):
        try:
            await process(event_id, gateway)
            done += 1
        except Exception:
            log.exception("stripe event %s failed; it will be tried again", event_id)
            failed += 1
    return {"processed": done, "failed": failed}


async def _apply(
    event_type: str, obj: dict[str, Any], gateway: Gateway, *, created: int | None = None, account: str | None = None
) -> str:
    """Hand the event to the domain it is about: a connected account's, a transfer's or a payout's
    to payouts; a payment's, a refund's or a dispute's to billing's fundings."""
    if account:  # a connected account's event (recorded from the Connect endpoint): never about a funding
        return await payout_events.apply(event_type, obj, created, account=account, gateway=gateway) or "ignored"
    outcome = await funding_events.apply(event_type, obj, gateway)
    if outcome is None:
        outcome = await payout_events.apply(event_type, obj, created, account=None, gateway=gateway)
    return outcome or "ignored"
