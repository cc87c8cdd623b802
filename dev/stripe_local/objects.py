"""Shared shapes: list objects, `expand`, balance transactions and the fee rule."""

from __future__ import annotations

import copy
from typing import Any

from dev.stripe_local import forms
from dev.stripe_local.store import Store, StripeError

ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}


def card_fee(store: Store, amount: int) -> int:
    """fee_bps of the amount, rounded half up to the minor unit, plus the fixed part (integers only)."""
    config = store.config
    return (amount * config.fee_bps + 5000) // 10000 + config.fee_fixed_minor


def list_object(url: str, data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "total_count": len(data), "url": url}


def page(url: str, items: list[dict[str, Any]], params: dict[str, Any], label: str) -> dict[str, Any]:
    """One page of a list (items newest first), as Stripe pages: `limit` (1–100, default 10), `starting_after`."""
    limit = forms.integer(params.get("limit", "10"), "limit", 1)
    if limit > 100:
        raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
    if params.get("starting_after"):
        ids = [item["id"] for item in items]
        if params["starting_after"] not in ids:
            raise StripeError(400, f"No such {label}: '{params['starting_after']}'", param="starting_after")
        items = items[ids.index(params["starting_after"]) + 1 :]
    return list_object(url, items[:limit], has_more=len(items) > limit)


def balance_transaction(
    store: Store,
    *,
    amount: int,
    currency: str,
    fee: int,
    kind: str,
    category: str,
    source: str,
    fee_description: str = "Stripe processing fees",
    description: str | None = None,
    available_on: int | None = None,
) -> dict[str, Any]:
    """Money in or out of the platform's balance. Debits (refunds, transfers, disputes) are available at once;
    a charge's funds become available at `available_on` (store.config.available_delay after the charge)."""
    fee_details = (
        []
        if fee == 0
        else [
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": fee_description,
                "type": "stripe_fee",
            }
        ]
    )
    now = store.now()
    available_on = now if available_on is None else available_on
    txn = store.add(
        store.base(
            "txn_",
            "balance_transaction",
            amount=amount,
            available_on=available_on,
            balance_type="payments",
            currency=currency,
            description=description,
            exchange_rate=None,
            fee=fee,
            fee_details=fee_details,
            net=amount - fee,
            reporting_category=category,
            source=source,
            status="available" if available_on <= now else "pending",
            type=kind,
        )
    )
    if txn["status"] == "available":
        store.available[currency] = store.available.get(currency, 0) + txn["net"]
    else:
        store.pending.append(txn)
    return txn


def expand(store: Store, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of `obj` with each dotted path's ids replaced by their objects, as Stripe's `expand[]`."""
    result = copy.deepcopy(obj)
    for path in paths:
        _expand_path(store, result, path.split("."), path)
    return result


def _expand_path(store: Store, node: dict[str, Any], parts: list[str], whole: str) -> None:
    head, rest = parts[0], parts[1:]
    if node.get("object") == "list" and head != "data":
        for item in node["data"]:
            _expand_path(store, item, parts, whole)
        return
    if head not in node:
        raise StripeError(400, f"This property cannot be expanded ({head}).", param="expand")
    value = node[head]
    if isinstance(value, str):
        target = store.objects.get(value)
        if target is None:
            raise StripeError(400, f"This property cannot be expanded ({head}).", param="expand")
        value = node[head] = copy.deepcopy(target)
    if rest and isinstance(value, dict):
        _expand_path(store, value, rest, whole)
    elif rest and isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                _expand_path(store, item, rest, whole)


def format_amount(amount: int, currency: str) -> str:
    code = currency.upper()
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount:,} {code}"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d} {code}"
