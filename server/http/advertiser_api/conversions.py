"""Advertisers' conversions by API key (/api/v1/advertiser/conversions): the list the conversions
page shows, one conversion, and decisions in bulk (approve, reject, reverse) through the page's own
service (server/conversions/review.py decide, which reverses through reversal.py), so the money
moves as the page moves it: charged once on approval, refunded once on reversal."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, Parameter

from server.accounts.tables import Role
from server.conversions import review
from server.core.errors import Invalid, NotFound
from server.core.i18n import _
from server.http.advertiser_api.common import REUSED_KEY, Id, advertiser, no_control_characters
from server.http.apikit import Cursor, CursorQuery, LimitQuery, SinceQuery, UntilQuery, page, period
from server.http.openapi import refusals
from server.http.web import POSTGRES_MAX_ID, requires_role

Status = Literal["pending", "approved", "rejected", "reversed"]
Action = Literal["approve", "reject", "reverse"]
# The status each action leaves a conversion in: one found there already is "already".
_TARGET = {"approve": "approved", "reject": "rejected", "reverse": "reversed"}


class ConversionOut(msgspec.Struct):
    """One of your conversions as the conversions page shows it."""

    id: int
    txn_id: str
    campaign_id: int
    campaign_name: str
    goal: str
    publisher_id: int
    publisher_name: str  # their public name; an advertiser never sees a publisher's e-mail address
    publisher_site: str
    status: Status
    status_reason: str
    source: Literal["postback", "api", "pixel"]  # how it was reported
    currency: str
    price_minor: int  # what you pay
    publisher_minor: int  # what the publisher earns
    sale_amount_minor: int | None
    converted_at: datetime
    hold_until: datetime  # approved by itself then, unless decided before
    approved_at: datetime | None


class ConversionPage(msgspec.Struct):
    items: list[ConversionOut]
    next_cursor: str | None


class DecisionIn(msgspec.Struct):
    conversion_id: Id
    action: Action
    reason: Annotated[str, msgspec.Meta(max_length=review.REASON_MAX)] | None = None  # required to reject or reverse


class DecisionsIn(msgspec.Struct):
    decisions: Annotated[list[DecisionIn], msgspec.Meta(min_length=1, max_length=review.MAX_DECISIONS)]


class DecisionResult(msgspec.Struct):
    conversion_id: int
    action: Action
    result: Literal["applied", "already", "refused"]  # already: it was in that state; nothing changed
    status: Status | None  # the conversion's status now (None: not one of yours)
    code: str | None = None  # why it was refused, e.g. not_found, not_pending, not_approved, insufficient_funds
    message: str | None = None


class DecisionsOut(msgspec.Struct):
    results: list[DecisionResult]  # one per decision sent, in the same order


def _out(c: review.ConversionListing) -> ConversionOut:
    return ConversionOut(
        id=c.id,
        txn_id=c.txn_id,
        campaign_id=c.campaign_id,
        campaign_name=c.campaign_name,
        goal=c.goal_name,
        publisher_id=c.publisher_id,
        publisher_name=c.publisher_name,
        publisher_site=c.publisher_site,
        status=c.status,  # type: ignore[arg-type]
        status_reason=c.status_reason,
        source=c.source,
        currency=c.currency,
        price_minor=c.advertiser_amount_minor,
        publisher_minor=c.publisher_amount_minor,
        sale_amount_minor=c.sale_amount_minor,
        converted_at=c.converted_at,
        hold_until=c.hold_until,
        approved_at=c.approved_at,
    )


def _refusal(bucket: str, action: str, status: str | None) -> tuple[str, str]:
    """Why a decision the service did not apply was refused: (code, message)."""
    if bucket == "unfunded":
        return "insufficient_funds", _("Your balance cannot cover it: it stays pending; add funds and try again.")
    if bucket == "failed":
        return "try_again", _("It could not be reversed just now (a payout was under way); nothing changed, try again.")
    if bucket == "held":
        return "held", _("Held by a fraud rule: release it in the review queue first.")
    if action == "reverse":
        return "not_approved", _("Only an approved conversion can be reversed; this one is %(status)s.", status=status)
    return "not_pending", _("Only a pending conversion can be decided; this one is %(status)s.", status=status)


async def _store_own_clicks(request: Request) -> None:
    """As the page does before approving: this server's buffered clicks are written first (the
    self_conversion rule needs their rows; a conversion whose click is not stored yet waits)."""
    try:
        await request.app.state.click_buffer.flush()
    except Exception:
        logging.getLogger("affnet.conversions").warning("storing the buffered clicks failed", exc_info=True)


class AdvertiserConversionsApi(Controller):
    path = "/api/v1/advertiser/conversions"
    guards = [requires_role(Role.advertiser)]
    tags = ["advertiser: conversions"]
    security = [{"apiKey": []}]

    @get(
        "",
        responses=refusals((Invalid, "`since` or `until` is no date, or `since` is not before `until`.")),
        summary="Your conversions, newest first",
        description="What the conversions page lists, over all your campaigns, page by page (each conversion once).",
    )
    async def list_conversions(
        self,
        request: Request,
        since: SinceQuery = None,
        until: UntilQuery = None,
        status: Annotated[Status | None, Parameter(description="Only conversions in this status")] = None,
        campaign_id: Annotated[
            int | None, Parameter(ge=1, le=POSTGRES_MAX_ID, description="Only this campaign's conversions")
        ] = None,
        txn_id: Annotated[
            str | None, Parameter(description="Only the conversion(s) with your order id", max_length=100)
        ] = None,
        source: Annotated[
            Literal["postback", "api", "pixel"] | None,
            Parameter(
                description="Only conversions reported this way (a pixel can be fired by anyone with a click id)"
            ),
        ] = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 50,
    ) -> ConversionPage:
        start, stop = period(since, until)
        rows = await review.list_conversions(
            advertiser(request),
            status=status,
            campaign_id=campaign_id,
            txn_id=txn_id,
            source=source,
            since=start,
            until=stop,
            before_id=Cursor.decode(cursor),
            by_id=True,
            limit=limit + 1,
        )
        items, next_cursor = page(rows, limit)
        return ConversionPage(items=[_out(c) for c in items], next_cursor=next_cursor)

    @get("/{conversion_id:int}", summary="One of your conversions")
    async def show_conversion(self, request: Request, conversion_id: FromPath[int]) -> ConversionOut:
        rows = await review.list_conversions(advertiser(request), conversion_id=conversion_id, limit=1)
        if not rows:
            raise NotFound(_("There is no such conversion."))
        return _out(rows[0])

    @post(
        "/decisions",
        status_code=200,
        responses=refusals(
            REUSED_KEY,
            (Invalid, "A decision to reject or reverse has no reason (`error.field` names it): nothing was decided."),
        ),
        summary="Approve, reject or reverse conversions, up to 500 at once",
        description="Each decision goes through the conversions page's service: approving charges your balance "
        "(once, even if approved again), rejecting needs a reason the publisher sees, reversing an approved "
        "conversion refunds you its price (once) and needs a reason. Decisions are applied in the order sent and "
        "answered one result each, in that order: `applied`, `already` (it was in that state: nothing changed) or "
        "`refused` with a `code` and a `message` (another advertiser's conversion is `not_found`). A decision "
        "without a required reason refuses the whole request (422) before anything changes.",
    )
    async def decide(self, request: Request, data: JSONBody[DecisionsIn]) -> DecisionsOut:
        user = advertiser(request)
        for n, item in enumerate(data.decisions):
            reason = (item.reason or "").strip()
            if item.action in ("reject", "reverse") and not reason:
                raise Invalid(
                    _("Give a reason for rejecting: the publisher sees it.")
                    if item.action == "reject"
                    else _("Give a reason for reversing: the publisher sees it."),
                    field=f"decisions[{n}].reason",
                )
            no_control_characters(reason, f"decisions[{n}].reason")
        owned = await review.owned_statuses(user, [d.conversion_id for d in data.decisions])
        if any(d.action == "approve" for d in data.decisions):
            await _store_own_clicks(request)
        results: list[DecisionResult] = []
        # Runs of the same action and reason go to the service together, in order; a conversion met
        # twice starts a new run, so its second decision sees what the first did.
        run: list[DecisionIn] = []

        async def flush() -> None:
            if not run:
                return
            first = run[0]
            ids = [d.conversion_id for d in run]
            before = {i: owned[i] for i in ids}
            decision = await review.decide(user, ids, first.action, (first.reason or "").strip())
            buckets = {
                i: name
                for name in ("approved", "rejected", "reversed", "skipped", "unfunded", "failed", "held")
                for i in getattr(decision, name)
            }
            after = await review.owned_statuses(user, ids)
            owned.update(after)
            for d in run:
                bucket = buckets.get(d.conversion_id, "skipped")
                status = after.get(d.conversion_id)
                if bucket in ("approved", "rejected", "reversed"):
                    results.append(DecisionResult(d.conversion_id, d.action, "applied", status))  # type: ignore[arg-type]
                elif bucket == "skipped" and before[d.conversion_id] == _TARGET[d.action]:
                    results.append(DecisionResult(d.conversion_id, d.action, "already", status))  # type: ignore[arg-type]
                else:
                    code, message = _refusal(bucket, d.action, status)
                    results.append(DecisionResult(d.conversion_id, d.action, "refused", status, code, message))  # type: ignore[arg-type]
            run.clear()

        for item in data.decisions:
            if item.conversion_id not in owned:
                await flush()
                results.append(
                    DecisionResult(
                        item.conversion_id,
                        item.action,
                        "refused",
                        None,
                        "not_found",
                        _("There is no such conversion."),
                    )
                )
                continue
            same = run and (run[0].action, (run[0].reason or "").strip()) == (item.action, (item.reason or "").strip())
            if not same or any(d.conversion_id == item.conversion_id for d in run):
                await flush()
            run.append(item)
        await flush()
        return DecisionsOut(results=results)
