"""Advertisers' billing pages (balance, top-ups, auto-pause threshold) and Stripe's webhook."""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.billing import service as billing
from server.billing import stripe_api
from server.billing.tables import FundingStatus
from server.core import jobs, money
from server.core.errors import Conflict, Invalid
from server.core.i18n import _
from server.http.pages import form_data, render, render_error, see_other, settings_of
from server.http.web import PUBLIC, current_user, requires_role
from server.invoicing import invoices
from server.stripe_events import service as stripe_events

log = logging.getLogger("affnet.billing")

PAGE = "advertiser/billing.html"
RETURN_PAGE = "advertiser/billing_return.html"
CHECKOUT_PAGE = "advertiser/billing_checkout.html"
CONFIRM_PAGE = "advertiser/billing_confirm.html"
EVENTS_PAGE = "finance/stripe_events.html"


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted an advertiser


async def _page(advertiser: CurrentUser, request: Request, **extra: Any) -> dict[str, Any]:
    currencies = await billing.currencies_of(advertiser.id)
    prefs = await billing.settings_of(advertiser.id)
    low, high = await billing.limits(currencies[0])
    context: dict[str, Any] = {
        "money": money,
        "balances": await billing.balances_of(advertiser.id),
        "fundings": await billing.fundings_of(advertiser.id),
        "currencies": currencies,
        "minimum": money.display(low, currencies[0]),
        "maximum": money.display(high, currencies[0]),
        "payments_ready": stripe_api.configured(settings_of(request)),
        "prefs": prefs,
        "form": {"currency": currencies[0], "amount": ""},
        "settings_form": {
            "currency": prefs["currency"] if prefs else currencies[0],
            "auto_pause_threshold": money.form_text(prefs["auto_pause_threshold_minor"], prefs["currency"])
            if prefs
            else "0",
        },
    }
    try:  # the VAT each top-up bears, from the billing details; none saved yet: the page asks for them
        context["vat_label"] = (await invoices.quote(advertiser.id, 0, currencies[0])).vat_label()
    except Conflict:
        context["vat_label"] = None
    if request.query_params.get("canceled"):
        context["notice"] = _("The payment was cancelled; nothing was charged.")
    context.update(extra)
    return context


class AdvertiserBilling(Controller):
    path = "/advertiser/billing"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("")
    async def index(self, request: Request) -> Template:
        canceled, settings = request.query_params.get("canceled", ""), settings_of(request)
        if canceled and stripe_api.configured(settings):
            # Back from Checkout by its cancel link: the top-up ends now rather than when Stripe
            # expires the session, a day later.
            try:
                async with stripe_api.gateway(settings) as gateway:
                    await billing.abandon_funding(_user(request), canceled, gateway)
            except stripe_api.GatewayError as exc:
                log.warning("expiring the checkout session of funding %s failed: %s", canceled[:20], exc)
        return render(PAGE, **await _page(_user(request), request))

    @post("/fund")
    async def fund(self, request: Request) -> Template:
        form = await form_data(request)
        settings = settings_of(request)
        try:
            if not stripe_api.configured(settings):
                raise Conflict(_("Card payments are not set up on this affnet (no Stripe key)."))
            # The amount as understood is shown, and confirmed, before Stripe is asked for anything:
            # the confirmation carries the minor units it showed, and a different reading this time
            # (another locale) shows the page again instead of charging.
            amount, currency = await billing.parse_funding(_user(request).id, form)
            priced = await invoices.quote(_user(request).id, amount, currency)  # the VAT, or: billing details first
            if form.get("confirmed_minor") != str(amount):
                return render(
                    CONFIRM_PAGE,
                    amount_text=form.get("amount", ""),
                    currency=currency,
                    amount_minor=amount,
                    shown=money.display_local(amount, currency),
                    vat_label=priced.vat_label(),
                    vat_shown=money.display_local(priced.vat_minor, currency),
                    total_shown=money.display_local(priced.total_minor, currency),
                    changed=bool(form.get("confirmed_minor")),
                )
            async with stripe_api.gateway(settings) as gateway:
                url = await billing.start_funding(_user(request), form, gateway, settings.base_url)
        except (Invalid, Conflict) as exc:
            context = await _page(_user(request), request)
            context.pop("form")
            return render_error(PAGE, exc, form, **context)
        # Not a 303 to Stripe: the CSP's form-action 'self' (server/http/web.py) makes browsers block a form
        # POST that redirects to another origin. A page that moves on by itself is no form submission.
        return render(CHECKOUT_PAGE, checkout_url=url)

    @get("/return")
    async def back_from_stripe(self, request: Request, session_id: FromQuery[str] = "") -> Template:
        if not session_id:
            return render(PAGE, **await _page(_user(request), request))
        funding = await billing.returned(_user(request), session_id)
        credited = funding.status == FundingStatus.credited.value
        return render(
            RETURN_PAGE,
            funding=funding,
            credited=credited,
            money=money,
            balances=await billing.balances_of(_user(request).id) if credited else [],
        )

    @post("/settings")
    async def save_settings(self, request: Request) -> Template | Response:
        form = await form_data(request)
        try:
            await billing.save_settings(_user(request), form)
        except Invalid as exc:
            context = await _page(_user(request), request)
            context["settings_form"] = {k: v for k, v in form.items() if k != "_csrf_token"}
            return render(PAGE, status_code=exc.status_code, error=exc.message, error_field=exc.field, **context)
        prefs = await billing.settings_of(_user(request).id)
        notice = (
            _(
                "Billing settings saved: campaigns in %(currency)s pause below %(threshold)s.",
                currency=prefs["currency"],
                threshold=money.display_local(prefs["auto_pause_threshold_minor"], prefs["currency"]),
            )
            if prefs
            else _("Billing settings saved.")
        )
        return render(PAGE, **await _page(_user(request), request, notice=notice))


