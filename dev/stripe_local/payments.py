"""Checkout Sessions (expiring by themselves), the payment a click on Pay makes (by card, or asynchronously
by SEPA debit), and refunds."""

from __future__ import annotations

from typing import Any

from dev.stripe_local import disputes, forms
from dev.stripe_local.objects import balance_transaction, card_fee, format_amount, list_object
from dev.stripe_local.store import Store, StripeError

MIN_LIFETIME, MAX_LIFETIME = 30 * 60, 24 * 3600  # a Checkout Session's expires_at, after its creation
CARD = "4242424242424242"  # succeeds; funds available after config.available_delay
CARD_AVAILABLE_AT_ONCE = "4000000000000077"  # Stripe's test card that skips the pending balance
CARDS = (CARD, CARD_AVAILABLE_AT_ONCE)
SESSION_PARAMS = {
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "metadata",
    "payment_intent_data",
    "customer_email",
    "payment_method_types",
    "locale",
    "expires_at",
    "submit_type",
    "ui_mode",
    "currency",
}


def create_checkout_session(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    forms.check_known(params, SESSION_PARAMS)
    mode = forms.required(params, "mode")
    if mode != "payment":
        raise StripeError(400, f"The stand-in supports mode=payment only, not '{mode}'.", param="mode")
    success_url = forms.required(params, "success_url")
    raw_items = forms.required(params, "line_items")
    if not isinstance(raw_items, list):
        raise StripeError(400, "Invalid array", param="line_items")
    items = [_line_item(store, item, i) for i, item in enumerate(raw_items)]
    currencies = {item["currency"] for item in items}
    if len(currencies) != 1:
        raise StripeError(400, "All line items must have the same currency.", param="line_items")
    currency = currencies.pop()
    total = sum(item["amount_total"] for item in items)
    if total < store.config.min_charge_minor:
        raise StripeError(
            400,
            f"The Checkout Session's total amount due must add up to at least "
            f"{format_amount(store.config.min_charge_minor, currency)}",
            param="line_items",
            code="amount_too_small",
        )
    expires_at = _expires_at(store, params.get("expires_at"))
    pi_data = params.get("payment_intent_data") or {}
    if not isinstance(pi_data, dict):
        raise StripeError(400, "Invalid object", param="payment_intent_data")
    session = store.base(
        "cs_test_",
        "checkout.session",
        amount_subtotal=total,
        amount_total=total,
        cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id"),
        currency=currency,
        customer=None,
        customer_details=None,
        customer_email=params.get("customer_email"),
        expires_at=expires_at,
        metadata=forms.string_map(params.get("metadata"), "metadata"),
        mode="payment",
        payment_intent=None,
        payment_method_types=["card"],
        payment_status="unpaid",
        status="open",
        success_url=success_url,
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode="hosted",
        url=None,
    )
    session["id"] = store.new_id("cs_test_", 58)
    session["url"] = f"{store.config.public_url}/pay/{session['id']}"
    session_private = {
        "pi_metadata": forms.string_map(pi_data.get("metadata"), "payment_intent_data[metadata]"),
        "pi_description": pi_data.get("description"),
        "transfer_group": pi_data.get("transfer_group"),
    }
    store.add(session)
    store.open_sessions[session["id"]] = expires_at
    store.line_items[session["id"]] = items  # Stripe returns them only through expand[]=line_items
    store.intent_data[session["id"]] = session_private
    return session


def _expires_at(store: Store, raw: Any) -> int:
    """Stripe's bounds: 30 minutes to 24 hours after creation; 24 hours when not given."""
    now = store.now()
    if raw in (None, ""):
        return now + MAX_LIFETIME
    expires_at = forms.integer(raw, "expires_at")
    if expires_at < now + MIN_LIFETIME:
        raise StripeError(
            400,
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
            param="expires_at",
        )
    if expires_at > now + MAX_LIFETIME:
        raise StripeError(
            400,
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    return expires_at


def _line_item(store: Store, item: Any, i: int) -> dict[str, Any]:
    prefix = f"line_items[{i}]"
    if not isinstance(item, dict):
        raise StripeError(400, "Invalid object", param=prefix)
    if "price" in item:
        raise StripeError(404, f"No such price: '{item['price']}'", param=f"{prefix}[price]", code="resource_missing")
    price_data = item.get("price_data")
    if not isinstance(price_data, dict):
        raise StripeError(
            400,
            f"Missing required param: {prefix}[price_data].",
            param=f"{prefix}[price_data]",
            code="parameter_missing",
        )
    currency = str(forms.required(price_data, "currency", f"{prefix}[price_data][currency]")).lower()
    unit_amount = forms.integer(
        forms.required(price_data, "unit_amount", f"{prefix}[price_data][unit_amount]"),
        f"{prefix}[price_data][unit_amount]",
        minimum=0,
    )
    product = price_data.get("product_data")
    if not isinstance(product, dict) or not product.get("name"):
        raise StripeError(
            400,
            f"Missing required param: {prefix}[price_data][product_data][name].",
            param=f"{prefix}[price_data][product_data][name]",
            code="parameter_missing",
        )
    quantity = forms.integer(forms.required(item, "quantity", f"{prefix}[quantity]"), f"{prefix}[quantity]", 1)
    amount = unit_amount * quantity
    price = {
        "id": store.new_id("price_"),
        "object": "price",
        "active": False,
        "currency": currency,
        "product": store.new_id("prod_", 14),
        "type": "one_time",
        "unit_amount": unit_amount,
        "livemode": False,
    }
    return {
        "id": store.new_id("li_"),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": currency,
        "description": product["name"],
        "price": price,
        "quantity": quantity,
    }


def retrieve_checkout_session(store: Store, session_id: str, expand: list[str]) -> dict[str, Any]:
    session = dict(store.get(session_id, "checkout.session", "checkout session"))
    if "line_items" in expand:
        session["line_items"] = list_object(
            f"/v1/checkout/sessions/{session_id}/line_items", store.line_items[session_id]
        )
    return session


def expire_checkout_session(store: Store, session_id: str) -> dict[str, Any]:
    """POST /v1/checkout/sessions/{id}/expire, and what Stripe does by itself at expires_at."""
    session = store.get(session_id, "checkout.session", "checkout session")
    if session["status"] != "open":
        raise StripeError(
            400,
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f'Session has a status of "{session["status"]}".',
            code="checkout_session_not_open",
        )
    session.update(status="expired", url=None)
    store.open_sessions.pop(session_id, None)
    store.emit("checkout.session.expired", session)
    return session


def pay_checkout_session(
    store: Store, session_id: str, email: str = "buyer@example.com", *, method: str = "card", card: str = CARD
) -> dict[str, Any]:
    """What a click on Pay does. By card: a succeeded PaymentIntent and Charge with its fee, then the events;
    the funds become available after config.available_delay (at once with the test card 4000000000000077).
    By SEPA Direct Debit (asynchronous, as on Stripe): the session completes with payment_status `unpaid`
    and the payment is processing until `settle_async_payment` says how it ended."""
    session = store.get(session_id, "checkout.session", "checkout session")
    if session["status"] == "complete":
        return session  # a second click (or a replayed form post) pays nothing more
    if session["status"] != "open":
        raise StripeError(400, "This Checkout Session is no longer open.", code="checkout_session_not_open")
    if method not in ("card", "sepa_debit"):
        raise StripeError(400, f"Invalid payment method: {method} (card or sepa_debit).", param="payment_method")
    if method == "card" and card not in CARDS:
        raise StripeError(400, f"The stand-in knows the test cards {', '.join(CARDS)}.", param="card")
    private = store.intent_data[session_id]
    amount, currency = session["amount_total"], session["currency"]
    pi_id, charge_id = store.new_id("pi_"), store.new_id("ch_")
    billing = {
        "address": {"city": None, "country": "DE", "line1": None, "line2": None, "postal_code": None, "state": None},
        "email": email,
        "name": "Test Buyer",
        "phone": None,
    }
    details = (
        {
            "type": "card",
            "card": {
                "brand": "visa",
                "country": "DE",
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": card[-4:],
            },
        }
        if method == "card"
        else {"type": "sepa_debit", "sepa_debit": {"bank_code": "37040044", "country": "DE", "last4": "3000"}}
    )
    charge = store.add(
        {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "balance_transaction": None,
            "billing_details": billing,
            "captured": True,
            "created": store.now(),
            "currency": currency,
            "customer": None,
            "description": private["pi_description"],
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": dict(private["pi_metadata"]),
            "outcome": {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            "paid": False,
            "payment_intent": pi_id,
            "payment_method": store.new_id("pm_"),
            "payment_method_details": details,
            "receipt_email": email,
            "receipt_url": f"{store.config.public_url}/receipts/{charge_id}",
            "refunded": False,
            "refunds": list_object(f"/v1/charges/{charge_id}/refunds", []),
            "status": "pending",
            "transfer_group": private["transfer_group"],
        }
    )
    intent = store.add(
        {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{store.new_id('', 25)}",
            "confirmation_method": "automatic",
            "created": store.now(),
            "currency": currency,
            "customer": None,
            "description": private["pi_description"],
            "last_payment_error": None,
            "latest_charge": charge_id,
            "livemode": False,
            "metadata": dict(private["pi_metadata"]),
            "payment_method": charge["payment_method"],
            "payment_method_types": [method],
            "receipt_email": email,
            "status": "processing",
            "transfer_group": private["transfer_group"],
        }
    )
    store.open_sessions.pop(session_id, None)
    session.update(
        status="complete",
        payment_status="unpaid",
        payment_intent=intent["id"],
        url=None,
        payment_method_types=[method],
        customer_details={
            "email": email,
            "name": "Test Buyer",
            "phone": None,
            "tax_exempt": "none",
            "address": billing["address"],
        },
    )
    store.checkout_of_intent[pi_id] = session_id
    if method == "card":
        _succeed(store, intent, charge, session, at_once=card == CARD_AVAILABLE_AT_ONCE)
        store.emit("charge.succeeded", charge)
        store.emit("payment_intent.succeeded", intent)
        store.emit("checkout.session.completed", session)
    else:
        store.emit("charge.pending", charge)
        store.emit("payment_intent.processing", intent)
        store.emit("checkout.session.completed", session)
    return session


def _succeed(
    store: Store, intent: dict[str, Any], charge: dict[str, Any], session: dict[str, Any], *, at_once: bool = False
) -> None:
    amount, currency = charge["amount"], charge["currency"]
    txn = balance_transaction(
        store,
        amount=amount,
        currency=currency,
        fee=card_fee(store, amount),
        kind="charge",
        category="charge",
        source=charge["id"],
        description=charge["description"],
        available_on=store.now() + (0 if at_once else store.config.available_delay),
    )
    charge.update(balance_transaction=txn["id"], paid=True, status="succeeded")
    intent.update(amount_received=amount, status="succeeded")
    session["payment_status"] = "paid"


def settle_async_payment(store: Store, intent_id: str, outcome: str) -> dict[str, Any]:
    """Test control: the bank's answer to a processing SEPA debit (days later on Stripe). Succeeded: the
    funds arrive (pending, then available) and `checkout.session.async_payment_succeeded`; failed:
    `checkout.session.async_payment_failed`, and nothing was received."""
    intent = store.get(intent_id, "payment_intent", "payment_intent")
    if outcome not in ("succeeded", "failed"):
        raise StripeError(400, "outcome must be succeeded or failed", param="outcome")
    if intent["status"] != "processing":
        raise StripeError(400, f"PaymentIntent {intent_id} is {intent['status']}, not processing.")
    charge = store.get(intent["latest_charge"], "charge")
    session = store.get(store.checkout_of_intent[intent_id], "checkout.session", "checkout session")
    if outcome == "succeeded":
        _succeed(store, intent, charge, session)
        store.emit("charge.succeeded", charge)
        store.emit("payment_intent.succeeded", intent)
        store.emit("checkout.session.async_payment_succeeded", session)
        return intent
    error = {
        "code": "insufficient_funds",
        "message": "The customer's account has insufficient funds to cover this payment.",
        "type": "card_error",
    }
    charge.update(status="failed", failure_code=error["code"], failure_message=error["message"])
    intent.update(status="requires_payment_method", last_payment_error=error)
    store.emit("charge.failed", charge)
    store.emit("payment_intent.payment_failed", intent)
    store.emit("checkout.session.async_payment_failed", session)
    return intent


def create_refund(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    forms.check_known(params, {"charge", "payment_intent", "amount", "reason", "metadata"})
    if params.get("charge"):
        charge = store.get(params["charge"], "charge", param="charge")
    elif params.get("payment_intent"):
        intent = store.get(params["payment_intent"], "payment_intent", param="payment_intent")
        if not intent.get("latest_charge"):
            raise StripeError(
                400,
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        charge = store.get(intent["latest_charge"], "charge")
    else:
        raise StripeError(
            400,
            "One of the following params should be provided for this request: payment_intent or charge.",
            code="parameter_missing",
        )
    reason = params.get("reason")
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
        raise StripeError(
            400, "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer", param="reason"
        )
    if charge["status"] != "succeeded":
        raise StripeError(400, f"Charge {charge['id']} has not succeeded; there is nothing to refund.")
    if charge["disputed"] and disputes.blocks_refund(store, charge["id"]):
        raise StripeError(
            400, f"Charge {charge['id']} has been charged back; cannot issue a refund.", code="charge_disputed"
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining == 0:
        raise StripeError(400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    amount = remaining if params.get("amount") in (None, "") else forms.integer(params["amount"], "amount", 1)
    if amount > remaining:
        raise StripeError(
            400,
            f"Refund amount ({format_amount(amount, charge['currency'])}) is greater than "
            f"unrefunded amount on charge ({format_amount(remaining, charge['currency'])})",
            param="amount",
            code="amount_too_large",
        )
    refund_id = store.new_id("re_")
    # Stripe keeps its processing fee on a refund: the refund's balance transaction carries no fee.
    txn = balance_transaction(
        store,
        amount=-amount,
        currency=charge["currency"],
        fee=0,
        kind="refund",
        category="refund",
        source=refund_id,
        description="REFUND FOR CHARGE",
    )
    refund = store.add(
        {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": txn["id"],
            "charge": charge["id"],
            "created": store.now(),
            "currency": charge["currency"],
            "metadata": forms.string_map(params.get("metadata"), "metadata"),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
    )
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    refunds = [refund, *charge["refunds"]["data"]]
    charge["refunds"] = list_object(f"/v1/charges/{charge['id']}/refunds", [dict(r) for r in refunds])
    store.emit("refund.created", refund)
    store.emit("charge.refunded", charge, previous)
    return refund
