"""The events affnet tells its users' webhooks and postbacks about: what each one's `data` holds,
and who receives it. The domain code calls these helpers in the transaction of the change itself
(so an event exists exactly when its change committed); server/webhooks/outbox.py turns them into
messages, one per subscribed endpoint or postback template.

Every `data` has the same conventions: ids are integers, money is integer minor units with its
`currency`, times are ISO-8601 in UTC ending in `Z`, `status` is the object's status after the
change, and `occurred_at` is when the change happened, so a receiver can order the events of one
object (each message also has a `webhook-id` that stays the same on a retry).

A conversion is told to both of its owners, each what their own pages show of it:
- the advertiser: the txn_id and sale amount they reported and the price they pay, and the
  publisher's id (their review page shows the publisher);
- the publisher: their payout, their click and its sub-IDs, the goal and status (with the reason
  a rejection or reversal gives), never the advertiser's txn_id, sale amount or price.
A publisher's postback gets the same publisher-side values as macros; `{payout}` is a decimal
string ("12.50", "1250" for JPY), as the trackers that read postbacks expect, and `{txn_id}` is
affnet's conversion id (a key a tracker may dedupe on; the advertiser's order id is theirs).

The intake and the approval job handle thousands of conversions a second: `watching` answers
from the outbox's per-process caches of owners with an endpoint or a postback template, so the
callers look up a conversion's details (one query per batch) only when someone will hear of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from server.core import clock, money
from server.webhooks import outbox

CONVERSION_RECORDED = "conversion.recorded"
CONVERSION_APPROVED = "conversion.approved"
CONVERSION_REJECTED = "conversion.rejected"
CONVERSION_REVERSED = "conversion.reversed"
PAYOUT_PAID = "payout.paid"
PAYOUT_FAILED = "payout.failed"
CAMPAIGN_PAUSED_FOR_FUNDS = "campaign.paused_for_funds"
APPLICATION_DECIDED = "application.decided"

# The conversion events that also fire the publisher's postback, and its trigger.
POSTBACK_TRIGGERS = {CONVERSION_RECORDED: "recorded", CONVERSION_APPROVED: "approved"}

SUB_NAMES = ("sub1", "sub2", "sub3", "sub4", "sub5")

# What a conversion's payloads are made of: the columns the callers read (server/conversions/announce.py).
CONVERSION_KEYS = (
    "id",
    "campaign",
    "publisher",
    "advertiser_id",
    "goal_name",
    "click_id",
    "txn_id",
    "sale_amount_minor",
    "currency",
    "advertiser_amount_minor",
    "publisher_amount_minor",
    "status",
    "status_reason",
    "source",
    "converted_at",
    "hold_until",
    *SUB_NAMES,
)


def iso(value: datetime | str | None) -> str | None:
    """An instant as ISO-8601 in UTC with microseconds and `Z` (a naive one is taken as UTC; text,
    as a raw SQLite read may give, is read first)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def object_id(kind: str, ident: int) -> str:
    return f"{kind}:{ident}"


# --- who listens ---------------------------------------------------------------------------------


async def watching(owner_ids: Iterable[int], *, postback_publishers: Iterable[int] = ()) -> bool:
    """Whether any of these users has a webhook endpoint, or any of `postback_publishers` a postback
    template: a set lookup in the outbox's caches (a query at most every few seconds per process)."""
    endpoints = await outbox.ENDPOINT_OWNERS.owners()
    if any(o in endpoints for o in owner_ids):
        return True
    publishers = list(postback_publishers)
    if not publishers:
        return False
    templates = await outbox.TEMPLATE_OWNERS.owners()
    return any(p in templates for p in publishers)


async def anyone_watching() -> bool:
    """Whether anyone at all has a webhook endpoint or a postback template."""
    return bool(await outbox.ENDPOINT_OWNERS.owners()) or bool(await outbox.TEMPLATE_OWNERS.owners())


