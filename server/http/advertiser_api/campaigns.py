"""Advertisers' campaigns, goals and creatives by API key (/api/v1/advertiser): what the campaign
pages do (server/http/campaigns/pages.py), through the same services and the same validation.

A JSON body is turned into the form the page would have sent (amounts written back as the page
writes them, money.form_text; revshare shares as percentages) and validated by
server/campaigns/service.py; a refusal names the JSON field. Amounts are integers: minor units of
the campaign's currency (`price_minor`, `payout_minor`), basis points of the sale for revshare
(`price_bp`, `payout_bp`); a float is refused before anything runs."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import FromPath, JSONBody, Parameter
from msgspec import UNSET, UnsetType

from server.accounts.tables import Role
from server.campaigns import creatives
from server.campaigns import service as campaigns
from server.campaigns.tables import SUB_NAMES, PayoutModel
from server.core import money
from server.core.errors import Conflict, Invalid, NotFound
from server.core.i18n import _
from server.http.advertiser_api.common import REUSED_KEY, BasisPoints, Minor, advertiser, as_sent
from server.http.apikit import Cursor, CursorQuery, LimitQuery, page
from server.http.campaigns.pages import form_of
from server.http.openapi import refusals
from server.http.pages import settings_of
from server.http.web import requires_role

Model = Literal["cpc", "cpm", "cpl", "cpa", "revshare"]
Sub = Literal["sub1", "sub2", "sub3", "sub4", "sub5"]
Cap = Annotated[int, msgspec.Meta(ge=1, le=10**9)]
Days = Annotated[int, msgspec.Meta(ge=1, le=365)]
GoalName = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Text120 = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
Url = Annotated[str, msgspec.Meta(max_length=2048)]
Category = Literal["fashion", "finance", "food", "home", "software", "travel", "health", "education", "games", "other"]
Visibility = Literal["public", "approval", "private"]
CAP_NAMES = (
    "cap_clicks_daily",
    "cap_conversions_daily",
    "cap_conversions_monthly",
    "cap_publisher_clicks_daily",
    "cap_publisher_conversions_daily",
    "cap_publisher_conversions_monthly",
)


# --- what is sent ------------------------------------------------------------------------------


class GoalIn(msgspec.Struct):
    """What the advertiser pays for. Flat models (cpc, cpm per thousand impressions, cpl, cpa) take
    `price_minor` (and optionally `payout_minor`); revshare takes `price_bp` (and `payout_bp`).
    Without a payout, the publisher earns the price less the network's margin."""

    name: GoalName
    payout_model: Model
    price_minor: Minor | None = None
    payout_minor: Minor | None = None
    price_bp: BasisPoints | None = None
    payout_bp: BasisPoints | None = None
    conversions_per_click: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1  # cpl, cpa, revshare
    max_sale_minor: Minor | None = None  # revshare: the largest sale a report may carry (default 10,000 major units)


class GoalPatch(msgspec.Struct):
    """A goal's new terms: only the fields sent change."""

    name: GoalName | UnsetType = UNSET
    payout_model: Model | UnsetType = UNSET
    price_minor: Minor | None | UnsetType = UNSET
    payout_minor: Minor | None | UnsetType = UNSET
    price_bp: BasisPoints | None | UnsetType = UNSET
    payout_bp: BasisPoints | None | UnsetType = UNSET
    conversions_per_click: Annotated[int, msgspec.Meta(ge=1, le=100)] | UnsetType = UNSET
    max_sale_minor: Minor | None | UnsetType = UNSET


