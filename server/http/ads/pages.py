"""The publisher's ad slot pages (create, list, edit, pause, the snippet and statistics), the
WordPress plugin's download and the demo blog page. The endpoints the embed script calls are in
server/http/ads/public.py."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template
from markupsafe import Markup

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.ads import service as ads
from server.ads import wordpress
from server.ads.tables import VIEW_REASON_LABELS, SlotFallback, SlotFormat, ViewReason
from server.core import clock
from server.core.errors import DomainError, NotFound
from server.core.i18n import _, percent_text
from server.http.pages import form_data, render_error, see_other, settings_of
from server.http.pages import render as render_page
from server.http.web import PUBLIC, current_user, requires_role
from server.reports import traffic
from server.tracking.classify import REASON_LABELS, Reason


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted a publisher


def _form_context(**extra: Any) -> dict[str, Any]:
    slot = extra.get("slot")
    if slot is not None:
        extra["format_label"] = ads.FORMAT_LABELS[SlotFormat(slot["format"])]
    return {
        "formats": [(f.value, ads.FORMAT_LABELS[f]) for f in SlotFormat],
        "fallbacks": [(f.value, ads.FALLBACK_LABELS[f]) for f in SlotFallback],
        **extra,
    }


def _reason_rows(counts: dict[str, int], labels: Mapping[Any, str], reasons: type[StrEnum]) -> list[tuple[str, int]]:
    """(label, count) rows, valid first, then each reason it was not counted."""
    rows = []
    for reason, n in sorted(counts.items(), key=lambda kv: (kv[0] != "valid", kv[0])):
        try:
            label = str(labels[reasons(reason)])
        except ValueError:
            label = reason.replace("_", " ")
        rows.append((label, n))
    return rows


def _rate(clicks: int, views: int) -> str:
    """Valid clicks per valid impression in the reader's format (2.35% in English, 2,35 % in French),
    or a dash without impressions."""
    return percent_text(clicks / views, places=2) if views else "—"


class PublisherSlots(Controller):
    path = "/publisher/slots"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def slots(self, request: Request) -> Template:
        rows = await ads.slots_of(_user(request))
        labels = {f.value: label for f, label in ads.FORMAT_LABELS.items()}
        return render_page("publisher/slots.html", slots=rows, format_labels=labels)

    @get("/new")
    async def new_form(self) -> Template:
        return render_page(
            "publisher/slot_form.html",
            form={"format": SlotFormat.medium_rectangle.value, "fallback": SlotFallback.collapse.value},
            **_form_context(editing=False),
        )

    @post("/new")
    async def create(self, request: Request) -> Template | Redirect:
        form = await form_data(request)
        try:
            slot_id = await ads.create_slot(_user(request), form, loopback_allowed=not settings_of(request).production)
        except DomainError as exc:
            return render_error("publisher/slot_form.html", exc, form, **_form_context(editing=False))
        return see_other(f"/publisher/slots/{slot_id}")

    @get("/{slot_id:int}")
    async def detail(self, request: Request, slot_id: FromPath[int]) -> Template:
        slot = await ads.owned_slot(_user(request), slot_id)
        base_url = settings_of(request).base_url
        since = clock.now() - timedelta(days=ads.STATS_DAYS)
        stats = await traffic.slot_stats(slot_id, since)
        clicks = await traffic.slot_click_stats(slot_id, since)
        valid_views, valid_clicks = stats.get("valid", 0), clicks.get("valid", 0)
        return render_page(
            "publisher/slot.html",
            slot=slot,
            snippet=ads.snippet(base_url, slot),
            shortcode=ads.shortcode(slot),
            base_url=base_url,
            format_label=ads.FORMAT_LABELS[SlotFormat(slot["format"])],
            fallback_label=ads.FALLBACK_LABELS[SlotFallback(slot["fallback"])],
            domains=slot["domains"].split(),
            stats=_reason_rows(stats, VIEW_REASON_LABELS, ViewReason),
            valid_views=valid_views,
            invalid_views=sum(stats.values()) - valid_views,
            valid_clicks=valid_clicks,
            invalid_clicks=sum(clicks.values()) - valid_clicks,
            click_stats=_reason_rows(clicks, REASON_LABELS, Reason),
            click_rate=_rate(valid_clicks, valid_views),
            stats_days=ads.STATS_DAYS,
        )

    @get("/{slot_id:int}/edit")
    async def edit_form(self, request: Request, slot_id: FromPath[int]) -> Template:
        slot = await ads.owned_slot(_user(request), slot_id)
        return render_page("publisher/slot_form.html", form=ads.form_of(slot), **_form_context(editing=True, slot=slot))

    @post("/{slot_id:int}/edit")
    async def update(self, request: Request, slot_id: FromPath[int]) -> Template | Redirect:
        form = await form_data(request)
        slot = await ads.owned_slot(_user(request), slot_id)
        try:
            await ads.update_slot(_user(request), slot_id, form, loopback_allowed=not settings_of(request).production)
        except DomainError as exc:
            return render_error(
                "publisher/slot_form.html",
                exc,
                {**form, "format": slot["format"]},
                **_form_context(editing=True, slot=slot),
            )
        return see_other(f"/publisher/slots/{slot_id}")

    @post("/{slot_id:int}/pause")
    async def pause(self, request: Request, slot_id: FromPath[int]) -> Redirect:
        await ads.set_status(_user(request), slot_id, "pause")
        return see_other(f"/publisher/slots/{slot_id}")

    @post("/{slot_id:int}/resume")
    async def resume(self, request: Request, slot_id: FromPath[int]) -> Redirect:
        await ads.set_status(_user(request), slot_id, "resume")
        return see_other(f"/publisher/slots/{slot_id}")


# --- the demo blog -------------------------------------------------------------------------------

DEMO_PUBLISHER = "publisher@affnet.example"


@get("/demo/blog", opt=PUBLIC, include_in_schema=False)
async def demo_blog(request: Request) -> Template:
    """A blog post with the demo publisher's slot, as a reader would see it (not in production)."""
    settings = settings_of(request)
    if settings.production:
        raise NotFound(_("There is nothing at this address."))
    slot = await ads.demo_slot(DEMO_PUBLISHER)
    # The page embeds the snippet as markup, as a publisher pastes it: snippet() escapes every value it holds.
    snippet = Markup(ads.snippet(settings.base_url, slot)) if slot else ""  # noqa: S704
    return render_page("ads/demo_blog.html", snippet=snippet)


# --- the WordPress plugin ------------------------------------------------------------------------


@get("/wordpress/affnet.zip", opt=PUBLIC, include_in_schema=False, sync_to_thread=True)
def wordpress_plugin() -> Response[bytes]:
    """The WordPress plugin's zip, as the slot page links it: public (GPL code, no secret in it)."""
    return Response(
        wordpress.plugin_zip(),  # built from wordpress/affnet/ once per process
        media_type="application/zip",
        headers={"content-disposition": 'attachment; filename="affnet-wordpress.zip"', "cache-control": "no-cache"},
    )
