"""The publisher's API under /api/v1/publisher (API keys): what the publisher pages do, through the
same services. The marketplace (same visibility rules), joining or applying, links with sub-IDs and
deep links, their clicks and conversions row by row, and their ad slots. Another publisher's
object answers 404, as one that does not exist."""

from __future__ import annotations

from litestar import Controller, Request, Router, get, post
from litestar.params import FromPath, JSONBody

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.ads import service as ads
from server.campaigns import creatives as creatives_service
from server.campaigns import marketplace
from server.campaigns import service as campaigns
from server.campaigns.tables import SUB_NAMES, MembershipStatus, PayoutModel
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.i18n import _
from server.http.apikit import BadCursor, Cursor, CursorQuery, LimitQuery, SinceQuery, UntilQuery, instant, page
from server.http.campaigns.marketplace_pages import base_link, build_link, membership_state
from server.http.openapi import refusals
from server.http.pages import settings_of
from server.http.publisher_api.schemas import (
    AdvertiserOut,
    CampaignOut,
    CampaignPage,
    CategoryFilter,
    ClickOut,
    ClickPage,
    ConversionOut,
    ConversionPage,
    GoalTerms,
    IdFilter,
    LinkIn,
    LinkOut,
    LinkPage,
    MembershipFilter,
    MembershipOut,
    MembershipParam,
    ModelFilter,
    ReasonFilter,
    SearchText,
    SlotIn,
    SlotOut,
    SlotPage,
    StatusFilter,
    Sub1Filter,
)
from server.http.web import current_user, requires_role
from server.reports import activity
from server.tracking import service as tracking
from server.tracking.classify import reason_label
from server.tracking.records import PublisherLink

_REUSED_KEY = (Conflict, "The Idempotency-Key was sent before with another request.")
_BAD_CURSOR = refusals((BadCursor, "The cursor is not one this API gave out."))
_BAD_PERIOD = refusals(
    (BadCursor, "The cursor is not one this API gave out."),
    (Invalid, "`since` or `until` is not a date or date-time."),
)


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted a publisher


def _keyset(rows: list, after_id: int | None) -> list:
    """Rows (any order) as one keyset page's candidates: id below the cursor's, by id descending."""
    kept = [r for r in rows if after_id is None or _id(r) < after_id]
    return sorted(kept, key=_id, reverse=True)


def _id(row: object) -> int:
    return row["id"] if isinstance(row, dict) else row.id  # type: ignore[attr-defined,index]


# --- campaigns -------------------------------------------------------------------------------------


def _goal(goal: dict, currency: str) -> GoalTerms:
    revshare = goal["payout_model"] == PayoutModel.revshare.value
    return GoalTerms(
        name=goal["name"],
        payout_model=goal["payout_model"],
        publisher_payout_minor=None if revshare else goal["publisher_amount"],
        publisher_share_bp=goal["publisher_amount"] if revshare else None,
        terms=campaigns.describe_goal(goal, currency, for_publisher=True),
    )


def _campaign(c: dict, creative_ids: list[int], can_join: bool) -> CampaignOut:
    membership = c.get("membership")
    advertiser = c.get("advertiser")
    return CampaignOut(
        id=c["id"],
        name=c["name"],
        description=c["description"],
        category=c["category"],
        category_label=str(campaigns.CATEGORIES.get(c["category"], c["category"])),
        currency=c["currency"],
        visibility=c["visibility"],
        goals=[_goal(g, c["currency"]) for g in c["goals"]],
        attribution_window_days=c["attribution_window_days"],
        hold_days=c["hold_days"],
        allowed_domains=c["allowed_domains"].split(),
        forwarded_subs=[s for s in SUB_NAMES if s in c["forward_subs"].split(",")],
        funded=c["funded"],
        membership_status=membership["status"] if membership else None,
        can_join=can_join and membership_state(c)["action"] == "join",
        advertiser=AdvertiserOut(advertiser.company_name, advertiser.website) if advertiser else None,
        creative_ids=creative_ids,
    )


