"""JSON API of the review queue under /api/v1 (API keys): held conversions with their evidence
(an advertiser: their campaigns'; finance and admins: every campaign's), held publishers (finance and
admins), and releasing or rejecting either with a reason. The same services as the pages
(server/conversions/flags.py, server/conversions/holds.py), so the same rules and audit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.conversions import flags, holds
from server.core.errors import Conflict, NotFound
from server.http.openapi import refusals
from server.http.web import current_user, requires_role

# A reason with something in it (the publisher sees it): schema-valid means accepted.
Reason = Annotated[str, msgspec.Meta(max_length=500, pattern=r"\S")]


class FlagOut(msgspec.Struct):
    rule: str  # too_fast, rate_anomaly, self_conversion
    text: str
    evidence: dict[str, Any]  # the rule's figures and the thresholds it compared
    created_at: datetime


class HeldConversionOut(msgspec.Struct):
    id: int
    campaign_id: int
    campaign_name: str
    goal_name: str
    publisher_id: int
    publisher_name: str  # their public name: nobody reviewing a conversion reads a publisher's e-mail address
    publisher_site: str
    txn_id: str
    source: str
    currency: str
    price_minor: int
    publisher_minor: int
    clicked_at: datetime
    converted_at: datetime
    elapsed_seconds: int
    visitor_hash_prefix: str  # "" while the click row is not stored
    publisher_conversions_today: int
    publisher_daily_mean_14d: str  # to the hundredth, as text
    flags: list[FlagOut]


class HeldConversions(msgspec.Struct):
    held: list[HeldConversionOut]  # oldest first, at most 200


class HeldPublisherOut(msgspec.Struct):
    id: int  # the hold's
    publisher_id: int
    publisher_email: str
    rule: str  # shared_payout_account
    text: str
    evidence: dict[str, Any]
    created_at: datetime
    pending_conversions: int
    pending_publisher_minor: dict[str, int]  # by currency


class HeldPublishers(msgspec.Struct):
    held: list[HeldPublisherOut]


class ReleaseIn(msgspec.Struct):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class RejectIn(msgspec.Struct):
    reason: Reason


class Decided(msgspec.Struct):
    id: int
    decision: Literal["released", "rejected"]
    rejected_conversions: int = 0  # a publisher's pending conversions rejected with it


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted a reviewer


_DECIDE = refusals(
    (NotFound, "No such held item, or one of another advertiser's campaigns."),
    (Conflict, "Decided already: it is no longer held."),
)


class ConversionReviewApi(Controller):
    path = "/api/v1/review/conversions"
    guards = [requires_role(Role.advertiser, Role.finance)]  # API keys: no admin keys exist
    tags = ["review"]
    security = [{"apiKey": []}]

    @get("", summary="Held conversions with their rules, evidence and the click's timeline")
    async def queue(self, request: Request) -> HeldConversions:
        return HeldConversions(
            held=[
                HeldConversionOut(
                    id=c.id,
                    campaign_id=c.campaign_id,
                    campaign_name=c.campaign_name,
                    goal_name=c.goal_name,
                    publisher_id=c.publisher_id,
                    publisher_name=c.publisher_name,
                    publisher_site=c.publisher_site,
                    txn_id=c.txn_id,
                    source=c.source,
                    currency=c.currency,
                    price_minor=c.advertiser_amount_minor,
                    publisher_minor=c.publisher_amount_minor,
                    clicked_at=c.clicked_at,
                    converted_at=c.converted_at,
                    elapsed_seconds=c.elapsed_seconds,
                    visitor_hash_prefix=c.visitor_hash_prefix,
                    publisher_conversions_today=c.publisher_today,
                    publisher_daily_mean_14d=str(c.publisher_daily_mean),
                    flags=[FlagOut(f.rule, f.text, f.evidence, f.created_at) for f in c.flags],
                )
                for c in await flags.queue(_user(request))
            ]
        )

    @post(
        "/{conversion_id:int}/release",
        status_code=200,
        responses=_DECIDE,
        summary="Release a held conversion: back to the ordinary approval flow",
    )
    async def release(self, request: Request, conversion_id: FromPath[int], data: JSONBody[ReleaseIn]) -> Decided:
        await flags.release(_user(request), conversion_id, data.reason)
        return Decided(id=conversion_id, decision="released")

    @post(
        "/{conversion_id:int}/reject",
        status_code=200,
        responses=_DECIDE,
        summary="Reject a held conversion with a reason its publisher sees (nothing was charged)",
    )
    async def reject(self, request: Request, conversion_id: FromPath[int], data: JSONBody[RejectIn]) -> Decided:
        await flags.reject(_user(request), conversion_id, data.reason)
        return Decided(id=conversion_id, decision="rejected")


class PublisherReviewApi(Controller):
    path = "/api/v1/finance/review/publishers"
    guards = [requires_role(Role.finance)]  # API keys: no admin keys exist
    tags = ["review"]
    security = [{"apiKey": []}]

    @get("", summary="Held publishers (none of their conversions approved, no payout) with the evidence")
    async def queue(self, request: Request) -> HeldPublishers:
        return HeldPublishers(
            held=[
                HeldPublisherOut(
                    id=p.id,
                    publisher_id=p.publisher_id,
                    publisher_email=p.publisher_email,
                    rule=p.rule,
                    text=p.text,
                    evidence=p.evidence,
                    created_at=p.created_at,
                    pending_conversions=p.pending_conversions,
                    pending_publisher_minor=p.pending_payout_minor,
                )
                for p in await holds.queue(_user(request))
            ]
        )

    @post("/{hold_id:int}/release", status_code=200, responses=_DECIDE, summary="Release a held publisher")
    async def release(self, request: Request, hold_id: FromPath[int], data: JSONBody[ReleaseIn]) -> Decided:
        await holds.release(_user(request), hold_id, data.reason)
        return Decided(id=hold_id, decision="released")

    @post(
        "/{hold_id:int}/reject",
        status_code=200,
        responses=_DECIDE,
        summary="Reject a held publisher: their pending conversions are rejected with the reason",
    )
    async def reject(self, request: Request, hold_id: FromPath[int], data: JSONBody[RejectIn]) -> Decided:
        rejected = await holds.reject(_user(request), hold_id, data.reason)
        return Decided(id=hold_id, decision="rejected", rejected_conversions=rejected)