async def watched_conversions(event_type: str, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows (with `advertiser_id` and `publisher`) of conversions someone hears of for this event:
    their advertiser or publisher has an endpoint, or (recorded, approved) their publisher a template."""
    if not rows:
        return []
    endpoints = await outbox.ENDPOINT_OWNERS.owners()
    templates = await outbox.TEMPLATE_OWNERS.owners() if event_type in POSTBACK_TRIGGERS else frozenset()
    return [
        r for r in rows if r["advertiser_id"] in endpoints or r["publisher"] in endpoints or r["publisher"] in templates
    ]


# --- conversions ---------------------------------------------------------------------------------


def conversion_for_advertiser(row: Mapping[str, Any], occurred_at: datetime) -> dict[str, Any]:
    """The advertiser's view of a conversion: what they reported and what they pay."""
    return {
        "conversion_id": row["id"],
        "status": row["status"],
        "status_reason": row["status_reason"] or "",
        "campaign_id": row["campaign"],
        "goal": row["goal_name"],
        "publisher_id": row["publisher"],
        "click_id": row["click_id"],
        "txn_id": row["txn_id"],
        "sale_amount_minor": row["sale_amount_minor"],
        "price_minor": row["advertiser_amount_minor"],
        "currency": row["currency"],
        "source": row["source"],
        "converted_at": iso(row["converted_at"]),
        "hold_until": iso(row["hold_until"]),
        "occurred_at": iso(occurred_at),
    }


def conversion_for_publisher(row: Mapping[str, Any], occurred_at: datetime) -> dict[str, Any]:
    """The publisher's view of a conversion: their click, their sub-IDs, their payout (what
    /publisher/conversions shows, and their own click's labels), nothing the advertiser keeps."""
    return {
        "conversion_id": row["id"],
        "status": row["status"],
        "status_reason": row["status_reason"] or "",
        "campaign_id": row["campaign"],
        "goal": row["goal_name"],
        "click_id": row["click_id"],
        **{name: row.get(name) or "" for name in SUB_NAMES},
        "payout_minor": row["publisher_amount_minor"],
        "currency": row["currency"],
        "source": row["source"],
        "converted_at": iso(row["converted_at"]),
        "hold_until": iso(row["hold_until"]),
        "occurred_at": iso(occurred_at),
    }


def postback_macros(row: Mapping[str, Any]) -> dict[str, str]:
    """The publisher's postback macros of a conversion (the outbox URL-encodes them)."""
    return {
        "click_id": row["click_id"],
        **{name: row.get(name) or "" for name in SUB_NAMES},
        "txn_id": str(row["id"]),
        "payout": money.to_text(row["publisher_amount_minor"], row["currency"]),
        "currency": row["currency"],
        "status": row["status"],
        "campaign_id": str(row["campaign"]),
    }


async def conversions(event_type: str, rows: Sequence[Mapping[str, Any]], *, now: datetime | None = None) -> int:
    """Tell both owners of each conversion (rows with CONVERSION_KEYS, as they stand after the
    change) of `event_type`, and fire the publishers' postbacks on recorded and approved: one
    emit_many and one postback_many for the whole batch, in the caller's transaction. How many
    messages were queued."""
    if not rows:
        return 0
    now = now or clock.now()
    oid = [object_id("conversion", r["id"]) for r in rows]
    events: list[tuple[str, Iterable[int], dict[str, Any], str]] = []
    for row, ident in zip(rows, oid, strict=True):
        events.append((event_type, (row["advertiser_id"],), conversion_for_advertiser(row, now), ident))
        if row["publisher"] != row["advertiser_id"]:
            events.append((event_type, (row["publisher"],), conversion_for_publisher(row, now), ident))
    queued = await outbox.emit_many(events, now=now)
    trigger = POSTBACK_TRIGGERS.get(event_type)
    if trigger is not None:
        queued += await outbox.postback_many(
            [
                (row["publisher"], row["campaign"], trigger, postback_macros(row), ident)
                for row, ident in zip(rows, oid, strict=True)
            ],
            now=now,
        )
    return queued


# --- payouts -------------------------------------------------------------------------------------


def payout_data(line: Mapping[str, Any], status: str, occurred_at: datetime) -> dict[str, Any]:
    """A payout line as its publisher's payout history shows it (no finance-internal field)."""
    data: dict[str, Any] = {
        "payout_id": line["id"],
        "status": status,
        "amount_minor": line["amount_minor"],
        "currency": line["currency"],
        "occurred_at": iso(occurred_at),
    }
    if status == "paid":
        data["stripe_transfer_id"] = line.get("stripe_transfer_id") or ""
    else:
        # Stripe's code for the refusal (the part of the stored error before its colon); the money
        # is back in the publisher's available balance and paid at a later payout.
        data["failure_code"] = (line.get("error") or "").partition(":")[0].strip()
    return data


async def payouts(event_type: str, lines: Sequence[Mapping[str, Any]], *, now: datetime | None = None) -> int:
    """payout.paid or payout.failed for each line (`id`, `publisher`, `amount_minor`, `currency`,
    and `stripe_transfer_id` or `error`), to its publisher, in the caller's transaction."""
    if not lines or not await watching(line["publisher"] for line in lines):
        return 0
    now = now or clock.now()
    status = "paid" if event_type == PAYOUT_PAID else "failed"
    return await outbox.emit_many(
        [
            (event_type, (line["publisher"],), payout_data(line, status, now), object_id("payout", line["id"]))
            for line in lines
        ],
        now=now,
    )


# --- campaigns -----------------------------------------------------------------------------------


def campaign_paused_data(
    campaign: Mapping[str, Any], *, threshold: bool, reason: str, occurred_at: datetime
) -> dict[str, Any]:
    return {
        "campaign_id": campaign["id"],
        "name": campaign["name"],
        "status": "paused",
        "currency": campaign["currency"],
        # "balance": it could not pay for its conversions or clicks; "threshold": the advertiser's
        # balance fell below their own auto-pause threshold.
        "reason": "threshold" if threshold else "balance",
        "message": reason,
        "occurred_at": iso(occurred_at),
    }


async def campaign_paused_for_funds(
    campaign: Mapping[str, Any], *, threshold: bool, reason: str, now: datetime | None = None
) -> int:
    """The campaign (`id`, `name`, `currency`, `advertiser`) was paused by affnet for want of funds:
    its advertiser hears of it."""
    now = now or clock.now()
    return await outbox.emit(
        CAMPAIGN_PAUSED_FOR_FUNDS,
        (campaign["advertiser"],),
        campaign_paused_data(campaign, threshold=threshold, reason=reason, occurred_at=now),
        object_id=object_id("campaign", campaign["id"]),
        now=now,
    )


def application_data(
    membership_id: int, campaign_id: int, *, accepted: bool, status: str, reason: str, occurred_at: datetime
) -> dict[str, Any]:
    return {
        "application_id": membership_id,
        "campaign_id": campaign_id,
        "decision": "accepted" if accepted else "declined",
        "status": status,
        "reason": reason,
        "occurred_at": iso(occurred_at),
    }


async def application_decided(
    membership_id: int,
    campaign_id: int,
    publisher_id: int,
    *,
    accepted: bool,
    status: str,
    reason: str,
    now: datetime | None = None,
) -> int:
    """The advertiser answered the publisher's application to a campaign: the publisher hears of it."""
    now = now or clock.now()
    return await outbox.emit(
        APPLICATION_DECIDED,
        (publisher_id,),
        application_data(membership_id, campaign_id, accepted=accepted, status=status, reason=reason, occurred_at=now),
        object_id=object_id("application", membership_id),
        now=now,
    )
