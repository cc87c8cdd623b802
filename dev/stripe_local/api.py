"""The /v1 API: authentication, Stripe's form decoding, idempotency keys, the request log, and the routes."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any

from litestar import Request, Response, route

from dev.stripe_local import balance, connect, disputes, forms, payments
from dev.stripe_local.objects import expand, list_object
from dev.stripe_local.store import API_VERSION, Idempotent, Store, StripeError, not_found

Handler = Callable[..., dict[str, Any]]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def _on(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, re.compile(f"^{pattern}$"), fn))
        return fn

    return register


_ID = r"([A-Za-z0-9_]+)"


@_on("POST", "/v1/checkout/sessions")
def _create_session(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    return payments.create_checkout_session(store, params)


@_on("GET", f"/v1/checkout/sessions/{_ID}")
def _get_session(store: Store, params: dict[str, Any], session_id: str) -> dict[str, Any]:
    return payments.retrieve_checkout_session(store, session_id, forms.expand_list(params))


@_on("GET", f"/v1/checkout/sessions/{_ID}/line_items")
def _session_items(store: Store, params: dict[str, Any], session_id: str) -> dict[str, Any]:
    store.get(session_id, "checkout.session", "checkout session")
    return list_object(f"/v1/checkout/sessions/{session_id}/line_items", store.line_items[session_id])


@_on("POST", f"/v1/checkout/sessions/{_ID}/expire")
def _expire_session(store: Store, params: dict[str, Any], session_id: str) -> dict[str, Any]:
    return payments.expire_checkout_session(store, session_id)


def _getter(kind: str, label: str | None = None) -> Handler:
    def fetch(store: Store, params: dict[str, Any], object_id: str) -> dict[str, Any]:
        return store.get(object_id, kind, label)

    return fetch


for _path, _kind, _label in [
    ("payment_intents", "payment_intent", "payment_intent"),
    ("charges", "charge", None),
    ("balance_transactions", "balance_transaction", None),
    ("refunds", "refund", None),
    ("disputes", "dispute", None),
    ("events", "event", None),
    ("accounts", "account", None),
    ("transfers", "transfer", None),
]:
    _on("GET", f"/v1/{_path}/{_ID}")(_getter(_kind, _label))


@_on("POST", "/v1/refunds")
def _create_refund(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    return payments.create_refund(store, params)


@_on("GET", "/v1/events")
def _list_events(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    limit = forms.integer(params.get("limit", "10"), "limit", 1)
    if limit > 100:
        raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
    events = list(reversed(store.events))  # newest first, as Stripe lists them
    if params.get("type"):
        events = [e for e in events if e["type"] == params["type"]]
    if params.get("starting_after"):
        ids = [e["id"] for e in events]
        if params["starting_after"] not in ids:
            raise StripeError(400, f"No such event: '{params['starting_after']}'", param="starting_after")
        events = events[ids.index(params["starting_after"]) + 1 :]
    return list_object("/v1/events", events[:limit], has_more=len(events) > limit) | {"total_count": None}


@_on("POST", "/v1/accounts")
def _create_account(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    return connect.create_account(store, params)


@_on("POST", "/v1/account_links")
def _create_account_link(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    return connect.create_account_link(store, params)


@_on("POST", "/v1/transfers")
def _create_transfer(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    return connect.create_transfer(store, params)


@_on("GET", "/v1/transfers")
def _list_transfers(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """Newest first, filtered by destination and transfer_group, as Stripe lists them."""
    limit = forms.integer(params.get("limit", "10"), "limit", 1)
    if limit > 100:
        raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
    transfers = [
        o
        for o in reversed(list(store.objects.values()))
        if o["object"] == "transfer"
        and all(not params.get(f) or o.get(f) == params[f] for f in ("destination", "transfer_group"))
    ]
    if params.get("starting_after"):
        ids = [t["id"] for t in transfers]
        if params["starting_after"] not in ids:
            raise StripeError(400, f"No such transfer: '{params['starting_after']}'", param="starting_after")
        transfers = transfers[ids.index(params["starting_after"]) + 1 :]
    return list_object("/v1/transfers", transfers[:limit], has_more=len(transfers) > limit)


@_on("GET", f"/v1/transfers/{_ID}/reversals")
def _list_reversals(store: Store, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
    return connect.list_reversals(store, transfer_id, params)


@_on("GET", f"/v1/transfers/{_ID}/reversals/{_ID}")
def _get_reversal(store: Store, params: dict[str, Any], transfer_id: str, reversal_id: str) -> dict[str, Any]:
    reversal = store.get(reversal_id, "transfer_reversal", "transfer reversal")
    if reversal["transfer"] != transfer_id:
        raise not_found("transfer reversal", reversal_id)
    return reversal


@_on("GET", "/v1/balance")
def _get_balance(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    return balance.balance_object(store)


@_on("POST", f"/v1/disputes/{_ID}")
def _update_dispute(store: Store, params: dict[str, Any], dispute_id: str) -> dict[str, Any]:
    return disputes.update_dispute(store, dispute_id, params)


@_on("POST", f"/v1/transfers/{_ID}/reversals")
def _create_reversal(store: Store, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
    return connect.create_reversal(store, transfer_id, params)


def _authenticate(store: Store, request: Request) -> None:
    header = request.headers.get("authorization", "")
    key = ""
    if header.lower().startswith("bearer "):
        key = header[7:].strip()
    elif header.lower().startswith("basic "):  # curl -u sk_test_…:
        try:
            key = base64.b64decode(header[6:].strip()).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            key = ""
    if not key:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    expected = store.config.secret_key
    if (expected is not None and key != expected) or (expected is None and not key.startswith("sk_test_")):
        raise StripeError(401, f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}", code="api_key_invalid")


def _route(method: str, path: str) -> tuple[Handler, tuple[str, ...]]:
    allowed = False
    for route_method, pattern, fn in _ROUTES:
        match = pattern.match(path)
        if match:
            if route_method == method:
                return fn, match.groups()
            allowed = True
    if allowed:
        raise StripeError(405, f"Unrecognized request URL ({method}: {path}).")
    raise StripeError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://docs.stripe.com or we "
        "can help at https://support.stripe.com/.",
    )


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, indent=2).encode()


@route("/v1/{rest:path}", http_method=["GET", "POST", "DELETE"])
async def stripe_api(request: Request) -> Response:
    store: Store = request.app.state.store
    request_id = store.new_id("req_", 14)
    method, path = request.method.upper(), request.url.path
    key = request.headers.get("idempotency-key")
    entry: dict[str, Any] = {
        "id": request_id,
        "method": method,
        "path": path,
        "query": request.url.query or "",
        "idempotency_key": key,
        "status": None,
    }
    store.requests.append(entry)
    if store.config.latency:
        await asyncio.sleep(store.config.latency)
    headers = {"Request-Id": request_id, "Stripe-Version": request.headers.get("stripe-version", API_VERSION)}
    raw = (await request.body()).decode() if method == "POST" else request.url.query or ""
    balance.advance(store)  # what the time since the last request did (expiries, funds becoming available)
    try:
        _authenticate(store, request)
        params = forms.parse(raw)
        handler, groups = _route(method, path)
        fingerprint = (method, path, json.dumps(params, sort_keys=True))
        if method == "POST" and key:
            if len(key) > 255:
                raise StripeError(400, "Idempotency keys may be at most 255 characters long.")
            saved = store.idempotency.get(key)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    raise StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                        type="idempotency_error",
                    )
                entry["status"], entry["replayed"] = saved.status, True
                return Response(
                    saved.body,
                    status_code=saved.status,
                    media_type="application/json",
                    headers={**headers, "Idempotent-Replayed": "true", "Idempotency-Key": key},
                )
        store.current_request = {"id": request_id, "idempotency_key": key}
        try:
            result = handler(store, params, *groups)
        finally:
            store.current_request = None
        status, body = 200, _json(expand(store, result, forms.expand_list(params)))
    except StripeError as exc:
        status, body = exc.status, _json(exc.body())
        headers.update(exc.headers)
        if not exc.saved:  # a request refused before it ran is not kept under its key (as on Stripe)
            entry["status"] = status
            return Response(body, status_code=status, media_type="application/json", headers=headers)
    if method == "POST" and key:
        store.idempotency[key] = Idempotent(fingerprint, status, body)
        headers["Idempotency-Key"] = key
    entry["status"] = status
    return Response(body, status_code=status, media_type="application/json", headers=headers)
