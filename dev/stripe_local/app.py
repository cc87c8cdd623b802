"""The stand-in as one ASGI app: the /v1 API, the pages, and the test controls under /_local/.

The controls need no key: the stand-in listens on loopback only and holds no real money."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from litestar import Litestar, Request, Response, delete, get, post

from dev.stripe_local import balance, connect, disputes, pages, payments
from dev.stripe_local.api import stripe_api
from dev.stripe_local.store import Config, Store, StripeError
from dev.stripe_local.webhooks import Deliverer, signature_header

log = logging.getLogger("stripe_local")


def _store(request: Request) -> Store:
    return request.app.state.store


def _deliverer(request: Request) -> Deliverer:
    return request.app.state.deliverer


async def _params(request: Request) -> dict[str, Any]:
    """A control's parameters: a JSON object, a form, or the query string."""
    body = await request.body()
    if body and request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(body)
    return {**dict(parse_qsl(request.url.query or "")), **dict(parse_qsl(body.decode(), keep_blank_values=True))}


def _answer(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, indent=2).encode(), status_code=status, media_type="application/json")


def _control(fn):
    """Run a control, answering a StripeError as Stripe's error object."""

    async def run(request: Request) -> Response:
        try:
            return await fn(request)
        except StripeError as exc:
            return _answer(exc.body(), exc.status)

    run.__name__ = fn.__name__
    return run


@get("/_local/requests", sync_to_thread=False)
def list_requests(request: Request) -> Response:
    """Every API request so far (method, path, idempotency key or None, status), oldest first."""
    return _answer({"data": _store(request).requests})


@delete("/_local/requests", status_code=204, sync_to_thread=False)
def clear_requests(request: Request) -> None:
    _store(request).requests.clear()


@get("/_local/deliveries", sync_to_thread=False)
def list_deliveries(request: Request) -> Response:
    return _answer({"data": _deliverer(request).attempts})


def _yes(value: Any) -> bool:
    return str(value or "").lower() in ("1", "true", "yes")


@post("/_local/webhook_endpoint", status_code=200)
async def set_webhook_endpoint(request: Request) -> Response:
    """url= sets where events go (empty: nowhere); secret= optionally replaces the signing secret. With
    connect=true: the Connect endpoint, which receives the events of connected accounts (and only those)."""
    params = await _params(request)
    config = _store(request).config
    if _yes(params.get("connect")):
        config.connect_webhook_url = params.get("url") or None
        if params.get("secret"):
            config.connect_webhook_secret = params["secret"]
        return _answer({"url": config.connect_webhook_url, "connect": True})
    config.webhook_url = params.get("url") or None
    if params.get("secret"):
        config.webhook_secret = params["secret"]
    return _answer({"url": config.webhook_url, "connect": False})


@get("/_local/events/{event_id:str}/signed", sync_to_thread=False)
def signed_event(request: Request) -> Response:
    """The exact body a delivery carries, with a fresh `Stripe-Signature` header for it."""
    store = _store(request)
    event_id = request.path_params["event_id"]
    if event_id not in store.payloads:
        return _answer(StripeError(404, f"No such event: '{event_id}'").body(), 404)
    payload = store.payloads[event_id]
    secret = store.endpoint(store.event(event_id))[1]  # the Connect endpoint's secret for a connected account's
    return Response(
        payload, media_type="application/json", headers={"Stripe-Signature": signature_header(payload, secret)}
    )


@post("/_local/events/{event_id:str}/deliver", status_code=200)
@_control
async def redeliver_event(request: Request) -> Response:
    """times=N deliveries of one event; wait=true sends them now, once each, and answers their statuses."""
    store, deliverer = _store(request), _deliverer(request)
    event = store.event(request.path_params["event_id"])
    params = await _params(request)
    times = int(params.get("times", 1))
    if not store.endpoint(event)[0]:
        raise StripeError(
            400,
            "No webhook endpoint is set for this event (POST /_local/webhook_endpoint url=…, "
            "with connect=true for a connected account's events).",
        )
    if _yes(params.get("wait")):
        statuses = [await deliverer.deliver_once(event["id"]) for _ in range(times)]
        return _answer({"event": event["id"], "statuses": statuses})
    deliverer.schedule(event["id"], times)
    return _answer({"event": event["id"], "scheduled": times})


@post("/_local/checkout/sessions/{session_id:str}/pay", status_code=200)
@_control
async def pay_session(request: Request) -> Response:
    """What the Pay button does, without a browser: payment_method=card (default) or sepa_debit (asynchronous: settled
    later by /_local/payment_intents/{id}/settle); card=4000000000000077 makes the funds available at once."""
    params = await _params(request)
    return _answer(
        payments.pay_checkout_session(
            _store(request),
            request.path_params["session_id"],
            params.get("email") or "buyer@example.com",
            method=params.get("payment_method") or "card",
            card=params.get("card") or payments.CARD,
        )
    )


@post("/_local/payment_intents/{intent_id:str}/settle", status_code=200)
@_control
async def settle_payment(request: Request) -> Response:
    """outcome=succeeded or failed: the bank's answer to a processing (SEPA) payment."""
    params = await _params(request)
    return _answer(
        payments.settle_async_payment(_store(request), request.path_params["intent_id"], params.get("outcome", ""))
    )


