"""Publisher-level holds (publisher_hold): a rule about the publisher rather than one conversion
(shared_payout_account: server/payouts/shared.py) holds all of them.

While a publisher has an open hold none of their conversions is approved (the approval's queries
skip them, server/conversions/approval.py: NOT_HELD_PUBLISHER), so nothing of theirs is charged or
earned, and no payout batch pays them (server/payouts/service.py: standings, carried over as
`on_hold`). Finance and admins see the open holds with their evidence in the review queue
(/finance/review) and decide:

- release (reason optional): the hold closes; their conversions go back to the ordinary flow;
- reject (reason required, the publisher sees it on their conversions): the hold closes and every
  pending conversion of theirs is rejected with the reason. Nothing of them was charged (held
  conversions are never approved), so no money moves; conversions approved before the hold are
  left to their advertisers (who may reverse them, server/conversions/reversal.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from piccolo.query.functions.aggregate import Count, Sum

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role, User
from server.audit import service as audit
from server.conversions import announce
from server.conversions.tables import (
    Conversion,
    ConversionFlag,
    ConversionStatus,
    FlagDecision,
    PublisherHold,
    PublisherRule,
)
from server.core import clock, db
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.hours import utc
from server.core.i18n import _, _l
from server.webhooks import events

REASON_MAX = 500
# A conversion `c` whose publisher is not held: a fragment of the approval's WHERE.
NOT_HELD_PUBLISHER = "NOT EXISTS (SELECT 1 FROM publisher_hold h WHERE h.publisher = c.publisher AND h.decision = '')"

RULE_TEXT = {
    "shared_payout_account": _l("The publisher's payout bank account is also another publisher's"),
}


async def hold(publisher_ids: Sequence[int], rule: PublisherRule, evidence: Mapping[int, dict[str, Any]]) -> list[int]:
    """Hold each publisher for `rule` unless an open hold of that rule is there already; the
    publishers newly held."""
    now = clock.now()
    held: list[int] = []
    async with db.transaction():
        for publisher_id in sorted(set(publisher_ids)):
            exists = await PublisherHold.exists().where(
                PublisherHold.publisher == publisher_id,
                PublisherHold.rule == rule.value,
                PublisherHold.decision == FlagDecision.open.value,
            )
            if exists:
                continue
            await PublisherHold.insert(
                PublisherHold(
                    publisher=publisher_id,
                    rule=rule.value,
                    evidence=json.dumps(evidence.get(publisher_id, {}), sort_keys=True),
                    created_at=now,
                )
            )
            await audit.record(
                "publisher.held", actor_id=None, object_type="user", object_id=publisher_id, rule=rule.value
            )
            held.append(publisher_id)
    return held


async def held_publishers(publisher_ids: Sequence[int]) -> set[int]:
    """Those of `publisher_ids` with an open hold: the open holds are few (a partial index), so
    they are read whole rather than matched against a list of thousands of publishers."""
    if not publisher_ids:
        return set()
    rows = await PublisherHold.select(PublisherHold.publisher).where(PublisherHold.decision == FlagDecision.open.value)
    return {r["publisher"] for r in rows} & set(publisher_ids)


@dataclass(frozen=True)
class HeldPublisher:
    id: int  # the hold's
    publisher_id: int
    publisher_email: str
    rule: str
    text: str
    evidence: dict[str, Any]
    created_at: datetime
    pending_conversions: int
    pending_payout_minor: dict[str, int]  # by currency: what the publisher would earn from them


def _reviewer(user: CurrentUser) -> None:
    if user.role not in (Role.finance, Role.admin):
        raise Forbidden(_("Only finance or an admin review held publishers."))


async def queue(user: CurrentUser) -> list[HeldPublisher]:
    """Open publisher holds, oldest first (finance and admins)."""
    _reviewer(user)
    rows = (
        await PublisherHold.select(
            PublisherHold.id,
            PublisherHold.publisher,
            PublisherHold.publisher.email.as_alias("email"),
            PublisherHold.rule,
            PublisherHold.evidence,
            PublisherHold.created_at,
        )
        .where(PublisherHold.decision == FlagDecision.open.value)
        .order_by(PublisherHold.id)
        .limit(200)
    )
    if not rows:
        return []
    pending: dict[int, dict[str, int]] = {}
    counts: dict[int, int] = {}
    for r in (
        await Conversion.select(
            Conversion.publisher,
            Conversion.currency,
            Count(alias="n"),
            Sum(Conversion.publisher_amount_minor, alias="total"),
        )
        .where(
            Conversion.status == ConversionStatus.pending.value,
            Conversion.publisher.is_in(sorted({r["publisher"] for r in rows})),
        )
        .group_by(Conversion.publisher, Conversion.currency)
    ):
        counts[r["publisher"]] = counts.get(r["publisher"], 0) + int(r["n"])
        pending.setdefault(r["publisher"], {})[r["currency"]] = int(r["total"] or 0)
    return [
        HeldPublisher(
            id=r["id"],
            publisher_id=r["publisher"],
            publisher_email=r["email"],
            rule=r["rule"],
            text=str(RULE_TEXT.get(r["rule"], r["rule"])),
            evidence=json.loads(r["evidence"]),
            created_at=utc(r["created_at"]),
            pending_conversions=counts.get(r["publisher"], 0),
            pending_payout_minor=pending.get(r["publisher"], {}),
        )
        for r in rows
    ]


def _reason(raw: str, *, required: bool) -> str:
    reason = (raw or "").strip()
    if required and not reason:
        raise Invalid(_("Give a reason for rejecting: the publisher sees it."), field="reason")
    if len(reason) > REASON_MAX:
        raise Invalid(_("The reason is limited to %(max)s characters.", max=REASON_MAX), field="reason")
    return reason


async def release(user: CurrentUser, hold_id: int, reason: str = "", *, now: datetime | None = None) -> None:
    """The publisher is genuine: the hold closes and their conversions go back to the ordinary flow."""
    await _decide(user, hold_id, FlagDecision.released, _reason(reason, required=False), now)


async def reject(user: CurrentUser, hold_id: int, reason: str, *, now: datetime | None = None) -> int:
    """The publisher is not genuine: the hold closes and their pending conversions are rejected with
    the reason (nothing was charged for them). How many were rejected."""
    return await _decide(user, hold_id, FlagDecision.rejected, _reason(reason, required=True), now)


async def _decide(user: CurrentUser, hold_id: int, decision: FlagDecision, reason: str, now: datetime | None) -> int:
    _reviewer(user)
    now = now or clock.now()
    row = (
        await PublisherHold.select(PublisherHold.id, PublisherHold.publisher, PublisherHold.rule)
        .where(PublisherHold.id == hold_id)
        .first()
    )
    if row is None:
        raise NotFound(_("There is no such publisher hold."))
    rejected: list[dict[str, Any]] = []
    async with db.transaction():
        closed = (
            await PublisherHold.update(
                {
                    PublisherHold.decision: decision.value,
                    PublisherHold.decided_by: user.id,
                    PublisherHold.decided_at: now,
                    PublisherHold.reason: reason,
                }
            )
            .where(PublisherHold.id == hold_id, PublisherHold.decision == FlagDecision.open.value)
            .returning(PublisherHold.id)
        )
        if not closed:
            raise Conflict(_("This publisher hold was decided already."), code="not_held")
        if decision == FlagDecision.rejected:
            rejected = (
                await Conversion.update(
                    {
                        Conversion.status: ConversionStatus.rejected.value,
                        Conversion.status_reason: reason,
                        Conversion.held: False,
                    }
                )
                .where(
                    Conversion.publisher == row["publisher"],
                    Conversion.status == ConversionStatus.pending.value,
                )
                .returning(Conversion.id)
            )
            if rejected:
                await ConversionFlag.update(
                    {
                        ConversionFlag.decision: FlagDecision.rejected.value,
                        ConversionFlag.decided_by: user.id,
                        ConversionFlag.decided_at: now,
                        ConversionFlag.reason: reason,
                    }
                ).where(
                    ConversionFlag.conversion.is_in([r["id"] for r in rejected]),
                    ConversionFlag.decision == FlagDecision.open.value,
                )
                await announce.changed_ids(events.CONVERSION_REJECTED, [r["id"] for r in rejected], now=now)
        await audit.record(
            f"publisher.hold_{decision.value}",
            actor_id=user.id,
            object_type="user",
            object_id=row["publisher"],
            rule=row["rule"],
            reason=reason,
            rejected_conversions=len(rejected),
        )
    return len(rejected)


async def publisher_email(publisher_id: int) -> str:
    row = await User.select(User.email).where(User.id == publisher_id).first()
    return row["email"] if row else ""
