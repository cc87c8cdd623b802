"""The publisher's payouts page (their Stripe payout account and their money) and the account as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Router, get, post
from litestar.response import Template

from server import money
from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import PublisherStatus, Role
from server.billing import stripe_api
from server.errors import Conflict, NotFound
from server.pages import render, settings_of
from server.payouts import connect
from server.payouts import service as payouts
from server.reports import earnings
from server.web import current_user, requires_role

PAGE = "publisher/payouts.html"
HANDOVER_PAGE = "publisher/payouts_handover.html"
RETURN_PAGE = "publisher/payouts_return.html"


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted a publisher


async def _page(request: Request, **extra: Any) -> dict[str, Any]:
    publisher = _user(request)
    profile = await accounts.publisher_profile(publisher.id)
    context: dict[str, Any] = {
        "account": await connect.account_of(publisher.id), "states": connect.AccountState,
        "approved": profile["status"] == PublisherStatus.approved.value,
        "stripe_ready": stripe_api.configured(settings_of(request)),
        "balances": await earnings.money_of(publisher.id), "money": money,
        # The schedule, minimums and holds are the payout cycle's (server/payouts/service.py).
        "previews": await payouts.next_payout_preview(publisher.id),
    }
    context.update(extra)
    return context


async def _onboarding_url(request: Request, step: Any) -> str:
    """A Stripe onboarding link from `step` (start, or a fresh link for the same account)."""
    settings = settings_of(request)
    if not stripe_api.configured(settings):
        raise Conflict("Payouts are not set up on this affnet (no Stripe key).")
    async with connect.gateway(settings) as gateway:
        return await step(_user(request), gateway, settings.base_url)


class PublisherPayouts(Controller):
    path = "/publisher/payouts"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def index(self, request: Request) -> Template:
        return render(PAGE, **await _page(request))

    @post("/setup")
    async def set_up(self, request: Request) -> Template:
        try:
            url = await _onboarding_url(request, connect.start_onboarding)
        except Conflict as exc:
            return render(PAGE, status_code=exc.status_code, error=exc.message, **await _page(request))
        # Not a 303 to Stripe: the CSP's form-action 'self' (server/web.py) makes browsers block a form
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
        # Shows what Stripe's webhook stored; coming back here proves nothing about the account.
        return render(RETURN_PAGE, account=await connect.account_of(_user(request).id), states=connect.AccountState)


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


class PayoutAccountApi(Controller):
    path = "/api/v1"
    guards = [requires_role(Role.publisher)]
    tags = ["payouts"]
    security = [{"apiKey": []}]

    @get("/publisher/payout-account", summary="The publisher's Stripe payout account and whether it can be paid")
    async def payout_account(self, request: Request) -> PayoutAccountState:
        view = await connect.account_of(_user(request).id)
        return PayoutAccountState(
            state=view.state.value, description=view.words, stripe_account_id=view.stripe_account_id,
            details_submitted=view.details_submitted, payouts_enabled=view.payouts_enabled,
            requirements_due=view.requirements_due, disabled_reason=view.disabled_reason, country=view.country,
            default_currency=view.default_currency, state_at=view.state_at)


# server/app.py registers this one name: the page and the JSON API, each guarded.
PublisherPayoutAccount = Router(path="/", route_handlers=[PublisherPayouts, PayoutAccountApi])
