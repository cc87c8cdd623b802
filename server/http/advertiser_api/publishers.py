"""Advertisers' publishers and applications (/api/v1/advertiser/publishers, /applications) as the
campaign page shows and decides them (server/campaigns/service.py members_of, decide): a
publisher's public name and site only, never their e-mail address."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, Parameter

from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.campaigns.records import Applicant
from server.campaigns.tables import MembershipStatus
from server.core.errors import Conflict, Invalid, NotFound
from server.core.i18n import _
from server.http.advertiser_api.common import REUSED_KEY, advertiser, no_control_characters
from server.http.apikit import Cursor, CursorQuery, LimitQuery, page
from server.http.openapi import refusals
from server.http.web import POSTGRES_MAX_ID, requires_role

MemberStatus = Literal["applied", "approved", "declined", "invited", "removed"]


class MemberOut(msgspec.Struct):
    """A publisher's standing in one of your campaigns."""

    id: int  # the membership's (an application's id is its membership's)
    campaign_id: int
    publisher_id: int
    publisher_name: str  # their public name (their number when they gave none)
    publisher_site: str
    audience: str  # what they told about their readers
    status: MemberStatus
    note: str  # your note with the last decision
    created_at: datetime


class MemberPage(msgspec.Struct):
    items: list[MemberOut]
    next_cursor: str | None


class DeclineIn(msgspec.Struct):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""  # the publisher reads it


class InviteIn(msgspec.Struct):
    publisher_email: Annotated[str, msgspec.Meta(max_length=320)]


def _out(campaign_id: int, m: Applicant) -> MemberOut:
    return MemberOut(
        id=m.id,
        campaign_id=campaign_id,
        publisher_id=m.publisher_id,
        publisher_name=m.name,
        publisher_site=m.profile.blog_url if m.profile else "",
        audience=m.profile.audience if m.profile else "",
        status=m.status,  # type: ignore[arg-type]
        note=m.note,
        created_at=m.created_at,
    )


async def _members(
    request: Request, status: str | None, campaign_id: int | None, cursor: str | None, limit: int
) -> MemberPage:
    rows = await campaigns.members_of(
        advertiser(request),
        status=status,
        campaign_id=campaign_id,
        before_id=Cursor.decode(cursor),
        limit=limit + 1,
    )
    items, next_cursor = page([_out(c, m) for c, m in rows], limit)
    return MemberPage(items=items, next_cursor=next_cursor)


CampaignFilter = Annotated[
    int | None, Parameter(ge=1, le=POSTGRES_MAX_ID, description="Only this campaign's publishers")
]


class AdvertiserPublishersApi(Controller):
    path = "/api/v1/advertiser"
    guards = [requires_role(Role.advertiser)]
    tags = ["advertiser: publishers"]
    security = [{"apiKey": []}]

    @get(
        "/publishers",
        summary="The publishers of your campaigns, with their standing in each",
        description="One item per publisher and campaign (applied, approved, declined, invited or removed), newest "
        "first: their public name, site and audience, as the campaign page shows them; never an e-mail address.",
    )
    async def list_publishers(
        self,
        request: Request,
        status: Annotated[MemberStatus | None, Parameter(description="Only publishers in this standing")] = None,
        campaign_id: CampaignFilter = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> MemberPage:
        return await _members(request, status, campaign_id, cursor, limit)

    @get(
        "/applications",
        summary="Applications waiting for your answer, newest first",
        description="Publishers who applied to your approval campaigns; accept or decline each.",
    )
    async def list_applications(
        self,
        request: Request,
        campaign_id: CampaignFilter = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> MemberPage:
        return await _members(request, MembershipStatus.applied.value, campaign_id, cursor, limit)

    @post(
        "/applications/{membership_id:int}/accept",
        responses=refusals(REUSED_KEY),
        status_code=200,
        summary="Accept a publisher into your campaign",
        description="As the campaign page's Accept: the publisher gets their tracked link (it works at once) and "
        "is told. Accepting one accepted already changes nothing.",
    )
    async def accept(self, request: Request, membership_id: FromPath[int]) -> MemberOut:
        return await self._decide(request, membership_id, accept=True, note="")

    @post(
        "/applications/{membership_id:int}/decline",
        status_code=200,
        responses=refusals(REUSED_KEY, (Invalid, "The reason has control characters.")),
        summary="Decline an application (or remove an accepted publisher), with a reason they read",
        description="As the campaign page's Decline: an applicant is declined and told, with your reason; a "
        "publisher you had accepted is removed (their link stops earning).",
    )
    async def decline(self, request: Request, membership_id: FromPath[int], data: JSONBody[DeclineIn]) -> MemberOut:
        reason = no_control_characters(data.reason.strip(), "reason")
        return await self._decide(request, membership_id, accept=False, note=reason)

    @post(
        "/campaigns/{campaign_id:int}/invitations",
        status_code=201,
        responses=refusals(
            REUSED_KEY,
            (Invalid, "No publisher has that e-mail address, or it is not one."),
            (Conflict, "That publisher is already invited to or part of the campaign."),
        ),
        summary="Invite a publisher you know by their e-mail address",
        description="As the campaign page's Invite (how a private campaign gets publishers): they are told, and "
        "join by accepting. The answer names them by their public profile, as every list here does.",
    )
    async def invite(self, request: Request, campaign_id: FromPath[int], data: JSONBody[InviteIn]) -> MemberOut:
        user = advertiser(request)
        await campaigns.invite(user, campaign_id, data.publisher_email)
        rows = await campaigns.members_of(user, campaign_id=campaign_id, status=MembershipStatus.invited.value, limit=1)
        return _out(*rows[0])

    async def _decide(self, request: Request, membership_id: int, *, accept: bool, note: str) -> MemberOut:
        user = advertiser(request)
        await campaigns.decide(user, membership_id, accept, note)
        rows = await campaigns.members_of(user, membership_id=membership_id, limit=1)
        if not rows:
            raise NotFound(_("There is no such applicant."))
        return _out(*rows[0])