async def _campaigns_out(user: CurrentUser, found: list[dict]) -> list[CampaignOut]:
    creatives = await creatives_service.active_creatives_of([c["id"] for c in found])
    can_join = True
    try:
        await campaigns.require_approved_publisher(user)
    except Forbidden:
        can_join = False
    return [_campaign(c, [cr["id"] for cr in creatives.get(c["id"], [])], can_join) for c in found]


def _membership_matches(campaign: dict, wanted: MembershipFilter) -> bool:
    membership = campaign.get("membership")
    if wanted is MembershipFilter.none:
        return membership is None
    return membership is not None and membership["status"] == wanted.value


class PublisherCampaignsApi(Controller):
    path = "/campaigns"
    tags = ["publisher: campaigns"]

    @get(
        "",
        summary="The marketplace: the campaigns this publisher may see and join, newest first",
        responses=_BAD_CURSOR,
    )
    async def list_campaigns(
        self,
        request: Request,
        q: SearchText = None,
        category: CategoryFilter = None,
        payout_model: ModelFilter = None,
        membership: MembershipParam = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> CampaignPage:
        """As the marketplace page: active campaigns whose advertiser can pay, private ones only
        once invited, and every campaign the publisher is in. `q` searches names and descriptions;
        `category`, `payout_model` (a goal of that model) and `membership` (the publisher's standing,
        `none` for campaigns not joined) narrow the list."""
        after_id = Cursor.decode(cursor)
        user = _user(request)
        found = await marketplace.listing(
            user,
            search=(q or "").strip()[:80],
            model=payout_model.value if payout_model else "",
            category=category.value if category else "",
        )
        if membership is not None:
            found = [c for c in found if _membership_matches(c, membership)]
        items, next_cursor = page(_keyset(found, after_id)[: limit + 1], limit)
        return CampaignPage(items=await _campaigns_out(user, items), next_cursor=next_cursor)

    @get("/{campaign_id:int}", summary="One campaign's terms, as the marketplace shows them")
    async def campaign(self, request: Request, campaign_id: FromPath[int]) -> CampaignOut:
        """Its goals with the publisher's payout, currency, attribution window, hold, the domains a
        deep link may go to, the publisher's membership and the ids of its active creatives. A
        campaign the publisher may not see is a 404."""
        user = _user(request)
        found = await marketplace.listing(user, campaign_id=campaign_id)
        if not found:
            raise NotFound(_("There is no such campaign."))
        return (await _campaigns_out(user, found))[0]

    @post(
        "/{campaign_id:int}/join",
        status_code=200,
        summary="Join an open campaign, apply to one that needs approval, or accept an invitation",
        responses=refusals(
            (Forbidden, "The publisher account is not approved yet (`publisher_not_approved`)."),
            (
                Conflict,
                "The campaign is not taking publishers now (paused, waiting for its advertiser's funds), "
                "or the advertiser declined this publisher; or the Idempotency-Key was sent with another request.",
            ),
        ),
    )
    async def join(self, request: Request, campaign_id: FromPath[int]) -> MembershipOut:
        """The same as the marketplace's Join button. Answers the membership: `approved` (the link
        is ready: `link_id`) or `applied` (the advertiser decides). Calling it again answers the
        same membership, unchanged."""
        user = _user(request)
        status = await marketplace.join(user, campaign_id)
        link_id = None
        if status == MembershipStatus.approved.value:
            link_id = (await tracking.link_for(user.id, campaign_id)).id
        return MembershipOut(campaign_id=campaign_id, status=status, link_id=link_id)


# --- links -----------------------------------------------------------------------------------------


def _link(row: PublisherLink, base_url: str, tracked_url: str | None = None) -> LinkOut:
    url = base_link(base_url, row.code)
    return LinkOut(
        id=row.id,
        code=row.code,
        campaign_id=row.campaign_id,
        campaign_name=row.campaign_name,
        campaign_status=row.campaign_status,
        membership_status=row.membership_status,
        url=url,
        tracked_url=tracked_url or url,
        allowed_domains=row.allowed_domains.split(),
    )


async def _own_link(user: CurrentUser, link_id: int) -> PublisherLink:
    link = next((row for row in await tracking.links_of(user.id) if row.id == link_id), None)
    if link is None:
        raise NotFound(_("There is no such link."))
    return link


class PublisherLinksApi(Controller):
    path = "/links"
    tags = ["publisher: links"]

    @post(
        "",
        status_code=201,
        summary="A tracked URL on the publisher's link in a campaign, with sub-IDs and a deep link",
        responses=refusals(
            (NotFound, "The publisher is not approved in that campaign (join it first)."),
            (Invalid, "A sub-ID or the deep link `url` is refused: `error.field` names it."),
            _REUSED_KEY,
        ),
    )
    async def create_link(self, request: Request, data: JSONBody[LinkIn]) -> LinkOut:
        """The link builder of the pages: each publisher has one link per campaign they joined
        (BASE_URL/c/<code>); this answers it with `tracked_url`, the link with the sub-IDs and deep
        link asked for, percent-encoded (`?sub1=…&url=…`). The deep link must be an http(s) address
        on one of the campaign's allowed domains or their subdomains (422 with `field` "url")."""
        user = _user(request)
        target = await tracking.link_for(user.id, data.campaign_id)
        base_url = settings_of(request).base_url
        form = {name: getattr(data, name) for name in (*SUB_NAMES, "url")}
        tracked_url = build_link(base_url, target.code, form, target.allowed_domains)
        return _link(await _own_link(user, target.id), base_url, tracked_url)

    @get("", summary="The publisher's links, newest first", responses=_BAD_CURSOR)
    async def list_links(
        self, request: Request, campaign_id: IdFilter = None, cursor: CursorQuery = None, limit: LimitQuery = 50
    ) -> LinkPage:
        after_id = Cursor.decode(cursor)
        rows = [
            r for r in await tracking.links_of(_user(request).id) if campaign_id is None or r.campaign_id == campaign_id
        ]
        items, next_cursor = page(_keyset(rows, after_id)[: limit + 1], limit)
        base_url = settings_of(request).base_url
        return LinkPage(items=[_link(r, base_url) for r in items], next_cursor=next_cursor)

    @get("/{link_id:int}", summary="One of the publisher's links")
    async def link(self, request: Request, link_id: FromPath[int]) -> LinkOut:
        return _link(await _own_link(_user(request), link_id), settings_of(request).base_url)


# --- clicks and conversions ------------------------------------------------------------------------


class PublisherTrafficApi(Controller):
    path = "/"
    tags = ["publisher: traffic"]

    @get(
        "/clicks",
        summary="The publisher's clicks, newest first, each with why it is or is not billed",
        responses=_BAD_PERIOD,
    )
    async def clicks(
        self,
        request: Request,
        since: SinceQuery = None,
        until: UntilQuery = None,
        campaign_id: IdFilter = None,
        link_id: IdFilter = None,
        reason: ReasonFilter = None,
        sub1: Sub1Filter = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> ClickPage:
        """`reason`: valid, or a reason a click is not billed (duplicate, bot, …). `sub1` matches
        exactly. No IP address is ever stored; the visitor is not identified."""
        after_id = Cursor.decode(cursor)
        rows = await activity.clicks_of(
            _user(request).id,
            limit=limit + 1,
            before_id=after_id,
            since=instant(since, "since"),
            until=instant(until, "until", end=True),
            campaign_id=campaign_id,
            link_id=link_id,
            reason=reason.value if reason else None,
            sub1=sub1,
        )
        items, next_cursor = page(rows, limit)
        return ClickPage(
            items=[
                ClickOut(
                    id=c.id,
                    click_id=c.click_id,
                    clicked_at=c.clicked_at,
                    campaign_id=c.campaign_id,
                    link_id=c.link_id,
                    slot_id=c.slot_id,
                    sub1=c.sub1,
                    sub2=c.sub2,
                    sub3=c.sub3,
                    sub4=c.sub4,
                    sub5=c.sub5,
                    reason=c.reason,
                    reason_text=reason_label(c.reason),
                    referrer_host=c.referrer_host,
                    ua_family=c.ua_family,
                    country=c.country,
                )
                for c in items
            ],
            next_cursor=next_cursor,
        )

    @get("/conversions", summary="The publisher's conversions, newest first, with their payout", responses=_BAD_PERIOD)
    async def conversions(
        self,
        request: Request,
        since: SinceQuery = None,
        until: UntilQuery = None,
        status: StatusFilter = None,
        campaign_id: IdFilter = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> ConversionPage:
        """What /publisher/conversions shows, with the sub-IDs of the click each came from:
        `since`/`until` bound when it converted. Amounts are what the publisher earns."""
        after_id = Cursor.decode(cursor)
        rows = await activity.conversions_page(
            _user(request).id,
            limit=limit + 1,
            before_id=after_id,
            since=instant(since, "since"),
            until=instant(until, "until", end=True),
            status=status.value if status else None,
            campaign_id=campaign_id,
        )
        items, next_cursor = page(rows, limit)
        return ConversionPage(
            items=[
                ConversionOut(
                    id=c.id,
                    campaign_id=c.campaign_id,
                    campaign_name=c.campaign_name,
                    goal_name=c.goal_name,
                    currency=c.currency,
                    payout_minor=c.payout_minor,
                    status=c.status,
                    status_reason=c.status_reason,
                    source=c.source,
                    click_id=c.click_id,
                    clicked_at=c.clicked_at,
                    converted_at=c.converted_at,
                    hold_until=c.hold_until,
                    **c.subs,
                )
                for c in items
            ],
            next_cursor=next_cursor,
        )


# --- ad slots --------------------------------------------------------------------------------------


def _slot(slot: dict, base_url: str) -> SlotOut:
    return SlotOut(
        id=slot["id"],
        name=slot["name"],
        format=slot["format"],
        status=slot["status"],
        domains=slot["domains"].split(),
        fallback=slot["fallback"],
        public_key=slot["public_key"],
        snippet=ads.snippet(base_url, slot),
    )


class PublisherSlotsApi(Controller):
    path = "/slots"
    tags = ["publisher: ad slots"]

    @get("", summary="The publisher's ad slots with the snippet to paste, newest first", responses=_BAD_CURSOR)
    async def list_slots(self, request: Request, cursor: CursorQuery = None, limit: LimitQuery = 50) -> SlotPage:
        after_id = Cursor.decode(cursor)
        rows = [
            {
                "id": s.id,
                "name": s.name,
                "format": s.format,
                "status": s.status,
                "domains": s.domains,
                "fallback": s.fallback,
                "public_key": s.public_key,
            }
            for s in await ads.slots_of(_user(request))
        ]
        items, next_cursor = page(_keyset(rows, after_id)[: limit + 1], limit)
        base_url = settings_of(request).base_url
        return SlotPage(items=[_slot(s, base_url) for s in items], next_cursor=next_cursor)

    @get("/{slot_id:int}", summary="One of the publisher's ad slots with its snippet")
    async def slot(self, request: Request, slot_id: FromPath[int]) -> SlotOut:
        return _slot(await ads.owned_slot(_user(request), slot_id), settings_of(request).base_url)

    @post(
        "",
        status_code=201,
        summary="Create an ad slot, as the New slot page does",
        responses=refusals((Invalid, "A value is refused: `error.field` names it."), _REUSED_KEY),
    )
    async def create_slot(self, request: Request, data: JSONBody[SlotIn]) -> SlotOut:
        """`domains`: the sites that will show it (host names). `fallback`: `collapse` (hide it),
        `house` (`house_text` and `house_url` needed) or `html` (`fallback_html`, shown sandboxed)."""
        user = _user(request)
        form = {
            "name": data.name,
            "format": data.format.value,
            "domains": "\n".join(data.domains),
            "fallback": data.fallback.value,
            "house_text": data.house_text,
            "house_url": data.house_url,
            "fallback_html": data.fallback_html,
        }
        slot_id = await ads.create_slot(user, form, loopback_allowed=not settings_of(request).production)
        return _slot(await ads.owned_slot(user, slot_id), settings_of(request).base_url)


# server/app.py registers this one name.
PublisherApi = Router(
    path="/api/v1/publisher",
    guards=[requires_role(Role.publisher)],
    security=[{"apiKey": []}],
    route_handlers=[PublisherCampaignsApi, PublisherLinksApi, PublisherTrafficApi, PublisherSlotsApi],
)
