"""Advertisers' conversions page: the list with filters; approving, rejecting or reversing in bulk;
and deciding by CSV upload (preview, then apply)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.response import Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.campaigns.records import CampaignListing
from server.conversions import csv_upload, review
from server.conversions.tables import ConversionSource, ConversionStatus
from server.core import money
from server.core.errors import Conflict, Invalid
from server.core.i18n import _
from server.http.pages import form_data, render, render_error, settings_of
from server.http.web import UPLOAD_LIMIT, current_user, requires_role
from server.reports import spending

PAGE = "advertiser/conversions.html"
PREVIEW_PAGE = "advertiser/conversions_upload.html"


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted an advertiser


async def _context(advertiser: CurrentUser, filters: review.Filters | None, **extra: Any) -> dict[str, Any]:
    """The page: the advertiser's campaigns for the filter, and the conversions the filters match
    (none when the filters themselves were invalid)."""
    rows = await review.list_conversions(advertiser, **vars(filters)) if filters is not None else []
    return {
        "conversions": rows,
        "results": spending.results_of_listed(rows),  # sales, ROI and CPA of the conversions listed
        "campaigns": await campaigns.list_for_advertiser(advertiser),
        "statuses": [s.value for s in ConversionStatus],
        "sources": [s.value for s in ConversionSource],
        "money": money,
        "limit": review.LIST_LIMIT,
        "max_upload_kb": csv_upload.MAX_BYTES // 1024,
        "max_upload_rows": csv_upload.MAX_ROWS,
        "filters": (filters or review.Filters()).as_form(),
        **extra,
    }


async def _store_own_clicks(request: Request) -> None:
    """Write this server's buffered clicks now; if that fails, the conversions whose click is not
    stored yet simply wait for a later approval (server/conversions/selfcheck.py)."""
    try:
        await request.app.state.click_buffer.flush()
    except Exception:
        logging.getLogger("affnet.conversions").warning("storing the buffered clicks failed", exc_info=True)


class AdvertiserConversions(Controller):
    path = "/advertiser/conversions"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("")
    async def index(self, request: Request) -> Template:
        advertiser = _user(request)
        try:
            filters = review.parse_filters(request.query_params)
        except Invalid as exc:
            context = await _context(advertiser, None)
            context["filters"] = {k: request.query_params.get(k, "") for k in context["filters"]}
            return render_error(PAGE, exc, {}, **context)
        return render(PAGE, **await _context(advertiser, filters))

    @post("/decide")
    async def decide(self, request: Request) -> Template:
        advertiser = _user(request)
        form = await form_data(request)
        raw_ids = (await request.form()).getall("conversion_id", [])
        try:
            filters = review.parse_filters(form)  # the filters the list was showing, kept as hidden fields
        except Invalid:
            filters = review.Filters()
        try:
            ids = [int(v) for v in raw_ids if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) < 19]
            if len(ids) != len(raw_ids):
                raise Invalid(_("That selection is not a list of conversions."), field="conversion_id")
            if form.get("action") == "approve":
                # This server's own clicks stored first: the self_conversion rule needs their rows, and
                # a conversion whose click is not stored yet waits (server/conversions/selfcheck.py).
                await _store_own_clicks(request)
            decision = await review.decide(advertiser, ids, form.get("action", ""), form.get("reason", ""))
        except (Invalid, Conflict) as exc:
            return render_error(
                PAGE,
                exc,
                {"reason": form.get("reason", ""), "action": form.get("action", "")},
                **await _context(advertiser, filters),
            )
        return render(
            PAGE, notice=review.summary(decision), decision=decision.as_dict(), **await _context(advertiser, filters)
        )

    @post("/upload", request_max_body_size=csv_upload.BODY_LIMIT, opt={UPLOAD_LIMIT: csv_upload.MAX_BYTES})
    async def upload(self, request: Request) -> Template:
        """Step one: read the CSV (file or pasted text) and show what it would do. Changes nothing."""
        advertiser = _user(request)
        form = await form_data(request)
        upload = (await request.form()).get("file")
        # One byte past the limit is enough to know it is too large.
        data = await upload.read(csv_upload.MAX_BYTES + 1) if isinstance(upload, UploadFile) else b""
        kept = {
            "campaign": form.get("campaign", ""),
            "reason": form.get("reason", ""),
            "upload": "1",
            "text": form.get("text", "") if len(form.get("text", "")) <= 64 * 1024 else "",
        }
        try:
            campaign = await _campaign(advertiser, form.get("campaign", ""))
            text = csv_upload.read_input(data, form.get("text", ""))
            plan = await csv_upload.plan(
                advertiser,
                text,
                campaign_id=campaign.id if campaign else None,
                reason=form.get("reason", ""),
                campaign_name=campaign.name if campaign else "",
            )
        except Invalid as exc:
            if len(kept["reason"]) > review.REASON_MAX:
                kept["reason"] = ""
            return render_error(PAGE, exc, kept, **await _context(advertiser, review.Filters()))
        content, digest = csv_upload.seal(_upload_key(request), advertiser.id, plan.campaign_id, plan.reason, text)
        totals = plan.totals()
        return render(
            PREVIEW_PAGE,
            plan=plan,
            counts=plan.counts(),
            totals=totals,
            campaign=campaign,
            balances=await csv_upload.balances(advertiser, list(totals)),
            content=content,
            digest=digest,
            money=money,
            applied=False,
        )

    @post("/upload/apply", request_max_body_size=csv_upload.BODY_LIMIT)
    async def apply_upload(self, request: Request) -> Template:
        """Step two: the previewed text, unaltered (its MAC says so), re-checked and applied."""
        advertiser = _user(request)
        form = await form_data(request)
        try:
            campaign = await _campaign(advertiser, form.get("campaign", ""))
            campaign_id = campaign.id if campaign else None
            text = csv_upload.unseal(
                _upload_key(request),
                advertiser.id,
                campaign_id,
                form.get("reason", ""),
                form.get("content", ""),
                form.get("digest", ""),
            )
            await _store_own_clicks(request)  # as in `decide`: the self_conversion rule's click rows
            applied = await csv_upload.apply(
                advertiser,
                text,
                campaign_id=campaign_id,
                reason=form.get("reason", ""),
                campaign_name=campaign.name if campaign else "",
            )
        except Invalid as exc:
            return render_error(PAGE, exc, {"upload": "1"}, **await _context(advertiser, review.Filters()))
        return render(PREVIEW_PAGE, applied=applied, notice=csv_upload.summary(applied), campaign=campaign, money=money)


async def _campaign(advertiser: CurrentUser, raw: str) -> CampaignListing | None:
    """The campaign an upload is for (None: any of the advertiser's), or Invalid if it is not theirs."""
    raw = (raw or "").strip()
    if not raw:
        return None
    for campaign in await campaigns.list_for_advertiser(advertiser):
        if str(campaign.id) == raw:
            return campaign
    raise Invalid(_("Pick a campaign from the list."), field="campaign")


def _upload_key(request: Request) -> bytes:
    return hmac.new(settings_of(request).secret_key.encode(), b"conversion-upload", hashlib.sha256).digest()
