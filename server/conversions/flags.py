"""The review queue of conversions held by a fraud rule (server/conversions/rules.py): their flags
and evidence, releasing or rejecting them, and tuning the rules per campaign and network-wide.

Who sees what: an advertiser reviews and tunes only their own campaigns (another's conversion or
campaign answers NotFound, as if it did not exist); finance and admins review every campaign; only
an admin tunes the network-wide knobs. Every decision and every change of a knob is audited.

Releasing a held conversion returns it to the ordinary flow: it is not approved by the release (the
job approves it when its hold ends, or the advertiser approves it sooner from the conversions
page). Rejecting it rejects the conversion with the reviewer's reason, which the publisher sees on
their conversions page; no money moves in either case (nothing was charged while it was held)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.audit import service as audit
from server.campaigns.tables import Campaign
from server.conversions import announce, rules
from server.conversions.tables import (
    Conversion,
    ConversionFlag,
    ConversionRuleSetting,
    ConversionStatus,
    FlagDecision,
)
from server.core import clock, db
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.hours import utc
from server.core.i18n import _, _l
from server.tracking.tables import Click
from server.webhooks import events

QUEUE_LIMIT = 200
REASON_MAX = 500
REVIEWERS = (Role.advertiser, Role.finance, Role.admin)

RULE_TEXT = {
    "too_fast": _l("Converted too fast after its click for this campaign"),
    "rate_anomaly": _l("The publisher's conversions (or conversion rate) today are far above their own baseline"),
    "self_conversion": _l("The click came from the publisher's own browser and network (their logged-in session)"),
}


async def record(conversion: Mapping[str, Any], findings: Sequence[rules.Finding], now: datetime) -> None:
    """The flags of a conversion just stored held (the intake's only write here)."""
    await ConversionFlag.insert(
        *(
            ConversionFlag(
                conversion=conversion["id"],
                campaign=conversion["campaign"],
                publisher=conversion["publisher"],
                rule=finding.rule.value,
                evidence=json.dumps(finding.evidence, sort_keys=True),
                created_at=now,
            )
            for finding in findings
        )
    )


@dataclass(frozen=True)
class Flag:
    rule: str
    text: str
    evidence: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class HeldConversion:
    """One held conversion as the queue shows it: the conversion, the click's timeline, the
    publisher's baseline, and every open flag with its evidence."""

    id: int
    campaign_id: int
    campaign_name: str
    goal_name: str
    publisher_id: int
    publisher_name: str  # their public profile: advertisers review them too, and never see e-mail addresses
    publisher_site: str
    txn_id: str
    source: str
    currency: str
    advertiser_amount_minor: int
    publisher_amount_minor: int
    clicked_at: datetime
    converted_at: datetime
    elapsed_seconds: int
    visitor_hash_prefix: str  # "" when the click row is not written yet
    publisher_today: int
    publisher_daily_mean: Decimal  # to the hundredth
    flags: list[Flag]

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.flags]


def _reviewer(user: CurrentUser) -> None:
    if user.role not in REVIEWERS:
        raise Forbidden(_("Only the campaign's advertiser, finance or an admin review held conversions."))


async def queue(
    user: CurrentUser, *, campaign_id: int | None = None, now: datetime | None = None
) -> list[HeldConversion]:
    """Held conversions still pending, oldest first: the advertiser's own campaigns', or (finance,
    admin) every campaign's."""
    _reviewer(user)
    now = now or clock.now()
    query = Conversion.select(
        Conversion.id,
        Conversion.campaign.as_alias("campaign_id"),
        Conversion.campaign.name.as_alias("campaign_name"),
        Conversion.goal.name.as_alias("goal_name"),
        Conversion.publisher.as_alias("publisher_id"),
        Conversion.click_id,
        Conversion.txn_id,
        Conversion.source,
        Conversion.currency,
        Conversion.advertiser_amount_minor,
        Conversion.publisher_amount_minor,
        Conversion.clicked_at,
        Conversion.converted_at,
    ).where(Conversion.held.eq(True), Conversion.status == ConversionStatus.pending.value)
    if user.role == Role.advertiser:
        query = query.where(Conversion.campaign.advertiser == user.id)
    if campaign_id is not None:
        query = query.where(Conversion.campaign == campaign_id)
    rows = await query.order_by(Conversion.id).limit(QUEUE_LIMIT)
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    flags: dict[int, list[Flag]] = {}
    for f in (
        await ConversionFlag.select()
        .where(ConversionFlag.conversion.is_in(ids), ConversionFlag.decision == FlagDecision.open.value)
        .order_by(ConversionFlag.id)
    ):
        flags.setdefault(f["conversion"], []).append(
            Flag(f["rule"], str(RULE_TEXT.get(f["rule"], f["rule"])), json.loads(f["evidence"]), f["created_at"])
        )
    hashes = {
        r["click_id"]: r["visitor_hash"]
        for r in await Click.select(Click.click_id, Click.visitor_hash).where(
            Click.click_id.is_in(sorted({r["click_id"] for r in rows}))
        )
    }
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    baselines = {p: await rules.publisher_volume(p, day) for p in sorted({r["publisher_id"] for r in rows})}
    profiles = await accounts.public_profiles({r["publisher_id"] for r in rows})
    return [
        HeldConversion(
            id=r["id"],
            campaign_id=r["campaign_id"],
            campaign_name=r["campaign_name"],
            goal_name=r["goal_name"],
            publisher_id=r["publisher_id"],
            publisher_name=profiles[r["publisher_id"]].name,
            publisher_site=profiles[r["publisher_id"]].site,
            txn_id=r["txn_id"],
            source=r["source"],
            currency=r["currency"],
            advertiser_amount_minor=r["advertiser_amount_minor"],
            publisher_amount_minor=r["publisher_amount_minor"],
            clicked_at=utc(r["clicked_at"]),
            converted_at=utc(r["converted_at"]),
            elapsed_seconds=rules.seconds_between(utc(r["clicked_at"]), utc(r["converted_at"])),
            visitor_hash_prefix=(hashes.get(r["click_id"]) or "")[:8],
            publisher_today=baselines[r["publisher_id"]][0],
            publisher_daily_mean=rules.daily_mean(baselines[r["publisher_id"]][1]),
            flags=flags.get(r["id"], []),
        )
        for r in rows
    ]