class CampaignIn(msgspec.Struct):
    """A new campaign, as the campaign form takes it. The landing URL (and deep links) must be on
    `allowed_domains`; the currency is fixed once the campaign exists."""

    name: Text120
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    landing_url: Url
    allowed_domains: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    goals: Annotated[list[GoalIn], msgspec.Meta(min_length=1, max_length=campaigns.MAX_GOALS)]
    description: Annotated[str, msgspec.Meta(max_length=5000)] = ""
    category: Category = "other"
    fallback_url: Url = ""
    visibility: Visibility = "public"
    total_budget_minor: Minor | None = None
    daily_budget_minor: Minor | None = None
    cap_clicks_daily: Cap | None = None
    cap_conversions_daily: Cap | None = None
    cap_conversions_monthly: Cap | None = None
    cap_publisher_clicks_daily: Cap | None = None
    cap_publisher_conversions_daily: Cap | None = None
    cap_publisher_conversions_monthly: Cap | None = None
    attribution_window_days: Days = 30
    hold_days: Annotated[int, msgspec.Meta(gt=-1, le=365)] = 30
    min_conversion_seconds: Annotated[int, msgspec.Meta(gt=-1, le=86400 * 30)] = 0
    click_id_param: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] = "click_id"
    forward_subs: Annotated[list[Sub], msgspec.Meta(max_length=5)] = []
    pixel_enabled: bool = True


class CampaignPatch(msgspec.Struct):
    """New terms for a campaign: only the fields sent change (null clears a budget or a cap). The
    currency cannot change; goals change through /goals."""

    name: Text120 | UnsetType = UNSET
    landing_url: Url | UnsetType = UNSET
    allowed_domains: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)] | UnsetType = UNSET
    description: Annotated[str, msgspec.Meta(max_length=5000)] | UnsetType = UNSET
    category: Category | UnsetType = UNSET
    fallback_url: Url | UnsetType = UNSET
    visibility: Visibility | UnsetType = UNSET
    total_budget_minor: Minor | None | UnsetType = UNSET
    daily_budget_minor: Minor | None | UnsetType = UNSET
    cap_clicks_daily: Cap | None | UnsetType = UNSET
    cap_conversions_daily: Cap | None | UnsetType = UNSET
    cap_conversions_monthly: Cap | None | UnsetType = UNSET
    cap_publisher_clicks_daily: Cap | None | UnsetType = UNSET
    cap_publisher_conversions_daily: Cap | None | UnsetType = UNSET
    cap_publisher_conversions_monthly: Cap | None | UnsetType = UNSET
    attribution_window_days: Days | UnsetType = UNSET
    hold_days: Annotated[int, msgspec.Meta(gt=-1, le=365)] | UnsetType = UNSET
    min_conversion_seconds: Annotated[int, msgspec.Meta(gt=-1, le=86400 * 30)] | UnsetType = UNSET
    click_id_param: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] | UnsetType
    ) = UNSET
    forward_subs: Annotated[list[Sub], msgspec.Meta(max_length=5)] | UnsetType = UNSET
    pixel_enabled: bool | UnsetType = UNSET


class CreativeIn(msgspec.Struct):
    """A text link (`kind` text, with `text`) or an image banner (`kind` image, with the file's bytes
    in `image_base64`: PNG, JPEG, GIF or WebP, at most the upload limit the campaign page states,
    512 KB by default)."""

    kind: Literal["text", "image"]
    name: Text120
    text: Annotated[str, msgspec.Meta(max_length=creatives.TEXT_MAX)] | None = None
    image_base64: str | None = None


class EndIn(msgspec.Struct):
    confirm: bool  # true: I understand this cannot be undone


# --- what is answered --------------------------------------------------------------------------


class GoalOut(msgspec.Struct):
    id: int
    campaign_id: int
    position: int
    name: str
    payout_model: Model
    price_minor: int | None  # flat models: what the advertiser pays per event (per 1,000 impressions for cpm)
    payout_minor: int | None  # flat models: what the publisher earns
    price_bp: int | None  # revshare: the advertiser's share of the sale, in basis points
    payout_bp: int | None  # revshare: the publisher's
    conversions_per_click: int
    max_sale_minor: int | None
    terms: str  # in words, as the campaign page shows them