@post("/stripe/webhook", opt=PUBLIC, include_in_schema=False, status_code=200)
async def stripe_webhook(request: Request) -> Response:
    """Stripe's events about affnet's own account (payments, refunds, disputes, transfers)."""
    return await _receive(request, settings_of(request).stripe_webhook_secret, connect=False)


@post("/stripe/connect-webhook", opt=PUBLIC, include_in_schema=False, status_code=200)
async def stripe_connect_webhook(request: Request) -> Response:
    """Stripe's Connect endpoint: events of publishers' connected accounts (`account.updated`), signed
    with that endpoint's own secret."""
    return await _receive(request, settings_of(request).stripe_connect_webhook_secret, connect=True)


async def _receive(request: Request, secret: str, *, connect: bool) -> Response:
    """Verified over the raw body, recorded once, processed by the worker."""
    body = await request.body()
    try:
        recorded = await stripe_events.record(body, request.headers.get("stripe-signature"), secret, connect=connect)
    except stripe_events.BadWebhook as exc:
        return Response({"error": {"code": exc.code, "message": exc.message}}, status_code=400)
    if not recorded.processed:  # committed: the worker can see it; job id = event id, one job per event
        event_id = recorded.event_id
        await jobs.enqueue(request.app.state.redis, stripe_events.PROCESS_JOB, event_id, job_id=event_id)
    return Response({"received": True, "duplicate": not recorded.new}, status_code=200)


class FinanceStripeEvents(Controller):
    """Stripe events that could not be applied yet: what failed and how often, and a way to try again."""

    path = "/finance/stripe-events"
    guards = [requires_role(Role.finance)]
    include_in_schema = False

    @get("")
    async def index(self) -> Template:
        return render(EVENTS_PAGE, events=await stripe_events.unprocessed(), max_attempts=stripe_events.MAX_ATTEMPTS)

    @post("/{event_id:str}/retry")
    async def retry(self, request: Request, event_id: FromPath[str]) -> Template | Redirect:
        try:
            await stripe_events.retry(event_id, actor_id=_user(request).id)
        except Conflict as exc:
            return render(
                EVENTS_PAGE,
                status_code=exc.status_code,
                error=exc.message,
                events=await stripe_events.unprocessed(),
                max_attempts=stripe_events.MAX_ATTEMPTS,
            )
        retry_id = f"{event_id}:retry:{time.time_ns()}"  # a new job: the event's own may be spent
        await jobs.enqueue(request.app.state.redis, stripe_events.PROCESS_JOB, event_id, job_id=retry_id)
        return see_other("/finance/stripe-events")
