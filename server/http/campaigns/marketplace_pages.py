"""Publishers' side of campaigns: the marketplace, joining or applying, links and their stats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template
from markupsafe import escape

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import PublisherStatus, Role
from server.campaigns import creatives as creatives_service
from server.campaigns import marketplace
from server.campaigns import service as campaigns
from server.campaigns.tables import SUB_NAMES, CreativeKind, MembershipStatus, PayoutModel, Visibility
from server.core import deeplink, money
from server.core.errors import DomainError, Invalid, NotFound
from server.core.i18n import _, _l, ngettext, percent_text
from server.http.pages import form_data, render, render_error, see_other, settings_of
from server.http.web import current_user, requires_role
from server.reports import marketplace as traffic_figures
from server.reports import traffic
from server.reports.marketplace import NO_FIGURES, CampaignFigures
from server.tracking import service as tracking

VISIBILITY_TEXT = {
    Visibility.public.value: _l("Open to all approved publishers"),
    Visibility.approval.value: _l("Needs the advertiser's approval"),
    Visibility.private.value: _l("By invitation"),
}
MODEL_NAMES = {m: "RevShare" if m is PayoutModel.revshare else m.value.upper() for m in PayoutModel}
DASH = "—"  # a figure there are too few clicks to tell
_SALES = {PayoutModel.cpa.value, PayoutModel.revshare.value}
_LEADS = {PayoutModel.cpl.value}


# --- plain words for terms and states (pure: no queries) -----------------------------------------


def model_choices() -> list[tuple[str, str]]:
    return [
        (m.value, _("%(model)s – %(label)s", model=MODEL_NAMES[m], label=campaigns.MODEL_LABELS[m]))
        for m in PayoutModel
    ]


def timing_text(campaign: Mapping[str, Any]) -> str:
    """'Sales count for 30 days after the click. Earnings become available 30 days after approval.'"""
    models = {g["payout_model"] for g in campaign.get("goals", [])}
    hold = campaign["hold_days"]
    available = (
        _("Earnings become available as soon as they are approved.")
        if hold == 0
        else ngettext(
            "Earnings become available %(num)s day after approval.",
            "Earnings become available %(num)s days after approval.",
            hold,
        )
    )
    converting = models & (_SALES | _LEADS)
    if not converting:  # clicks and impressions only: no attribution window to speak of
        return available
    window = campaign["attribution_window_days"]
    if converting <= _SALES:
        counted = ngettext(
            "Sales count for %(num)s day after the click.", "Sales count for %(num)s days after the click.", window
        )
    elif converting <= _LEADS:
        counted = ngettext(
            "Leads count for %(num)s day after the click.", "Leads count for %(num)s days after the click.", window
        )
    else:
        counted = ngettext(
            "Sales and leads count for %(num)s day after the click.",
            "Sales and leads count for %(num)s days after the click.",
            window,
        )
    return f"{counted} {available}"


def membership_state(campaign: Mapping[str, Any]) -> dict[str, str]:
    """What the publisher's standing is and what they can do next: an action to POST ("join"),
    a page to open ("link"), or nothing."""
    membership = campaign.get("membership")
    status = membership["status"] if membership else None
    if status == MembershipStatus.approved.value:
        return {"label": _("Joined – get your link"), "action": "link"}
    if status == MembershipStatus.applied.value:
        return {"label": _("Applied – waiting"), "action": ""}
    if status in (MembershipStatus.declined.value, MembershipStatus.removed.value):
        return {"label": _("Declined"), "action": ""}
    if not campaign.get("funded", True):
        return {"label": _("Waiting for the advertiser's funds"), "action": ""}
    if status == MembershipStatus.invited.value:
        return {"label": _("Accept invitation"), "action": "join"}
    if campaign["visibility"] == Visibility.approval.value:
        return {"label": _("Apply"), "action": "join"}
    return {"label": _("Join"), "action": "join"}


def epc_text(figures: CampaignFigures, currency: str) -> str:
    """Earnings per click in the reader's format, to a tenth of a cent (€0.035), or a dash below
    the clicks a figure needs."""
    epc = figures.epc_minor
    if epc is None:
        return DASH
    major = epc.scaleb(-money.exponent(currency)).quantize(Decimal("0.001"), ROUND_HALF_UP).normalize()
    return money.display_local(major, currency, major=True)


def present_campaign(campaign: dict[str, Any], figures: CampaignFigures = NO_FIGURES) -> dict[str, Any]:
    currency = campaign["currency"]
    rate = figures.conversion_rate
    return {
        **campaign,
        "category_label": campaigns.CATEGORIES.get(campaign["category"], campaign["category"]),
        "terms": [campaigns.describe_goal(g, currency, for_publisher=True) for g in campaign["goals"]],
        "timing": timing_text(campaign),
        "visibility_text": VISIBILITY_TEXT.get(campaign["visibility"], campaign["visibility"]),
        "state": membership_state(campaign),
        "figures": figures,
        "epc": epc_text(figures, currency),
        "conversion_rate": DASH if rate is None else percent_text(rate, places=2),
    }


def click_table(stats: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """click_stats rows (campaign × sub1 × reason) as one row per campaign and sub1 (tracking.fold_clicks),
    by campaign name."""
    rows = tracking.fold_clicks(stats, by=("campaign_id", "campaign_name", "sub1"))
    return sorted(rows, key=lambda r: (r["campaign_name"].lower(), r["campaign_id"], r["sub1"]))


def base_link(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/c/{code}"


def build_link(base_url: str, code: str, form: Mapping[str, str], allowed_domains: str) -> str:
    """The tracked link with the sub ids and deep link the publisher chose, each URL-encoded.
    Raises Invalid (naming the field) for a sub id too long or a deep link the campaign refuses."""
    params: list[tuple[str, str]] = []
    for name in SUB_NAMES:
        value = (form.get(name) or "").strip()
        if not value:
            continue
        if len(value) > tracking.SUB_MAX:  # the redirect would cut it short
            raise Invalid(
                _("%(name)s is limited to %(most)s characters.", name=name, most=tracking.SUB_MAX), field=name
            )
        if not value.isprintable():
            raise Invalid(_("%(name)s contains control characters.", name=name), field=name)
        params.append((name, value))
    deep = (form.get("url") or "").strip()
    if deep:
        domains = allowed_domains.split()
        safe = deeplink.safe_url(deep, frozenset(domains))
        if safe is None:
            raise Invalid(
                _(
                    "This deep link cannot be used: it must be an http(s) address on one of the campaign's "
                    "allowed domains (%(domains)s) or their subdomains, without a port or user name.",
                    domains=", ".join(domains),
                ),
                field="url",
            )
        params.append(("url", safe))
    link = base_link(base_url, code)
    return f"{link}?{urlencode(params, quote_via=quote)}" if params else link


def creative_snippet(creative: Mapping[str, Any], link: str, base_url: str) -> str:
    """HTML a publisher pastes into their site, on one line: WordPress's classic editor turns a
    newline into <br> or <p>. Wrapped in a block-level <div> no wider than its column, so block
    themes keep it in the content column (a bare <a><img></a> is laid out outside it). Every value
    is escaped here; the page escapes the whole snippet once more to show it as text."""
    href = escape(link)
    if creative["kind"] == CreativeKind.image.value:
        src = escape(f"{base_url.rstrip('/')}/media/{quote(creative['image_path'])}")
        inner = (
            f'<img src="{src}" width="{int(creative["width"])}" height="{int(creative["height"])}" '
            f'alt="{escape(" ".join(str(creative["name"]).split()))}" style="max-width:100%;height:auto">'
        )
    else:
        inner = str(escape(" ".join(str(creative["text"]).split())))  # a newline shows as a space anyway
    return (
        f'<div class="affnet-creative" style="max-width:100%">'
        f'<a href="{href}" rel="sponsored noopener">{inner}</a></div>'
    )


# --- pages ---------------------------------------------------------------------------------------


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]


def _filters(source: Mapping[str, Any]) -> dict[str, str]:
    """The marketplace filters, with unknown models and categories dropped."""
    search = (source.get("q") or "").strip()[:80]
    model = source.get("model") or ""
    category = source.get("category") or ""
    return {
        "q": search,
        "model": model if model in PayoutModel.__members__ else "",
        "category": category if category in campaigns.CATEGORIES else "",
    }


async def _marketplace_page(
    user: CurrentUser, filters: dict[str, str], *, status_code: int = 200, error: str | None = None
) -> Template:
    profile = await accounts.publisher_profile(user.id)
    found = await marketplace.listing(user, search=filters["q"], model=filters["model"], category=filters["category"])
    figures = await traffic_figures.campaign_figures([c["id"] for c in found])
    return render(
        "publisher/marketplace.html",
        status_code=status_code,
        error=error,
        profile=profile,
        can_join=profile["status"] == PublisherStatus.approved.value,
        campaigns=[present_campaign(c, figures.get(c["id"], NO_FIGURES)) for c in found],
        min_clicks=traffic_figures.MIN_CLICKS,
        days=traffic_figures.DAYS,
        filters=filters,
        models=model_choices(),
        categories=campaigns.CATEGORIES,
    )


class PublisherCampaigns(Controller):
    path = "/publisher/campaigns"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def marketplace(self, request: Request) -> Template:
        return await _marketplace_page(_user(request), _filters(request.query_params))

    @post("/{campaign_id:int}/join")
    async def join(self, request: Request, campaign_id: FromPath[int]) -> Template | Redirect:
        filters = _filters(await form_data(request))
        try:
            await marketplace.join(_user(request), campaign_id)
        except DomainError as exc:
            return await _marketplace_page(_user(request), filters, status_code=exc.status_code, error=exc.message)
        query = urlencode({k: v for k, v in filters.items() if v})
        return see_other(f"/publisher/campaigns{'?' + query if query else ''}#campaign-{campaign_id}")

    @get("/{campaign_id:int}/link")
    async def link_builder(self, request: Request, campaign_id: FromPath[int]) -> Template:
        user = _user(request)
        link = await tracking.link_for(user.id, campaign_id)
        base_url = settings_of(request).base_url
        form = {k: v for k, v in request.query_params.items() if k in (*SUB_NAMES, "url")}
        terms = await marketplace.link_terms(campaign_id)
        context = {
            "campaign_id": campaign_id,
            "campaign_name": terms["name"],
            "forwarded": terms["forwarded"],
            "click_id_param": terms["click_id_param"],
            "link": link,
            "base": base_link(base_url, link.code),
            "domains": link.allowed_domains.split(),
        }
        creatives = await creatives_service.active_creatives(campaign_id)
        try:
            built = build_link(base_url, link.code, form, link.allowed_domains)
        except Invalid as exc:
            snippets = [(c, creative_snippet(c, context["base"], base_url)) for c in creatives]
            return render_error("publisher/link_builder.html", exc, form, built=None, snippets=snippets, **context)
        snippets = [(c, creative_snippet(c, built, base_url)) for c in creatives]
        return render("publisher/link_builder.html", form=form, built=built, snippets=snippets, **context)

    @get("/{campaign_id:int}/stats")
    async def stats(self, request: Request, campaign_id: FromPath[int]) -> Template:
        user = _user(request)
        # Any link they ever had, so a removed member still sees what their traffic did.
        link = next((row for row in await tracking.links_of(user.id) if row.campaign_id == campaign_id), None)
        if link is None:
            raise NotFound(_("You have no link in this campaign."))
        stats = await traffic.click_stats(user.id, campaign_id=campaign_id)
        return render(
            "publisher/campaign_stats.html", link=link, totals=tracking.click_totals(stats), table=click_table(stats)
        )


class PublisherLinks(Controller):
    path = "/publisher/links"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def links(self, request: Request) -> Template:
        links = await tracking.links_of(_user(request).id)
        base_url = settings_of(request).base_url
        return render("publisher/links.html", links=[(row, base_link(base_url, row.code)) for row in links])