class CampaignOut(msgspec.Struct):
    id: int
    name: str
    description: str
    category: str
    currency: str
    status: Literal["active", "paused", "ended"]
    status_reason: str  # why affnet paused it, when it did
    visibility: Visibility
    landing_url: str
    fallback_url: str
    allowed_domains: list[str]
    total_budget_minor: int | None
    daily_budget_minor: int | None
    cap_clicks_daily: int | None
    cap_conversions_daily: int | None
    cap_conversions_monthly: int | None
    cap_publisher_clicks_daily: int | None
    cap_publisher_conversions_daily: int | None
    cap_publisher_conversions_monthly: int | None
    attribution_window_days: int
    hold_days: int
    min_conversion_seconds: int
    click_id_param: str
    forward_subs: list[str]
    pixel_enabled: bool
    created_at: datetime
    updated_at: datetime
    goals: list[GoalOut]


class CampaignListItem(msgspec.Struct):
    id: int
    name: str
    status: Literal["active", "paused", "ended"]
    currency: str
    visibility: Visibility
    created_at: datetime
    funded: bool  # the balance in its currency is above zero: publishers are offered it
    has_creatives: bool
    waiting_applications: int


class CampaignPage(msgspec.Struct):
    items: list[CampaignListItem]
    next_cursor: str | None


class GoalList(msgspec.Struct):
    items: list[GoalOut]  # by position


class CreativeOut(msgspec.Struct):
    id: int
    campaign_id: int
    kind: Literal["text", "image"]
    name: str
    text: str
    url: str  # the image's address on this server ("" for text)
    mime_type: str
    width: int
    height: int
    iab_size: str  # e.g. "300x250" when the banner is an IAB standard unit
    byte_size: int
    archived: bool
    created_at: datetime


class CreativePage(msgspec.Struct):
    items: list[CreativeOut]
    next_cursor: str | None


# --- JSON <-> the pages' form -------------------------------------------------------------------


def _amount(value: int | None, currency: str) -> str:
    return "" if value is None else money.form_text(value, currency)


def _goal_fields(goal: GoalIn | dict[str, Any], n: int, currency: str, prefix: str) -> tuple[dict, dict]:
    """One goal as the form's goal_N_* fields, and those fields' JSON names."""
    get = goal.get if isinstance(goal, dict) else lambda k, d=None: getattr(goal, k, d)
    model = get("payout_model")
    revshare = model == PayoutModel.revshare.value
    used, unused = ("price_bp", "payout_bp") if revshare else ("price_minor", "payout_minor")
    for wrong in ("price_minor", "payout_minor") if revshare else ("price_bp", "payout_bp"):
        if get(wrong) is not None:
            raise Invalid(
                _("A %(model)s goal takes %(right)s, not %(wrong)s.", model=model, right=used, wrong=wrong),
                field=f"{prefix}{wrong}",
            )
    price, payout = get(used), get(unused)
    if price is None:
        raise Invalid(_("Give %(name)s for a %(model)s goal.", name=used, model=model), field=f"{prefix}{used}")
    write = money.percent_text if revshare else (lambda v: money.form_text(v, currency))
    form = {
        f"goal_{n}_name": get("name"),
        f"goal_{n}_model": model,
        f"goal_{n}_advertiser": write(price),
        f"goal_{n}_publisher": "" if payout is None else write(payout),
        f"goal_{n}_per_click": str(get("conversions_per_click") or 1),
        f"goal_{n}_max_sale": _amount(get("max_sale_minor"), currency),
    }
    names = {
        f"goal_{n}_name": f"{prefix}name",
        f"goal_{n}_model": f"{prefix}payout_model",
        f"goal_{n}_advertiser": f"{prefix}{used}",
        f"goal_{n}_publisher": f"{prefix}{unused}",
        f"goal_{n}_per_click": f"{prefix}conversions_per_click",
        f"goal_{n}_max_sale": f"{prefix}max_sale_minor",
    }
    return form, names


_TERM_NAMES = {
    "total_budget": "total_budget_minor",
    "daily_budget": "daily_budget_minor",
    "pixel": "pixel_enabled",
    **{f"forward_{s}": "forward_subs" for s in SUB_NAMES},
}


