"""Advertisers' campaign pages: create, edit, pause/resume/end, goals, creatives, applicants."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Redirect, Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import creatives, echo
from server.campaigns import service as campaigns
from server.campaigns.tables import SUB_NAMES, CampaignStatus, PayoutModel, Visibility
from server.core import money
from server.core.errors import Conflict, Invalid
from server.core.i18n import _, _l
from server.http.pages import form_data, render, render_error, see_other, settings_of
from server.http.web import UPLOAD_LIMIT, current_user, requires_role
from server.reports import spending, traffic
from server.tracking import service as tracking

CAMPAIGN_PAGE = "advertiser/campaign.html"
FORM_PAGE = "advertiser/campaign_form.html"
NEW_CAMPAIGN_DEFAULTS = {
    "currency": "EUR",
    "category": "other",
    "visibility": Visibility.public.value,
    "click_id_param": "click_id",
    "attribution_window_days": "30",
    "hold_days": "30",
    "min_conversion_seconds": "0",
    "goal_0_name": "sale",
    "goal_0_model": PayoutModel.cpa.value,
}
CAP_FIELDS = (
    ("cap_clicks_daily", _l("Clicks per day")),
    ("cap_conversions_daily", _l("Conversions per day")),
    ("cap_conversions_monthly", _l("Conversions per month")),
    ("cap_publisher_clicks_daily", _l("Clicks per day, per publisher")),
    ("cap_publisher_conversions_daily", _l("Conversions per day, per publisher")),
    ("cap_publisher_conversions_monthly", _l("Conversions per month, per publisher")),
)
VISIBILITY_HELP = {
    Visibility.public.value: _l("Public: any approved publisher can join at once and get a tracked link."),
    Visibility.approval.value: _l("Approval: publishers apply; you accept or decline each one."),
    Visibility.private.value: _l("Private: hidden from the marketplace; only publishers you invite by email can join."),
}


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted an advertiser


def _form_context(**extra: Any) -> dict[str, Any]:
    return {
        "categories": campaigns.CATEGORIES,
        "model_labels": {m.value: label for m, label in campaigns.MODEL_LABELS.items()},
        "visibility_help": VISIBILITY_HELP,
        "cap_fields": CAP_FIELDS,
        "sub_names": SUB_NAMES,
        "goal_rows": range(campaigns.MAX_GOALS),
        **extra,
    }


def form_of(campaign: dict[str, Any], goals: list[dict[str, Any]]) -> dict[str, str]:
    """A campaign as the form shows it: amounts in major units, percentages for revshare."""
    currency = campaign["currency"]
    form: dict[str, str] = {
        k: str(campaign[k])
        for k in (
            "name",
            "description",
            "category",
            "currency",
            "landing_url",
            "fallback_url",
            "attribution_window_days",
            "hold_days",
            "min_conversion_seconds",
            "visibility",
            "click_id_param",
        )
    }
    form["allowed_domains"] = campaign["allowed_domains"]
    for field in ("total_budget", "daily_budget"):
        amount = campaign[f"{field}_minor"]
        form[field] = money.form_text(amount, currency) if amount is not None else ""
    for field, _label in CAP_FIELDS:
        form[field] = "" if campaign[field] is None else str(campaign[field])
    form["pixel"] = "on" if campaign["pixel_enabled"] else "off"
    for sub in campaign["forward_subs"].split(","):
        if sub:
            form[f"forward_{sub}"] = "on"
    for goal in goals:
        n = goal["position"]
        percent = goal["payout_model"] == PayoutModel.revshare.value
        form[f"goal_{n}_name"] = goal["name"]
        form[f"goal_{n}_model"] = goal["payout_model"]
        for side in ("advertiser", "publisher"):
            amount = goal[f"{side}_amount"]
            form[f"goal_{n}_{side}"] = money.percent_text(amount) if percent else money.form_text(amount, currency)
        form[f"goal_{n}_per_click"] = str(goal["conversions_per_click"])
        if goal["max_sale_minor"] is not None:
            form[f"goal_{n}_max_sale"] = money.form_text(goal["max_sale_minor"], currency)
    return form


async def _campaign_page(advertiser: CurrentUser, campaign_id: int, **extra: Any) -> dict[str, Any]:
    """Everything the campaign page shows (each part read through its own domain's service)."""
    campaign = await campaigns.owned_campaign(advertiser, campaign_id)
    goals = await campaigns.goals_of(campaign_id)
    currency = campaign["currency"]
    terms = [
        {
            "pays": campaigns.describe_goal(g, currency, for_publisher=False),
            "earns": campaigns.describe_goal(g, currency),
        }
        for g in goals
    ]
    members = await campaigns.applicants(advertiser, campaign_id)
    # By publisher id, named by their public profile: an advertiser never sees their e-mail address.
    names = {m.publisher_id: m.name for m in members}
    clicks = tracking.fold_clicks(await traffic.campaign_click_stats(campaign_id), by=("publisher_id",))
    [summary] = await campaigns.summaries(advertiser, campaign_id)
    context: dict[str, Any] = {
        "campaign": campaign,
        "status_reason": campaigns.status_reason_text(campaign["status_reason"]),
        "summary": summary,
        "terms": terms,
        "category": campaigns.CATEGORIES.get(campaign["category"], campaigns.CATEGORIES["other"]),
        "visibility_help": VISIBILITY_HELP,
        "money": money,
        "clicks": [{**row, "publisher": names.get(row["publisher_id"], f"#{row['publisher_id']}")} for row in clicks],
        "paid_for": await spending.paid_for(advertiser.id, campaign_id=campaign_id),
        # Its spend, conversions, sales, ROI and CPA, under what it paid for (advertiser/_paid_for.html).
        "campaign_results": await spending.results_of(advertiser.id, campaign_id=campaign_id, per_campaign=True),
        "creatives": await creatives.list_creatives(advertiser, campaign_id),
        "members": members,
        "can_edit": campaign["status"] != CampaignStatus.ended.value,
        "max_upload_kb": None,
        "form": {},
        "form_for": "",
    }
    context.update(extra)
    return context


class AdvertiserCampaigns(Controller):
    path = "/advertiser/campaigns"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("")
    async def index(self, request: Request) -> Template:
        return render("advertiser/campaigns.html", summaries=await campaigns.summaries(_user(request)))

    @get("/new")
    async def new_page(self) -> Template:
        return render(FORM_PAGE, **_form_context(form=dict(NEW_CAMPAIGN_DEFAULTS), editing=False))

    @post("/new")
    async def create(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        try:
            campaign_id = await campaigns.create_campaign(_user(request), form)
        except (Invalid, Conflict) as exc:
            return render_error(FORM_PAGE, exc, form, **_form_context(editing=False))
        return see_other(f"/advertiser/campaigns/{campaign_id}?saved=1")  # shows the amounts as understood

    @get("/{campaign_id:int}")
    async def show(self, request: Request, campaign_id: FromPath[int]) -> Template:
        context = await self._page(request, campaign_id)
        if request.query_params.get("saved") == "1":
            context["notice"] = echo.saved_notice(context["campaign"], await campaigns.goals_of(campaign_id))
        return render(CAMPAIGN_PAGE, **context)

    @get("/{campaign_id:int}/edit")
    async def edit_page(self, request: Request, campaign_id: FromPath[int]) -> Template:
        campaign = await campaigns.owned_campaign(_user(request), campaign_id)
        form = form_of(campaign, await campaigns.goals_of(campaign_id))
        return render(FORM_PAGE, **_form_context(form=form, editing=True, campaign=campaign))

    @post("/{campaign_id:int}/edit")
    async def edit(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        form = await form_data(request)
        advertiser = _user(request)
        try:
            await campaigns.update_campaign(advertiser, campaign_id, form)
        except (Invalid, Conflict) as exc:
            campaign = await campaigns.owned_campaign(advertiser, campaign_id)
            return render_error(
                FORM_PAGE,
                exc,
                {**form, "currency": campaign["currency"]},
                **_form_context(editing=True, campaign=campaign),
            )
        return see_other(f"/advertiser/campaigns/{campaign_id}?saved=1")

    @post("/{campaign_id:int}/pause")
    async def pause(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        return await self._status(request, campaign_id, "pause")

    @post("/{campaign_id:int}/resume")
    async def resume(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        return await self._status(request, campaign_id, "resume")

    @post("/{campaign_id:int}/end")
    async def end(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        return await self._status(request, campaign_id, "end")

    @post("/{campaign_id:int}/members/{membership_id:int}/accept")
    async def accept(
        self, request: Request, campaign_id: FromPath[int], membership_id: FromPath[int]
    ) -> Template | Redirect:
        return await self._decide(request, campaign_id, membership_id, accept=True)

    @post("/{campaign_id:int}/members/{membership_id:int}/decline")
    async def decline(
        self, request: Request, campaign_id: FromPath[int], membership_id: FromPath[int]
    ) -> Template | Redirect:
        return await self._decide(request, campaign_id, membership_id, accept=False)

    @post("/{campaign_id:int}/invite")
    async def invite(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        form = await form_data(request)
        try:
            await campaigns.invite(_user(request), campaign_id, form.get("publisher_email", ""))
        except (Invalid, Conflict) as exc:
            return await self._page_error(request, campaign_id, exc, form, "invite")
        return see_other(f"/advertiser/campaigns/{campaign_id}#publishers")

    @post("/{campaign_id:int}/creatives/text")
    async def add_text(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        form = await form_data(request)
        try:
            await creatives.add_text(_user(request), campaign_id, form)
        except (Invalid, Conflict) as exc:
            return await self._page_error(request, campaign_id, exc, form, "text")
        return see_other(f"/advertiser/campaigns/{campaign_id}#creatives")

    @post(
        "/{campaign_id:int}/creatives/image",
        request_max_body_size=creatives.UPLOAD_BODY_LIMIT,
        opt={UPLOAD_LIMIT: lambda settings: settings.max_upload_bytes},  # what the page says: 512 KB by default
    )
    async def add_image(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        settings = settings_of(request)
        form = await form_data(request)  # the text fields
        upload = (await request.form()).get("file")
        # One byte past the limit is enough to know it is too large.
        data = await upload.read(settings.max_upload_bytes + 1) if isinstance(upload, UploadFile) else b""
        try:
            await creatives.add_image(
                _user(request),
                campaign_id,
                form,
                data,
                media_dir=settings.media_dir,
                max_bytes=settings.max_upload_bytes,
            )
        except (Invalid, Conflict) as exc:
            return await self._page_error(request, campaign_id, exc, form, "image")
        return see_other(f"/advertiser/campaigns/{campaign_id}#creatives")

    @post("/{campaign_id:int}/creatives/{creative_id:int}/archive")
    async def archive_creative(
        self, request: Request, campaign_id: FromPath[int], creative_id: FromPath[int]
    ) -> Redirect:
        await creatives.archive(_user(request), campaign_id, creative_id)
        return see_other(f"/advertiser/campaigns/{campaign_id}#creatives")

    # --- shared steps ------------------------------------------------------------------------------

    async def _page(self, request: Request, campaign_id: int, **extra: Any) -> dict[str, Any]:
        return await _campaign_page(
            _user(request), campaign_id, max_upload_kb=settings_of(request).max_upload_bytes // 1024, **extra
        )

    async def _page_error(
        self, request: Request, campaign_id: int, exc: Invalid | Conflict, form: dict[str, Any], form_for: str
    ) -> Template:
        """The campaign page again, with the message and what was typed into the form that failed."""
        context = await self._page(request, campaign_id, form_for=form_for)
        context.pop("form")
        return render_error(CAMPAIGN_PAGE, exc, form, **context)

    async def _status(self, request: Request, campaign_id: int, action: str) -> Template | Redirect:
        form = await form_data(request)
        try:
            if action == "end" and form.get("confirm") != "on":
                raise Invalid(_("Tick “I understand this cannot be undone” to end the campaign."), field="confirm")
            await campaigns.change_status(_user(request), campaign_id, action)
        except (Invalid, Conflict) as exc:
            return await self._page_error(request, campaign_id, exc, form, "status")
        return see_other(f"/advertiser/campaigns/{campaign_id}")

    async def _decide(
        self, request: Request, campaign_id: int, membership_id: int, *, accept: bool
    ) -> Template | Redirect:
        form = await form_data(request)
        try:
            await campaigns.decide(_user(request), membership_id, accept, form.get("note", ""), campaign_id=campaign_id)
        except (Invalid, Conflict) as exc:
            return await self._page_error(request, campaign_id, exc, form, f"member-{membership_id}")
        return see_other(f"/advertiser/campaigns/{campaign_id}#publishers")