@post("/_local/clock/advance", status_code=200)
@_control
async def advance_clock(request: Request) -> Response:
    """seconds=N moves this stand-in's clock forward (never back), like Stripe's test clocks: sessions past
    expires_at expire and pending funds become available, at once. Event times follow the moved clock."""
    store = _store(request)
    seconds = int((await _params(request)).get("seconds") or 0)
    if seconds < 0:
        raise StripeError(400, "The clock only moves forward.", param="seconds")
    store.offset += seconds
    balance.advance(store)
    return _answer({"now": store.now(), "offset": store.offset})


@post("/_local/charges/{charge_id:str}/dispute", status_code=200)
@_control
async def dispute_charge(request: Request) -> Response:
    """Open a dispute: amount= (default: what is not refunded), reason= (default fraudulent); inquiry=true opens
    an inquiry (warning_needs_response), which withdraws nothing."""
    params = await _params(request)
    amount = int(params["amount"]) if params.get("amount") else None
    return _answer(
        disputes.open_dispute(
            _store(request),
            request.path_params["charge_id"],
            amount,
            params.get("reason") or "fraudulent",
            inquiry=_yes(params.get("inquiry")),
        )
    )


@post("/_local/disputes/{dispute_id:str}/escalate", status_code=200)
@_control
async def escalate_dispute(request: Request) -> Response:
    """An inquiry becomes a chargeback: the funds are withdrawn now."""
    return _answer(disputes.escalate(_store(request), request.path_params["dispute_id"]))


@post("/_local/disputes/{dispute_id:str}/close", status_code=200)
@_control
async def close_dispute(request: Request) -> Response:
    """outcome=won or lost; warning_closed for an inquiry."""
    params = await _params(request)
    return _answer(
        disputes.close_dispute(_store(request), request.path_params["dispute_id"], params.get("outcome", ""))
    )


@post("/_local/accounts/{account_id:str}/complete_onboarding", status_code=200)
@_control
async def complete_onboarding(request: Request) -> Response:
    """What the onboarding page's Complete button does, without a browser."""
    return _answer(connect.complete_onboarding(_store(request), request.path_params["account_id"]))


@post("/_local/latency", status_code=200)
async def set_latency(request: Request) -> Response:
    """ms=N: every /v1 request waits N milliseconds before it is answered (0: at once)."""
    config = _store(request).config
    config.latency = max(0, int((await _params(request)).get("ms") or 0)) / 1000
    return _answer({"latency_ms": round(config.latency * 1000)})


@post("/_local/accounts/onboarded", status_code=200)
@_control
async def onboarded_accounts(request: Request) -> Response:
    """count=N Express accounts (DE), onboarded with transfers active, as N account creations and N
    Complete clicks would leave them: for tests that pay thousands of publishers (at most 20,000)."""
    count = int((await _params(request)).get("count") or 1)
    if not 1 <= count <= 20_000:
        raise StripeError(400, "count must be between 1 and 20000", param="count")
    store = _store(request)
    spec = {"type": "express", "country": "DE", "capabilities": {"transfers": {"requested": "true"}}}
    made = [connect.create_account(store, dict(spec))["id"] for _ in range(count)]
    for account_id in made:
        connect.complete_onboarding(store, account_id)
    return _answer({"data": made})


@post("/_local/accounts/{account_id:str}/restrict", status_code=200)
@_control
async def restrict_account(request: Request) -> Response:
    return _answer(connect.restrict_account(_store(request), request.path_params["account_id"]))


@post("/_local/accounts/{account_id:str}/fail_next_transfer", status_code=200)
@_control
async def fail_next_transfer(request: Request) -> Response:
    """The next POST /v1/transfers to this account fails: code= (default balance_insufficient), status= (400)."""
    store = _store(request)
    account = store.get(request.path_params["account_id"], "account")
    params = await _params(request)
    failure = {
        "code": params.get("code") or "balance_insufficient",
        "status": int(params.get("status") or 400),
        "message": params.get("message"),
    }
    store.fail_next_transfer[account["id"]] = failure
    return _answer({"account": account["id"], **failure})


@get("/", sync_to_thread=False)
def index() -> Response:
    return Response(
        "affnet's local Stripe stand-in. API under /v1, test controls under /_local/.\n", media_type="text/plain"
    )


def create_app(config: Config) -> Litestar:
    store = Store(config)
    deliverer = Deliverer(store)
    store.on_event = deliverer.schedule

    ticking: list[asyncio.Task] = []

    async def tick() -> None:
        # Stripe expires sessions and releases funds by itself, whether or not anyone is calling the API.
        while True:
            await asyncio.sleep(config.tick_seconds)
            try:
                balance.advance(store)
            except Exception:  # a bad object must not stop the clock
                log.exception("the stand-in's clock tick failed")

    async def startup(app: Litestar) -> None:
        ticking.append(asyncio.get_running_loop().create_task(tick()))

    async def shutdown(app: Litestar) -> None:
        for task in ticking:
            task.cancel()
        await deliverer.close()

    app = Litestar(
        route_handlers=[
            stripe_api,
            list_requests,
            clear_requests,
            list_deliveries,
            set_webhook_endpoint,
            signed_event,
            redeliver_event,
            pay_session,
            settle_payment,
            advance_clock,
            dispute_charge,
            escalate_dispute,
            close_dispute,
            complete_onboarding,
            onboarded_accounts,
            set_latency,
            restrict_account,
            fail_next_transfer,
            index,
            *pages.ROUTES,
        ],
        on_startup=[startup],
        on_shutdown=[shutdown],
        openapi_config=None,
        debug=False,
    )
    app.state.store = store
    app.state.deliverer = deliverer
    return app