def _terms_form(values: dict[str, Any], currency: str) -> dict[str, str]:
    """Campaign fields sent (JSON names) as the form's fields."""
    form: dict[str, str] = {}
    for key, value in values.items():
        if key in ("total_budget_minor", "daily_budget_minor"):
            form[key.removesuffix("_minor")] = _amount(value, currency)
        elif key == "allowed_domains":
            form[key] = "\n".join(value)
        elif key == "pixel_enabled":
            form["pixel"] = "on" if value else "off"
        elif key == "forward_subs":
            for sub in SUB_NAMES:
                form.pop(f"forward_{sub}", None)
                if sub in value:
                    form[f"forward_{sub}"] = "on"
        elif key == "goals":
            continue
        else:
            form[key] = "" if value is None else str(value)
    return form


def _sent(struct: msgspec.Struct) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(struct).items() if v is not UNSET}


def _goal_out(goal: dict[str, Any], currency: str) -> GoalOut:
    revshare = goal["payout_model"] == PayoutModel.revshare.value
    return GoalOut(
        id=goal["id"],
        campaign_id=goal["campaign"],
        position=goal["position"],
        name=goal["name"],
        payout_model=goal["payout_model"],
        price_minor=None if revshare else goal["advertiser_amount"],
        payout_minor=None if revshare else goal["publisher_amount"],
        price_bp=goal["advertiser_amount"] if revshare else None,
        payout_bp=goal["publisher_amount"] if revshare else None,
        conversions_per_click=goal["conversions_per_click"],
        max_sale_minor=goal["max_sale_minor"],
        terms=campaigns.describe_goal(goal, currency, for_publisher=False),
    )


async def campaign_out(campaign: dict[str, Any]) -> CampaignOut:
    currency = campaign["currency"]
    return CampaignOut(
        **{k: campaign[k] for k in ("id", "name", "description", "category", "currency", "status", "status_reason")},
        **{k: campaign[k] for k in ("visibility", "landing_url", "fallback_url")},
        allowed_domains=[d for d in campaign["allowed_domains"].split("\n") if d],
        **{k: campaign[k] for k in ("total_budget_minor", "daily_budget_minor", *CAP_NAMES)},
        **{k: campaign[k] for k in ("attribution_window_days", "hold_days", "min_conversion_seconds")},
        click_id_param=campaign["click_id_param"],
        forward_subs=[s for s in campaign["forward_subs"].split(",") if s],
        pixel_enabled=campaign["pixel_enabled"],
        created_at=campaign["created_at"],
        updated_at=campaign["updated_at"],
        goals=[_goal_out(g, currency) for g in await campaigns.goals_of(campaign["id"])],
    )


def _creative_out(row: dict[str, Any]) -> CreativeOut:
    return CreativeOut(
        **{
            k: row[k]
            for k in ("id", "kind", "name", "text", "url", "mime_type", "width", "height", "iab_size", "byte_size")
        },
        campaign_id=row["campaign"],
        archived=row["archived"],
        created_at=row["created_at"],
    )


_EDIT = refusals(
    REUSED_KEY,
    (Invalid, "A value was read but refused: `error.field` names the JSON field and `error.message` says why."),
    (Conflict, "The campaign has ended and can no longer be changed."),
)


