"""Advertisers' conversions page: the list with filters, and approving or rejecting in bulk."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Template

from server import money
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.conversions import review
from server.conversions.tables import ConversionStatus
from server.errors import Conflict, Invalid
from server.pages import form_data, render, render_error
from server.web import current_user, requires_role

PAGE = "advertiser/conversions.html"


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted an advertiser


async def _context(advertiser: CurrentUser, filters: review.Filters | None, **extra: Any) -> dict[str, Any]:
    """The page: the advertiser's campaigns for the filter, and the conversions the filters match
    (none when the filters themselves were invalid)."""
    rows = await review.list_conversions(advertiser, **vars(filters)) if filters is not None else []
    return {"conversions": rows, "campaigns": await campaigns.list_for_advertiser(advertiser),
            "statuses": [s.value for s in ConversionStatus], "money": money, "limit": review.LIST_LIMIT,
            "filters": (filters or review.Filters()).as_form(), **extra}


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
                raise Invalid("That selection is not a list of conversions.", field="conversion_id")
            decision = await review.decide(advertiser, ids, form.get("action", ""), form.get("reason", ""))
        except (Invalid, Conflict) as exc:
            return render_error(PAGE, exc, {"reason": form.get("reason", ""), "action": form.get("action", "")},
                                **await _context(advertiser, filters))
        return render(PAGE, notice=review.summary(decision), decision=decision.as_dict(),
                      **await _context(advertiser, filters))
