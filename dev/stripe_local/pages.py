"""The stand-in's pages a browser sees: Checkout (Pay / Cancel), the receipt, and Connect onboarding.

Plain HTML from autoescaping Jinja templates, no external assets."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from jinja2 import DictLoader, Environment
from litestar import Request, Response, get, post
from litestar.response import Redirect

from dev.stripe_local import connect, payments
from dev.stripe_local.objects import format_amount
from dev.stripe_local.store import Store, StripeError

_BASE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{% block title %}{% endblock %}
 · Stripe (local)</title><meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1a1f36}
.box{border:1px solid #e3e8ee;border-radius:8px;padding:1.5rem}.amount{font-size:2rem;font-weight:600}
button{font-size:1rem;padding:.6rem 1.4rem;border-radius:6px;border:1px solid #635bff;cursor:pointer}
.primary{background:#635bff;color:#fff}.secondary{background:#fff;color:#635bff}.note{color:#697386;font-size:.85rem}
table{width:100%;border-collapse:collapse}td{padding:.3rem 0}td.r{text-align:right}</style></head>
<body><p class="note">Local Stripe stand-in (test mode): no real money moves.</p>{% block body %}{% endblock %}
</body></html>"""

_PAY = """{% extends "base" %}{% block title %}Pay{% endblock %}{% block body %}<div class="box">
<h1>Checkout</h1>
{% if error %}<p role="alert">{{ error }}</p>{% endif %}
<table>{% for item in items %}<tr><td>{{ item.description }} × {{ item.quantity }}</td>
<td class="r">{{ money(item.amount_total, item.currency) }}</td></tr>{% endfor %}</table>
<p>Total due</p><p class="amount" data-testid="amount">{{ money(session.amount_total, session.currency) }}</p>
{% if session.status == "open" %}
<form method="post" action="/pay/{{ session.id }}"><p><label>Email
<input type="email" name="email" value="{{ session.customer_email or 'buyer@example.com' }}"></label></p>
<fieldset><legend>Pay with</legend>
<p><label><input type="radio" name="card" value="4242424242424242" checked> Test card 4242 4242 4242 4242
(succeeds; funds available after the usual delay)</label></p>
<p><label><input type="radio" name="card" value="4000000000000077"> Test card 4000 0000 0000 0077
(succeeds; funds available at once)</label></p>
<p><label><input type="radio" name="card" value="sepa_debit"> SEPA Direct Debit (completes unpaid; the bank
answers later)</label></p></fieldset>
<button type="submit" class="primary">Pay {{ money(session.amount_total, session.currency) }}</button></form>
{% if session.cancel_url %}<form method="post" action="/pay/{{ session.id }}/cancel">
<p><button type="submit" class="secondary">Cancel</button></p></form>{% endif %}
{% elif session.status == "complete" %}<p>This session is already paid.</p>
{% else %}<p>This Checkout Session has expired.</p>{% endif %}
</div>{% endblock %}"""

_RECEIPT = """{% extends "base" %}{% block title %}Receipt{% endblock %}{% block body %}<div class="box">
<h1>Receipt</h1><p class="amount">{{ money(charge.amount, charge.currency) }}</p>
<table><tr><td>Charge</td><td class="r">{{ charge.id }}</td></tr>
<tr><td>Paid by</td><td class="r">{{ charge.billing_details.email }}</td></tr>
<tr><td>Card</td><td class="r">Visa •••• {{ charge.payment_method_details.card.last4 }}</td></tr>
{% if charge.amount_refunded %}<tr><td>Refunded</td>
<td class="r">{{ money(charge.amount_refunded, charge.currency) }}</td></tr>{% endif %}</table>
</div>{% endblock %}"""

_ONBOARD = """{% extends "base" %}{% block title %}Connect onboarding{% endblock %}{% block body %}<div class="box">
<h1>Set up payouts</h1><p>Account {{ account.id }}{% if account.email %} ({{ account.email }}){% endif %}</p>
<p class="note">Stands in for Stripe's Express onboarding: identity, bank account and terms in one click.</p>
<form method="post"><input type="hidden" name="action" value="complete">
<p><button type="submit" class="primary">Complete</button></p></form>
<form method="post"><input type="hidden" name="action" value="leave">
<p><button type="submit" class="secondary">Return without finishing</button></p></form>
</div>{% endblock %}"""

