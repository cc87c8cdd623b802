"""The publisher's payouts page (their Stripe payout account, their money and their payout history), one
payout line's page, and the account and the history as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Router, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import PublisherStatus, Role
from server.billing import stripe_api
from server.core import money
from server.core.errors import Conflict, NotFound
from server.core.i18n import _
from server.http.pages import render, settings_of
from server.http.web import current_user, requires_role
from server.payouts import connect, history
from server.payouts import service as payouts
from server.reports import earnings

PAGE = "publisher/payouts.html"
LINE_PAGE = "publisher/payout_line.html"
HANDOVER_PAGE = "publisher/payouts_handover.html"
RETURN_PAGE = "publisher/payouts_return.html"


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted a publisher


# ?page=N of the payout history (page 1 is the newest), on the page and in the API.
HistoryPageNumber = Annotated[int, QueryParameter(ge=1, le=100_000, description="Page of the history, 1 = newest")]


async def _page(request: Request, *, page: int = 1, **extra: Any) -> dict[str, Any]:
    publisher = _user(request)
    profile = await accounts.publisher_profile(publisher.id)
    context: dict[str, Any] = {
        "account": await connect.account_of(publisher.id),
        "states": connect.AccountState,
        "approved": profile["status"] == PublisherStatus.approved.value,
        "stripe_ready": stripe_api.configured(settings_of(request)),
        "balances": await earnings.money_of(publisher.id),
        "money": money,
        # The schedule, minimums and holds are the payout cycle's (server/payouts/service.py).
        "previews": await payouts.next_payout_preview(publisher.id),
        # Only this publisher's own lines and carry-overs (server/payouts/history.py).
        "history": await history.lines_of(publisher.id, page=page),
        "carried": await history.carried_of(publisher.id),
        "paid": await history.paid_to_you(publisher.id),  # lifetime, and the last payout, by currency
    }
    context.update(extra)
    return context


async def _onboarding_url(request: Request, step: Any) -> str:
    """A Stripe onboarding link from `step` (start, or a fresh link for the same account)."""
    settings = settings_of(request)
    if not stripe_api.configured(settings):
        raise Conflict(_("Payouts are not set up on this affnet (no Stripe key)."))
    async with connect.gateway(settings) as gateway:
        return await step(_user(request), gateway, settings.base_url)


class PublisherPayouts(Controller):
    path = "/publisher/payouts"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def index(self, request: Request, page: HistoryPageNumber = 1) -> Template:
        return render(PAGE, **await _page(request, page=page))

    @get("/lines/{line_id:int}")
    async def line(self, request: Request, line_id: FromPath[int]) -> Template:
        """One payout line of the publisher's; another publisher's line answers 404."""
        return render(LINE_PAGE, line=await history.line_of(_user(request).id, line_id), money=money)

    @post("/setup")
    async def set_up(self, request: Request) -> Template:
        try:
            url = await _onboarding_url(request, connect.start_onboarding)
        except Conflict as exc:
            return render(PAGE, status_code=exc.status_code, error=exc.message, **await _page(request))
        # Not a 303 to Stripe: the CSP's form-action 'self' (server/http/web.py) makes browsers block a form
        # POST that redirects to another origin. A page that moves on by itself is no form submission.
        return render(HANDOVER_PAGE, onboarding_url=url)

    @get("/refresh")
    async def refresh(self, request: Request) -> Template:
        """Stripe sends the publisher here when their onboarding link expired or was used: a fresh one."""
        try:
            url = await _onboarding_url(request, connect.refresh_link)
        except (Conflict, NotFound) as exc:
            return render(PAGE, error=exc.message, **await _page(request))
        return render(HANDOVER_PAGE, onboarding_url=url)

    @get("/return")
    async def back_from_stripe(self, request: Request) -> Template:
        # Coming back here proves nothing about the account (the URL is anyone's to type): the account is
        # read from Stripe now, as its `account.updated` would report it.
        publisher = _user(request)
        settings = settings_of(request)
        if not stripe_api.configured(settings):
            account = await connect.account_of(publisher.id)
        else:
            async with connect.gateway(settings) as gateway:
                account = await connect.refresh_from_stripe(publisher, gateway)
        return render(RETURN_PAGE, account=account, states=connect.AccountState)


class PayoutAccountState(msgspec.Struct):
    """The publisher's Stripe payout account, as Stripe last reported it."""

    state: str  # not_set_up | checking | details_due | restricted | ready
    description: str  # the state in words
    stripe_account_id: str  # "" until created
    details_submitted: bool
    payouts_enabled: bool
    requirements_due: list[str]  # Stripe's requirements.currently_due
    disabled_reason: str  # Stripe's requirements.disabled_reason ("" when none)
    country: str
    default_currency: str
    state_at: datetime | None  # when Stripe produced this state


