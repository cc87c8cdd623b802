"""The review queue of held conversions (advertisers: their campaigns'; finance and admins: all),
and the fraud rules' settings pages (a campaign's, by its advertiser; the network's, by an admin)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.conversions import flags, holds
from server.core import money
from server.core.errors import Conflict, Invalid
from server.core.i18n import _, ngettext
from server.http.pages import form_data, render, render_error
from server.http.web import current_user, requires_role
from server.tracking import click_rules

QUEUE_PAGE = "review/queue.html"
RULES_PAGE = "review/rules.html"


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted a reviewer


async def _queue(request: Request, base: str, **extra: Any) -> dict[str, Any]:
    user = _user(request)
    return {
        "held": await flags.queue(user),
        "publishers": await holds.queue(user) if user.role in (Role.finance, Role.admin) else None,
        "base": base,
        "money": money,
        "limit": flags.QUEUE_LIMIT,
        **extra,
    }


class _Queue(Controller):
    include_in_schema = False

    @get("")
    async def index(self, request: Request) -> Template:
        return render(QUEUE_PAGE, **await _queue(request, self.path))

    @post("/{conversion_id:int}/release")
    async def release(self, request: Request, conversion_id: FromPath[int]) -> Template:
        form = await form_data(request)
        try:
            await flags.release(_user(request), conversion_id, form.get("reason", ""))
        except (Invalid, Conflict) as exc:
            return render_error(
                QUEUE_PAGE, exc, {**form, "conversion": conversion_id}, **await _queue(request, self.path)
            )
        return render(
            QUEUE_PAGE,
            notice=_("Conversion #%(id)s released: it is no longer held.", id=conversion_id),
            **await _queue(request, self.path),
        )

    @post("/{conversion_id:int}/reject")
    async def reject(self, request: Request, conversion_id: FromPath[int]) -> Template:
        form = await form_data(request)
        try:
            await flags.reject(_user(request), conversion_id, form.get("reason", ""))
        except (Invalid, Conflict) as exc:
            return render_error(
                QUEUE_PAGE, exc, {**form, "conversion": conversion_id}, **await _queue(request, self.path)
            )
        return render(
            QUEUE_PAGE,
            notice=_("Conversion #%(id)s rejected; its publisher sees your reason.", id=conversion_id),
            **await _queue(request, self.path),
        )


class _PublisherHolds:
    """Finance's and admins' decisions on held publishers (server/conversions/holds.py)."""

    @post("/publishers/{hold_id:int}/release")
    async def release_publisher(self, request: Request, hold_id: FromPath[int]) -> Template:
        form = await form_data(request)
        try:
            await holds.release(_user(request), hold_id, form.get("reason", ""))
        except (Invalid, Conflict) as exc:
            return render_error(QUEUE_PAGE, exc, form, **await _queue(request, self.path))  # type: ignore[attr-defined]
        return render(
            QUEUE_PAGE,
            notice=_("Publisher released: their conversions go back to the ordinary flow."),
            **await _queue(request, self.path),  # type: ignore[attr-defined]
        )

    @post("/publishers/{hold_id:int}/reject")
    async def reject_publisher(self, request: Request, hold_id: FromPath[int]) -> Template:
        form = await form_data(request)
        try:
            rejected = await holds.reject(_user(request), hold_id, form.get("reason", ""))
        except (Invalid, Conflict) as exc:
            return render_error(QUEUE_PAGE, exc, form, **await _queue(request, self.path))  # type: ignore[attr-defined]
        return render(
            QUEUE_PAGE,
            notice=ngettext(
                "Publisher rejected: %(num)s pending conversion rejected; they see your reason.",
                "Publisher rejected: %(num)s pending conversions rejected; they see your reason.",
                rejected,
            ),
            **await _queue(request, self.path),  # type: ignore[attr-defined]
        )


class AdvertiserReviewQueue(_Queue):
    path = "/advertiser/review"
    guards = [requires_role(Role.advertiser)]


class FinanceReviewQueue(_Queue, _PublisherHolds):
    path = "/finance/review"
    guards = [requires_role(Role.finance, Role.admin)]


class CampaignRules(Controller):
    """A campaign's fraud rules, switched off or tuned by its advertiser."""

    path = "/advertiser/campaigns/{campaign_id:int}/rules"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("")
    async def show(self, request: Request, campaign_id: FromPath[int]) -> Template:
        knobs = await flags.knobs(_user(request), campaign_id)
        return render(
            RULES_PAGE,
            knobs=knobs,
            campaign_id=campaign_id,
            action=f"/advertiser/campaigns/{campaign_id}/rules",
            **await _click_rules(campaign_id),
        )

    @post("")
    async def save(self, request: Request, campaign_id: FromPath[int]) -> Template:
        return await _save(request, campaign_id, f"/advertiser/campaigns/{campaign_id}/rules")


class NetworkRules(Controller):
    """The network-wide fraud rules, tuned by an admin (a campaign's own settings win over them)."""

    path = "/admin/conversion-rules"
    guards = [requires_role(Role.admin)]
    include_in_schema = False

    @get("")
    async def show(self, request: Request) -> Template:
        knobs = await flags.knobs(_user(request), None)
        return render(RULES_PAGE, knobs=knobs, campaign_id=None, action=self.path, **await _click_rules(None))

    @post("")
    async def save(self, request: Request) -> Template:
        return await _save(request, None, self.path)


async def _click_rules(campaign_id: int | None) -> dict[str, Any]:
    """The click-quality rules' switches as the page shows them."""
    return {
        "click_rules": campaigns.CLICK_RULES,
        "click_off": await campaigns.click_rules_off(campaign_id),
        "network_click_off": await campaigns.click_rules_off(None),
    }


async def _save(request: Request, campaign_id: int | None, action: str) -> Template:
    user = _user(request)
    form = await form_data(request)
    try:
        changed = await flags.set_knobs(user, campaign_id, flags.parse_knobs(form))
        if form.get("click_rules_form"):  # the page's click-rule boxes (a form without them changes none)
            off = {r for r in campaigns.CLICK_RULES if not form.get(f"click.{r}")}
            if await campaigns.set_click_rules_off(user, campaign_id, off):
                click_rules.forget()
                changed.append(_("click rules"))
    except Invalid as exc:
        knobs = await flags.knobs(user, campaign_id)
        return render_error(
            RULES_PAGE,
            exc,
            form,
            knobs=knobs,
            campaign_id=campaign_id,
            action=action,
            **await _click_rules(campaign_id),
        )
    request.app.state.conversion_rules.forget(campaign_id)
    notice = _("Saved: %(changed)s.", changed=", ".join(changed)) if changed else _("Nothing changed.")
    return render(
        RULES_PAGE,
        knobs=await flags.knobs(user, campaign_id),
        campaign_id=campaign_id,
        action=action,
        notice=notice,
        **await _click_rules(campaign_id),
    )