_ENV = Environment(
    loader=DictLoader({"base": _BASE, "pay": _PAY, "receipt": _RECEIPT, "onboard": _ONBOARD}), autoescape=True
)
_ENV.globals["money"] = format_amount
assert _ENV.autoescape is True  # noqa: S101 - every value on these pages is escaped


def _html(template: str, status: int = 200, **context: Any) -> Response:
    return Response(_ENV.get_template(template).render(**context), status_code=status, media_type="text/html")


def _store(request: Request) -> Store:
    return request.app.state.store


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def _session_or_404(store: Store, session_id: str) -> dict[str, Any] | None:
    session = store.objects.get(session_id)
    return session if session is not None and session["object"] == "checkout.session" else None


@get("/pay/{session_id:str}", sync_to_thread=False)
def checkout_page(request: Request) -> Response:
    store = _store(request)
    session = _session_or_404(store, request.path_params["session_id"])
    if session is None:
        return Response("No such Checkout Session", status_code=404, media_type="text/plain")
    return _html("pay", session=session, items=store.line_items[session["id"]], error=None)


@post("/pay/{session_id:str}", status_code=303)
async def checkout_pay(request: Request) -> Response:
    store = _store(request)
    session = _session_or_404(store, request.path_params["session_id"])
    if session is None:
        return Response("No such Checkout Session", status_code=404, media_type="text/plain")
    form = await _form(request)
    email = form.get("email") or "buyer@example.com"
    choice = form.get("card") or payments.CARD
    try:
        session = payments.pay_checkout_session(
            store,
            session["id"],
            email,
            method="sepa_debit" if choice == "sepa_debit" else "card",
            card=payments.CARD if choice == "sepa_debit" else choice,
        )
    except StripeError as exc:
        return _html("pay", status=400, session=session, items=store.line_items[session["id"]], error=exc.message)
    return Redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]), status_code=303)


@post("/pay/{session_id:str}/cancel", status_code=303, sync_to_thread=False)
def checkout_cancel(request: Request) -> Response:
    session = _session_or_404(_store(request), request.path_params["session_id"])
    if session is None or not session["cancel_url"]:
        return Response("No cancel URL", status_code=404, media_type="text/plain")
    return Redirect(session["cancel_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]), status_code=303)


@get("/receipts/{charge_id:str}", sync_to_thread=False)
def receipt_page(request: Request) -> Response:
    charge = _store(request).objects.get(request.path_params["charge_id"])
    if charge is None or charge["object"] != "charge":
        return Response("No such receipt", status_code=404, media_type="text/plain")
    return _html("receipt", charge=charge)


def _link(store: Store, token: str) -> dict[str, Any] | None:
    link = store.account_links.get(token)
    if link is None:
        return None
    return link


@get("/connect/onboarding/{token:str}", sync_to_thread=False)
def onboarding_page(request: Request) -> Response:
    store = _store(request)
    link = _link(store, request.path_params["token"])
    if link is None:
        return Response("No such account link", status_code=404, media_type="text/plain")
    if link["used"] or link["expires_at"] < store.now():
        # As on Stripe, a used or expired link sends the user to refresh_url, where the platform makes a new one.
        return Redirect(link["refresh_url"] or "/", status_code=303)
    return _html("onboard", account=store.objects[link["account"]])


@post("/connect/onboarding/{token:str}", status_code=303)
async def onboarding_submit(request: Request) -> Response:
    store = _store(request)
    link = _link(store, request.path_params["token"])
    if link is None:
        return Response("No such account link", status_code=404, media_type="text/plain")
    if link["used"] or link["expires_at"] < store.now():
        return Redirect(link["refresh_url"] or "/", status_code=303)
    if (await _form(request)).get("action") == "complete":
        link["used"] = True
        connect.complete_onboarding(store, link["account"])
    return Redirect(link["return_url"] or "/", status_code=303)


ROUTES = [checkout_page, checkout_pay, checkout_cancel, receipt_page, onboarding_page, onboarding_submit]