async def _held(user: CurrentUser, conversion_id: int) -> dict[str, Any]:
    """The held conversion, if the user may decide on it; NotFound otherwise (another advertiser's
    looks the same as none), Conflict if it is no longer held."""
    _reviewer(user)
    query = Conversion.select(
        Conversion.id, Conversion.status, Conversion.held, Conversion.campaign, Conversion.publisher
    ).where(Conversion.id == conversion_id)
    if user.role == Role.advertiser:
        query = query.where(Conversion.campaign.advertiser == user.id)
    row = await query.first()
    if row is None:
        raise NotFound(_("There is no such conversion."))
    if not row["held"] or row["status"] != ConversionStatus.pending.value:
        raise Conflict(_("This conversion is not held for review (it was decided already)."), code="not_held")
    return row


def _reason(raw: str, *, required: bool) -> str:
    reason = (raw or "").strip()
    if required and not reason:
        raise Invalid(_("Give a reason for rejecting: the publisher sees it."), field="reason")
    if len(reason) > REASON_MAX:
        raise Invalid(_("The reason is limited to %(max)s characters.", max=REASON_MAX), field="reason")
    return reason


async def _close_flags(
    conversion_id: int, decision: FlagDecision, user: CurrentUser, reason: str, now: datetime
) -> list[str]:
    closed = (
        await ConversionFlag.update(
            {
                ConversionFlag.decision: decision.value,
                ConversionFlag.decided_by: user.id,
                ConversionFlag.decided_at: now,
                ConversionFlag.reason: reason,
            }
        )
        .where(ConversionFlag.conversion == conversion_id, ConversionFlag.decision == FlagDecision.open.value)
        .returning(ConversionFlag.rule)
    )
    return sorted(r["rule"] for r in closed)


async def release(user: CurrentUser, conversion_id: int, reason: str = "", *, now: datetime | None = None) -> None:
    """The reviewer finds the held conversion genuine: its flags are released and it goes back to
    the ordinary flow (approved when its hold ends, or by the advertiser sooner)."""
    await _decide(user, conversion_id, FlagDecision.released, _reason(reason, required=False), {}, now)


async def reject(user: CurrentUser, conversion_id: int, reason: str, *, now: datetime | None = None) -> None:
    """The reviewer finds the held conversion fraudulent: it is rejected with the reason, which its
    publisher sees. Nothing was charged while it was held, so no money moves."""
    reason = _reason(reason, required=True)
    rejected = {Conversion.status: ConversionStatus.rejected.value, Conversion.status_reason: reason}
    await _decide(user, conversion_id, FlagDecision.rejected, reason, rejected, now)


async def _decide(
    user: CurrentUser,
    conversion_id: int,
    decision: FlagDecision,
    reason: str,
    values: dict[Any, Any],
    now: datetime | None,
) -> None:
    """Take a held, pending conversion out of the hold (with `values` set on it), close its flags
    and audit it, in one transaction; a conversion decided meanwhile is a 409."""
    now = now or clock.now()
    await _held(user, conversion_id)
    async with db.transaction():
        changed = (
            await Conversion.update({Conversion.held: False, **values})
            .where(
                Conversion.id == conversion_id,
                Conversion.held.eq(True),
                Conversion.status == ConversionStatus.pending.value,
            )
            .returning(Conversion.id)
        )
        if not changed:
            raise Conflict(_("This conversion is not held for review (it was decided already)."), code="not_held")
        closed = await _close_flags(conversion_id, decision, user, reason, now)
        if decision == FlagDecision.rejected:
            await announce.changed_ids(events.CONVERSION_REJECTED, [conversion_id], now=now)
        await audit.record(
            f"conversion.flag_{decision.value}",
            actor_id=user.id,
            object_type="conversion",
            object_id=conversion_id,
            rules=closed,
            reason=reason,
        )


