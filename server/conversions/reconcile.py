"""Reconciliation: pending conversions whose hold has ended are approved through the ledger, and
approved earnings become available to their publishers. Run by the worker (workers/jobs).

Every step is idempotent at the database: each ledger posting carries a key derived from the
conversion id (`conversion:{id}:approved`, `…:released`), and each status change is conditional
on the status it leaves. A second run, or a second worker at the same moment, changes nothing
twice: the ledger replays the posting and the conditional update finds nothing to update."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from server import db
from server.campaigns import service as campaigns
from server.conversions.tables import Conversion, ConversionStatus
from server.ledger import templates
from server.ledger.service import InsufficientFunds

log = logging.getLogger("affnet.conversions")

BATCH = 500
LOW_BALANCE = "waiting: the advertiser's balance cannot cover this conversion (the campaign is paused)"


@dataclass
class Outcome:
    approved: int = 0
    released: int = 0
    unfunded: int = 0
    paused_campaigns: list[int] = field(default_factory=list)


async def _due(status: ConversionStatus, now: datetime, after_id: int, *, unreleased: bool = False) -> list[dict]:
    query = Conversion.select(
        Conversion.id, Conversion.campaign, Conversion.publisher, Conversion.currency,
        Conversion.advertiser_amount_minor, Conversion.publisher_amount_minor,
        Conversion.campaign.advertiser.as_alias("advertiser_id"),
    ).where(Conversion.status == status.value, Conversion.hold_until <= now, Conversion.id > after_id)
    if unreleased:
        query = query.where(Conversion.released_at.is_null())
    return await query.order_by(Conversion.id).limit(BATCH)


async def approve(conversion: dict[str, Any], now: datetime) -> bool | None:
    """Charge one conversion to its advertiser: True if this call did it, None if another run had,
    False (and nothing moved) if the advertiser's balance is short."""
    try:
        async with db.transaction():
            posted = await templates.approve_earning(
                advertiser_id=conversion["advertiser_id"], publisher_id=conversion["publisher"],
                price=conversion["advertiser_amount_minor"], payout=conversion["publisher_amount_minor"],
                currency=conversion["currency"], reference_type="conversion", reference_id=conversion["id"],
                key=f"conversion:{conversion['id']}:approved")
            changed = await Conversion.update({Conversion.status: ConversionStatus.approved.value,
                                               Conversion.approved_at: now, Conversion.status_reason: ""}).where(
                Conversion.id == conversion["id"], Conversion.status == ConversionStatus.pending.value
            ).returning(Conversion.id)
    except InsufficientFunds:
        return False
    return True if changed and not posted.replayed else None


async def release(conversion: dict[str, Any], now: datetime) -> bool:
    """The publisher's earning from an approved conversion becomes available. True if this call did it."""
    async with db.transaction():
        replayed = False
        if conversion["publisher_amount_minor"]:
            replayed = (await templates.release_earning(
                conversion["publisher"], conversion["publisher_amount_minor"], conversion["currency"],
                reference_type="conversion", reference_id=conversion["id"],
                key=f"conversion:{conversion['id']}:released")).replayed
        changed = await Conversion.update({Conversion.released_at: now}).where(
            Conversion.id == conversion["id"], Conversion.released_at.is_null()).returning(Conversion.id)
    return bool(changed) and not replayed


async def skip_if_raced(step, conversion: dict[str, Any], now: datetime) -> Any:
    """Another worker may post the same key at the same moment: its unique key wins, we move on."""
    try:
        return await step(conversion, now)
    except Exception as exc:
        if db.is_unique_violation(exc):
            log.info("conversion %s was reconciled by another worker", conversion["id"])
            return None
        raise


async def run(now: datetime | None = None) -> Outcome:
    """Approve every pending conversion whose hold has ended, then release approved earnings."""
    now = now or datetime.now(UTC)
    outcome = Outcome()
    unfunded_campaigns: set[int] = set()
    after = 0
    while batch := await _due(ConversionStatus.pending, now, after):
        after = batch[-1]["id"]
        for conversion in batch:
            if conversion["campaign"] in unfunded_campaigns:
                outcome.unfunded += 1
                continue
            result = await skip_if_raced(approve, conversion, now)
            if result is False:
                outcome.unfunded += 1
                unfunded_campaigns.add(conversion["campaign"])
            elif result:
                outcome.approved += 1
    for campaign_id in sorted(unfunded_campaigns):
        await Conversion.update({Conversion.status_reason: LOW_BALANCE}).where(
            Conversion.campaign == campaign_id, Conversion.status == ConversionStatus.pending.value,
            Conversion.hold_until <= now)
        if await campaigns.pause_for_balance(campaign_id):
            outcome.paused_campaigns.append(campaign_id)
    after = 0
    while batch := await _due(ConversionStatus.approved, now, after, unreleased=True):
        after = batch[-1]["id"]
        for conversion in batch:
            if await skip_if_raced(release, conversion, now):
                outcome.released += 1
    return outcome