class AdvertiserCampaignsApi(Controller):
    path = "/api/v1/advertiser"
    guards = [requires_role(Role.advertiser)]
    tags = ["advertiser: campaigns"]
    security = [{"apiKey": []}]

    # --- campaigns ---

    @get(
        "/campaigns",
        summary="Your campaigns, newest first",
        description="With what still stands between each and publishers: money in its currency, creatives, "
        "and applications waiting for your answer.",
    )
    async def list_campaigns(
        self,
        request: Request,
        status: Annotated[
            Literal["active", "paused", "ended"] | None, Parameter(description="Only campaigns in this status")
        ] = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> CampaignPage:
        after = Cursor.decode(cursor)
        rows = [
            s
            for s in await campaigns.summaries(advertiser(request))
            if (status is None or s.campaign.status == status) and (after is None or s.campaign.id < after)
        ]
        items, next_cursor = page(
            [
                CampaignListItem(
                    id=s.campaign.id,
                    name=s.campaign.name,
                    status=s.campaign.status,  # type: ignore[arg-type]
                    currency=s.campaign.currency,
                    visibility=s.campaign.visibility,  # type: ignore[arg-type]
                    created_at=s.campaign.created_at,
                    funded=s.funded,
                    has_creatives=s.has_creatives,
                    waiting_applications=s.waiting,
                )
                for s in rows[: limit + 1]
            ],
            limit,
        )
        return CampaignPage(items=items, next_cursor=next_cursor)

    @post(
        "/campaigns",
        status_code=201,
        responses=refusals(
            REUSED_KEY,
            (Invalid, "A value was read but refused: `error.field` names the JSON field and `error.message` says why."),
        ),
        summary="Create a campaign",
        description="The same terms and checks as the new-campaign page. Amounts are integers in minor units of "
        "`currency` (`price_minor: 1250` is 12.50 EUR), revshare shares in basis points (`price_bp: 750` is 7.5 %). "
        "The campaign starts active; publishers are offered it once your balance in its currency is above zero.",
    )
    async def create_campaign(self, request: Request, data: JSONBody[CampaignIn]) -> CampaignOut:
        currency = money.currency(data.currency)
        form = _terms_form(_sent(data), currency)
        form["currency"] = currency
        names = dict(_TERM_NAMES)
        for n, goal in enumerate(data.goals):
            goal_form, goal_names = _goal_fields(goal, n, currency, f"goals[{n}].")
            form.update(goal_form)
            names.update(goal_names)
        user = advertiser(request)
        campaign_id = await as_sent(campaigns.create_campaign(user, form), names)
        return await campaign_out(await campaigns.owned_campaign(user, campaign_id))

    @get("/campaigns/{campaign_id:int}", summary="One of your campaigns, with its goals")
    async def show_campaign(self, request: Request, campaign_id: FromPath[int]) -> CampaignOut:
        return await campaign_out(await campaigns.owned_campaign(advertiser(request), campaign_id))

    @patch(
        "/campaigns/{campaign_id:int}",
        responses=_EDIT,
        summary="Change a campaign's terms",
        description="What the edit page can change: only the fields sent change, and the result is checked as the "
        "page checks it. The currency is fixed; goals change through /goals.",
    )
    async def update_campaign(
        self, request: Request, campaign_id: FromPath[int], data: JSONBody[CampaignPatch]
    ) -> CampaignOut:
        user = advertiser(request)
        current = await campaigns.owned_campaign(user, campaign_id)
        form = form_of(current, await campaigns.goals_of(campaign_id))
        form.update(_terms_form(_sent(data), current["currency"]))
        await as_sent(campaigns.update_campaign(user, campaign_id, form), _TERM_NAMES)
        return await campaign_out(await campaigns.owned_campaign(user, campaign_id))

    @post(
        "/campaigns/{campaign_id:int}/pause",
        status_code=200,
        responses=refusals(REUSED_KEY, (Conflict, "Only an active campaign pauses.")),
        summary="Pause a campaign",
        description="Its links send visitors to its fallback URL at once (clicks recorded as campaign_paused).",
    )
    async def pause(self, request: Request, campaign_id: FromPath[int]) -> CampaignOut:
        return await self._status(request, campaign_id, "pause")

    @post(
        "/campaigns/{campaign_id:int}/resume",
        status_code=200,
        responses=refusals(REUSED_KEY, (Conflict, "Only a paused campaign resumes.")),
        summary="Resume a paused campaign",
    )
    async def resume(self, request: Request, campaign_id: FromPath[int]) -> CampaignOut:
        return await self._status(request, campaign_id, "resume")

    @post(
        "/campaigns/{campaign_id:int}/end",
        status_code=200,
        responses=refusals(
            REUSED_KEY,
            (Invalid, "`confirm` is not true: ending cannot be undone."),
            (Conflict, "The campaign has ended already."),
        ),
        summary="End a campaign for good",
        description="As the campaign page's End: it takes no more traffic or conversions and can no longer be "
        'edited or resumed. Send `{"confirm": true}`.',
    )
    async def end(self, request: Request, campaign_id: FromPath[int], data: JSONBody[EndIn]) -> CampaignOut:
        if data.confirm is not True:
            raise Invalid(_("Send “confirm”: true to end the campaign: it cannot be undone."), field="confirm")
        return await self._status(request, campaign_id, "end")

    async def _status(self, request: Request, campaign_id: int, action: str) -> CampaignOut:
        user = advertiser(request)
        await campaigns.change_status(user, campaign_id, action)
        return await campaign_out(await campaigns.owned_campaign(user, campaign_id))

    # --- goals ---

    @get("/campaigns/{campaign_id:int}/goals", summary="A campaign's goals: what you pay for, by position")
    async def list_goals(self, request: Request, campaign_id: FromPath[int]) -> GoalList:
        campaign = await campaigns.owned_campaign(advertiser(request), campaign_id)
        return GoalList(items=[_goal_out(g, campaign["currency"]) for g in await campaigns.goals_of(campaign_id)])

    @post(
        "/campaigns/{campaign_id:int}/goals",
        status_code=201,
        responses=refusals(
            REUSED_KEY,
            (Invalid, "A value was read but refused: `error.field` names the JSON field and `error.message` says why."),
            (Conflict, "The campaign has ended, or has the most goals a campaign may have (5)."),
        ),
        summary="Add a goal to a campaign",
        description="As a new goal row on the edit page. Goals are never deleted (conversions refer to them).",
    )
    async def add_goal(self, request: Request, campaign_id: FromPath[int], data: JSONBody[GoalIn]) -> GoalOut:
        user = advertiser(request)
        current = await campaigns.owned_campaign(user, campaign_id)
        goals = await campaigns.goals_of(campaign_id)
        free = [n for n in range(campaigns.MAX_GOALS) if n not in {g["position"] for g in goals}]
        if not free:
            raise Conflict(_("A campaign has at most %(num)s goals.", num=campaigns.MAX_GOALS))
        form = form_of(current, goals)
        goal_form, names = _goal_fields(data, free[0], current["currency"], "")
        form.update(goal_form)
        await as_sent(campaigns.update_campaign(user, campaign_id, form), names)
        [added] = [g for g in await campaigns.goals_of(campaign_id) if g["position"] == free[0]]
        return _goal_out(added, current["currency"])

    @patch(
        "/goals/{goal_id:int}",
        responses=_EDIT,
        summary="Change a goal's terms",
        description="Only the fields sent change; the goal is checked as the edit page checks it. New terms apply "
        "to conversions recorded from now on.",
    )
    async def update_goal(self, request: Request, goal_id: FromPath[int], data: JSONBody[GoalPatch]) -> GoalOut:
        user = advertiser(request)
        goal = await campaigns.owned_goal(user, goal_id)
        current = await campaigns.owned_campaign(user, goal["campaign"])
        currency = current["currency"]
        revshare = goal["payout_model"] == PayoutModel.revshare.value
        merged: dict[str, Any] = {
            "name": goal["name"],
            "payout_model": goal["payout_model"],
            "price_bp" if revshare else "price_minor": goal["advertiser_amount"],
            "payout_bp" if revshare else "payout_minor": goal["publisher_amount"],
            "conversions_per_click": goal["conversions_per_click"],
            "max_sale_minor": goal["max_sale_minor"],
        }
        sent = _sent(data)
        if "payout_model" in sent and (sent["payout_model"] == "revshare") != revshare:
            # Another kind of amount: the old one means nothing in the new model.
            merged = {k: v for k, v in merged.items() if not k.startswith(("price_", "payout_"))}
        merged.update(sent)
        form = form_of(current, await campaigns.goals_of(goal["campaign"]))
        goal_form, names = _goal_fields(merged, goal["position"], currency, "")
        form.update(goal_form)
        await as_sent(campaigns.update_campaign(user, goal["campaign"], form), names)
        return _goal_out(await campaigns.owned_goal(user, goal_id), currency)

    # --- creatives ---

    @get(
        "/campaigns/{campaign_id:int}/creatives",
        summary="A campaign's creatives (text links and banners), newest first",
    )
    async def list_creatives(
        self,
        request: Request,
        campaign_id: FromPath[int],
        archived: Annotated[
            bool | None, Parameter(description="true: only archived ones; false: only live ones; leave out: all")
        ] = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> CreativePage:
        after = Cursor.decode(cursor)
        rows = sorted(
            (
                r
                for r in await creatives.list_creatives(advertiser(request), campaign_id)
                if (archived is None or r["archived"] == archived) and (after is None or r["id"] < after)
            ),
            key=lambda r: r["id"],
            reverse=True,
        )
        items, next_cursor = page([_creative_out(r) for r in rows[: limit + 1]], limit)
        return CreativePage(items=items, next_cursor=next_cursor)

    @post(
        "/campaigns/{campaign_id:int}/creatives",
        status_code=201,
        responses=refusals(
            REUSED_KEY,
            (Invalid, "A value was read but refused: `error.field` names the JSON field and `error.message` says why."),
            (Conflict, "The campaign has ended: it takes no new creatives."),
        ),
        summary="Add a text link or an image banner",
        description="A text link: `kind` text with `text` (one line, at most 300 characters). A banner: `kind` image "
        "with the file's bytes base64-encoded in `image_base64` (PNG, JPEG, GIF or WebP; at most the upload limit "
        "the campaign page states, 512 KB by default); its type and size are read from the bytes.",
    )
    async def add_creative(
        self, request: Request, campaign_id: FromPath[int], data: JSONBody[CreativeIn]
    ) -> CreativeOut:
        user = advertiser(request)
        form = {"name": data.name}
        if data.kind == "text":
            if data.image_base64 is not None:
                raise Invalid(_("A text creative takes `text`, not `image_base64`."), field="image_base64")
            form["text"] = data.text or ""
            creative_id = await creatives.add_text(user, campaign_id, form)
        else:
            if data.text is not None:
                raise Invalid(_("An image creative takes `image_base64`, not `text`."), field="text")
            settings = settings_of(request)
            raw = (data.image_base64 or "").strip()
            if len(raw) > (settings.max_upload_bytes + 2) // 3 * 4 + 4:
                raise Invalid(
                    _("The image is larger than %(num)s KB.", num=settings.max_upload_bytes // 1024),
                    field="image_base64",
                )
            try:
                image = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise Invalid(_("`image_base64` must be the file's bytes in base64."), field="image_base64") from None
            creative_id = await as_sent(
                creatives.add_image(
                    user,
                    campaign_id,
                    form,
                    image,
                    media_dir=settings.media_dir,
                    max_bytes=settings.max_upload_bytes,
                ),
                {"file": "image_base64"},
            )
        return await self._creative(request, campaign_id, creative_id)

    @post(
        "/campaigns/{campaign_id:int}/creatives/{creative_id:int}/archive",
        responses=refusals(REUSED_KEY),
        status_code=200,
        summary="Archive a creative: publishers no longer get it (the file stays)",
    )
    async def archive_creative(
        self, request: Request, campaign_id: FromPath[int], creative_id: FromPath[int]
    ) -> CreativeOut:
        await creatives.archive(advertiser(request), campaign_id, creative_id)
        return await self._creative(request, campaign_id, creative_id)

    async def _creative(self, request: Request, campaign_id: int, creative_id: int) -> CreativeOut:
        for row in await creatives.list_creatives(advertiser(request), campaign_id):
            if row["id"] == creative_id:
                return _creative_out(row)
        raise NotFound(_("There is no such creative."))