@dataclass(frozen=True)
class KnobValue:
    name: str
    label: str
    value: int
    default: int
    network: int  # what applies without the campaign's own value
    minimum: int
    maximum: int
    own: bool  # set on this scope (campaign, or network for the admin's page)


async def _campaign_of(user: CurrentUser, campaign_id: int) -> None:
    query = Campaign.select(Campaign.id).where(Campaign.id == campaign_id)
    if user.role == Role.advertiser:
        query = query.where(Campaign.advertiser == user.id)
    elif user.role != Role.admin:
        raise Forbidden(_("Only the campaign's advertiser or an admin tune its rules."))
    if await query.first() is None:
        raise NotFound(_("There is no such campaign."))


async def knobs(user: CurrentUser, campaign_id: int | None) -> list[KnobValue]:
    """Every knob for a campaign (its advertiser, an admin) or network-wide (an admin)."""
    if campaign_id is None:
        if user.role != Role.admin:
            raise Forbidden(_("Only an admin tunes the network-wide rules."))
    else:
        await _campaign_of(user, campaign_id)
    network = await rules.knobs_of(None)
    effective = await rules.knobs_of(campaign_id) if campaign_id is not None else network
    scope = (
        ConversionRuleSetting.campaign.is_null()
        if campaign_id is None
        else ConversionRuleSetting.campaign == campaign_id
    )
    own = {r["name"] for r in await ConversionRuleSetting.select(ConversionRuleSetting.name).where(scope)}
    return [
        KnobValue(
            name=name,
            label=knob.label,
            value=effective[name],
            default=knob.default,
            network=network[name],
            minimum=knob.minimum,
            maximum=knob.maximum,
            own=name in own,
        )
        for name, knob in rules.KNOBS.items()
    ]


def parse_knobs(form: Mapping[str, Any]) -> dict[str, int | None]:
    """The knob values of a form: a whole number in range, "" for the inherited value (None); a
    switch (`….enabled`) is a checkbox, on when present."""
    values: dict[str, int | None] = {}
    for name, knob in rules.KNOBS.items():
        if name.endswith(".enabled"):
            values[name] = 1 if form.get(name) else 0
            continue
        raw = form.get(name, "")
        raw = raw.strip() if isinstance(raw, str) else ""
        if not raw:
            values[name] = None
            continue
        if not (raw.isascii() and raw.isdigit() and len(raw) < 10) or not knob.minimum <= int(raw) <= knob.maximum:
            raise Invalid(
                _(
                    "%(label)s: a whole number from %(minimum)s to %(maximum)s.",
                    label=str(knob.label),
                    minimum=knob.minimum,
                    maximum=knob.maximum,
                ),
                field=name,
            )
        values[name] = int(raw)
    return values


async def set_knobs(
    user: CurrentUser, campaign_id: int | None, values: Mapping[str, int | None], *, now: datetime | None = None
) -> list[str]:
    """Store the knobs that differ from what applies without them (None: inherit); the names changed."""
    current = await knobs(user, campaign_id)  # authorises
    now = now or clock.now()
    scope = (
        ConversionRuleSetting.campaign.is_null()
        if campaign_id is None
        else ConversionRuleSetting.campaign == campaign_id
    )
    changed: list[str] = []
    async with db.transaction():
        for knob in current:
            if knob.name not in values:
                continue
            wanted = values[knob.name]
            inherited = knob.default if campaign_id is None else knob.network
            if wanted == inherited:
                wanted = None  # the same as without it: keep nothing, so later network changes apply
            if (wanted is None and not knob.own) or (knob.own and wanted == knob.value):
                continue
            await ConversionRuleSetting.delete().where(scope, ConversionRuleSetting.name == knob.name)
            if wanted is not None:
                await ConversionRuleSetting.insert(
                    ConversionRuleSetting(
                        campaign=campaign_id, name=knob.name, value=wanted, updated_by=user.id, updated_at=now
                    )
                )
            changed.append(knob.name)
            await audit.record(
                "conversion_rules.changed",
                actor_id=user.id,
                object_type="campaign" if campaign_id is not None else "network",
                object_id=campaign_id,
                knob=knob.name,
                before=knob.value,
                after=wanted if wanted is not None else inherited,
            )
    return changed