class PayoutHistoryLine(msgspec.Struct):
    """One payout to the publisher, in minor units (1250 is 12.50)."""

    id: int
    period_start: datetime
    period_end: datetime  # the cut-off: the available balance was taken as it stood then
    currency: str
    available_minor: int  # available at the cut-off
    netted_minor: int  # what was owed (clawbacks after an earlier payout), taken out of it
    amount_minor: int  # what this payout pays: available less netted
    status: str  # processing | paid | failed | returned | held
    status_words: str  # the status in words
    detail: str  # why: the failure, finance's reason for a hold, or where the money is
    stripe_transfer_id: str  # the Stripe transfer (tr_...) once paid; "" before
    prepared_at: datetime
    updated_at: datetime  # the last change of status
    returned_minor: int  # given back to the available balance by reversals at Stripe


class PayoutCarriedOver(msgspec.Struct):
    """A period the publisher was not paid in, and why; the balance waited for the next period."""

    period_start: datetime
    period_end: datetime
    currency: str
    balance_minor: int  # available at the cut-off less what was owed
    minimum_minor: int  # the minimum payout that applied
    reason: str  # below_minimum | account_not_ready | on_hold | owes_more_than_earned
    reason_words: str


class PaidToPublisher(msgspec.Struct):
    """What payouts have paid the publisher in one currency so far, in minor units."""

    currency: str
    paid_minor: int  # every transfer that reached them, less what Stripe reversed of it
    last_payout_minor: int  # their newest payout still theirs (at least in part), less what was reversed
    last_paid_at: datetime  # when that payout's transfer was made


class PayoutHistory(msgspec.Struct):
    lines: list[PayoutHistoryLine]  # newest first, one page
    carried_over: list[PayoutCarriedOver]  # the most recent periods, newest first
    page: int
    per_page: int
    has_more: bool  # another page of lines follows
    paid_to_you: list[PaidToPublisher]  # one per currency ever paid in


class PayoutAccountApi(Controller):
    path = "/api/v1"
    guards = [requires_role(Role.publisher)]
    tags = ["payouts"]
    security = [{"apiKey": []}]

    @get("/publisher/payout-account", summary="The publisher's Stripe payout account and whether it can be paid")
    async def payout_account(self, request: Request) -> PayoutAccountState:
        view = await connect.account_of(_user(request).id)
        return PayoutAccountState(
            state=view.state.value,
            description=view.words,
            stripe_account_id=view.stripe_account_id,
            details_submitted=view.details_submitted,
            payouts_enabled=view.payouts_enabled,
            requirements_due=view.requirements_due,
            disabled_reason=view.disabled_reason,
            country=view.country,
            default_currency=view.default_currency,
            state_at=view.state_at,
        )

    @get("/publisher/payouts", summary="The publisher's payouts, newest first, and the periods they were carried over")
    async def payout_history(self, request: Request, page: HistoryPageNumber = 1) -> PayoutHistory:
        publisher_id = _user(request).id
        found = await history.lines_of(publisher_id, page=page)
        lines = [
            PayoutHistoryLine(
                id=line.id,
                period_start=line.period_start,
                period_end=line.period_end,
                currency=line.currency,
                available_minor=line.available_minor,
                netted_minor=line.netted_minor,
                amount_minor=line.amount_minor,
                status=line.status.value,
                status_words=line.words,
                detail=line.detail,
                stripe_transfer_id=line.stripe_transfer_id,
                prepared_at=line.prepared_at,
                updated_at=line.updated_at,
                returned_minor=line.returned_minor,
            )
            for line in found.lines
        ]
        carried = [
            PayoutCarriedOver(
                period_start=c.period_start,
                period_end=c.period_end,
                currency=c.currency,
                balance_minor=c.balance_minor,
                minimum_minor=c.minimum_minor,
                reason=c.reason.value,
                reason_words=c.words,
            )
            for c in await history.carried_of(publisher_id)
        ]
        paid = [
            PaidToPublisher(p.currency, p.paid_minor, p.last_minor, p.last_paid_at)
            for p in (await history.paid_to_you(publisher_id)).values()
        ]
        return PayoutHistory(
            lines=lines,
            carried_over=carried,
            page=found.page,
            per_page=found.per_page,
            has_more=found.has_more,
            paid_to_you=paid,
        )


# server/app.py registers this one name: the page and the JSON API, each guarded.
PublisherPayoutAccount = Router(path="/", route_handlers=[PublisherPayouts, PayoutAccountApi])
