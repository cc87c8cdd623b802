"""Connect: Express accounts (their events go to the Connect endpoint), their onboarding links, transfers to
them (out of the available balance only) and transfer reversals."""

from __future__ import annotations

import copy
from typing import Any

from dev.stripe_local import balance, forms
from dev.stripe_local.objects import balance_transaction, list_object, page
from dev.stripe_local.store import Store, StripeError, not_found

_CURRENCY_OF = {
    "US": "usd",
    "GB": "gbp",
    "CH": "chf",
    "SE": "sek",
    "DK": "dkk",
    "NO": "nok",
    "PL": "pln",
    "CZ": "czk",
    "CA": "cad",
    "AU": "aud",
    "JP": "jpy",
}
_DUE = [
    "business_type",
    "external_account",
    "individual.first_name",
    "individual.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
ACCOUNT_PARAMS = {
    "type",
    "country",
    "email",
    "capabilities",
    "business_type",
    "metadata",
    "default_currency",
    "business_profile",
    "controller",
    "settings",
    "tos_acceptance",
}


def create_account(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    forms.check_known(params, ACCOUNT_PARAMS)
    account_type = params.get("type") or "express"
    if account_type not in ("express", "standard", "custom"):
        raise StripeError(400, "Invalid type: must be one of custom, express, or standard", param="type")
    country = str(params.get("country") or "DE").upper()
    requested = params.get("capabilities") or {}
    if not isinstance(requested, dict):
        raise StripeError(400, "Invalid object", param="capabilities")
    capabilities = {
        name: "inactive"
        for name, spec in requested.items()
        if isinstance(spec, dict) and spec.get("requested") == "true"
    }
    account = store.base(
        "acct_",
        "account",
        business_type=params.get("business_type"),
        capabilities=capabilities,
        charges_enabled=False,
        country=country,
        default_currency=params.get("default_currency") or _CURRENCY_OF.get(country, "eur"),
        details_submitted=False,
        email=params.get("email"),
        external_accounts=list_object("/v1/accounts/acct/external_accounts", []),
        metadata=forms.string_map(params.get("metadata"), "metadata"),
        payouts_enabled=False,
        requirements=_requirements(list(_DUE), "requirements.past_due"),
        type=account_type,
    )
    account["id"] = store.new_id("acct_", 16)
    account["external_accounts"]["url"] = f"/v1/accounts/{account['id']}/external_accounts"
    return store.add(account)


def _requirements(due: list[str], disabled_reason: str | None) -> dict[str, Any]:
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": due,
        "disabled_reason": disabled_reason,
        "errors": [],
        "eventually_due": list(due),
        "past_due": list(due),
        "pending_verification": [],
    }


def create_account_link(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    forms.check_known(params, {"account", "refresh_url", "return_url", "type", "collect", "collection_options"})
    account = store.get(forms.required(params, "account"), "account", param="account")
    link_type = forms.required(params, "type")
    if link_type not in ("account_onboarding", "account_update"):
        raise StripeError(400, "Invalid type: must be one of account_onboarding or account_update", param="type")
    token = store.new_id("", 32)
    expires_at = store.now() + 300
    store.account_links[token] = {
        "account": account["id"],
        "refresh_url": params.get("refresh_url"),
        "return_url": params.get("return_url"),
        "expires_at": expires_at,
        "used": False,
    }
    return {
        "object": "account_link",
        "created": store.now(),
        "expires_at": expires_at,
        "url": f"{store.config.public_url}/connect/onboarding/{token}",
    }


def complete_onboarding(store: Store, account_id: str) -> dict[str, Any]:
    """What the onboarding page's Complete button does: details in, a bank account, transfers and payouts on."""
    account = store.get(account_id, "account")
    previous = {
        k: copy.deepcopy(account[k])
        for k in ("capabilities", "charges_enabled", "details_submitted", "payouts_enabled", "requirements")
    }
    if not account["external_accounts"]["data"]:
        bank = {
            "id": store.new_id("ba_"),
            "object": "bank_account",
            "account": account_id,
            "country": account["country"],
            "currency": account["default_currency"],
            "last4": "3000",
            "status": "new",
            "default_for_currency": True,
        }
        account["external_accounts"]["data"].append(bank)
        account["external_accounts"]["total_count"] = 1
    account.update(
        details_submitted=True, charges_enabled=True, payouts_enabled=True, requirements=_requirements([], None)
    )
    account["capabilities"] = {name: "active" for name in account["capabilities"]} or {"transfers": "active"}
    # An event of the connected account: it carries `account` and goes to the Connect endpoint only.
    store.emit("account.updated", account, {k: v for k, v in previous.items() if v != account[k]}, account=account_id)
    return account


def restrict_account(store: Store, account_id: str) -> dict[str, Any]:
    """Test control: Stripe needs more information; payouts and transfers stop until it is given."""
    account = store.get(account_id, "account")
    previous = {k: copy.deepcopy(account[k]) for k in ("capabilities", "payouts_enabled", "requirements")}
    account.update(
        payouts_enabled=False, requirements=_requirements(["individual.verification.document"], "requirements.past_due")
    )
    account["capabilities"] = {name: "inactive" for name in account["capabilities"]}
    store.emit("account.updated", account, previous, account=account_id)
    return account


def create_transfer(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    forms.check_known(
        params, {"amount", "currency", "destination", "transfer_group", "metadata", "description", "source_transaction"}
    )
    amount = forms.integer(forms.required(params, "amount"), "amount", 1)
    currency = str(forms.required(params, "currency")).lower()
    destination = forms.required(params, "destination")
    account = store.objects.get(destination)
    if account is None or account["object"] != "account":
        raise not_found("destination", destination, "destination")
    failure = store.fail_next_transfer.pop(destination, None)
    if failure is not None:
        raise _simulated_failure(failure)
    if account["capabilities"].get("transfers") != "active":
        raise StripeError(
            400,
            "Your destination account needs to have at least one of the following capabilities "
            "enabled: transfers, crypto_transfers, legacy_payments",
            param="destination",
        )
    balance.require_available(store, amount, currency)
    transfer_id = store.new_id("tr_")
    txn = balance_transaction(
        store, amount=-amount, currency=currency, fee=0, kind="transfer", category="transfer", source=transfer_id
    )
    transfer = store.add(
        {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": txn["id"],
            "created": store.now(),
            "currency": currency,
            "description": params.get("description"),
            "destination": destination,
            "destination_payment": store.new_id("py_"),
            "livemode": False,
            "metadata": forms.string_map(params.get("metadata"), "metadata"),
            "reversals": list_object(f"/v1/transfers/{transfer_id}/reversals", []),
            "reversed": False,
            "source_transaction": params.get("source_transaction"),
            "source_type": "card",
            "transfer_group": params.get("transfer_group"),
        }
    )
    store.emit("transfer.created", transfer)
    return transfer


def _simulated_failure(failure: dict[str, Any]) -> StripeError:
    # Saved by the idempotency layer, as Stripe saves a request that began executing: a retry with the same
    # key gets the same failure, so a new attempt needs a new key.
    if failure["status"] >= 500:
        return StripeError(
            failure["status"],
            "An unknown error occurred",
            type="api_error",
            saved=True,
            headers={"Stripe-Should-Retry": "false"},
        )
    if failure["code"] == "balance_insufficient":
        return StripeError(
            400,
            "You have insufficient available funds in your Stripe account. Try adding funds "
            "directly to your available balance by creating Charges using the "
            "4000000000000077 test card.",
            code="balance_insufficient",
            saved=True,
        )
    return StripeError(
        failure["status"], failure.get("message") or "The transfer failed.", code=failure["code"], saved=True
    )


def list_reversals(store: Store, transfer_id: str, params: dict[str, Any]) -> dict[str, Any]:
    store.get(transfer_id, "transfer")
    return page(
        f"/v1/transfers/{transfer_id}/reversals", store.reversals.get(transfer_id, []), params, "transfer reversal"
    )


def create_reversal(store: Store, transfer_id: str, params: dict[str, Any]) -> dict[str, Any]:
    forms.check_known(params, {"amount", "description", "metadata", "refund_application_fee"})
    transfer = store.get(transfer_id, "transfer")
    remaining = transfer["amount"] - transfer["amount_reversed"]
    if remaining == 0:
        raise StripeError(400, f"Transfer {transfer_id} has already been fully reversed.")
    amount = remaining if params.get("amount") in (None, "") else forms.integer(params["amount"], "amount", 1)
    if amount > remaining:
        raise StripeError(
            400,
            f"Transfer reversal amount ({amount}) is greater than the amount that can still be reversed ({remaining}).",
            param="amount",
        )
    reversal_id = store.new_id("trr_")
    txn = balance_transaction(
        store,
        amount=amount,
        currency=transfer["currency"],
        fee=0,
        kind="transfer_refund",
        category="transfer_reversal",
        source=reversal_id,
    )
    reversal = store.add(
        {
            "id": reversal_id,
            "object": "transfer_reversal",
            "amount": amount,
            "balance_transaction": txn["id"],
            "created": store.now(),
            "currency": transfer["currency"],
            "destination_payment_refund": store.new_id("pyr_"),
            "metadata": forms.string_map(params.get("metadata"), "metadata"),
            "source_refund": None,
            "transfer": transfer_id,
        }
    )
    previous = {"amount_reversed": transfer["amount_reversed"], "reversed": transfer["reversed"]}
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
    every = store.reversals.setdefault(transfer_id, [])
    every.insert(0, reversal)
    # As on Stripe, the transfer carries its 10 most recent reversals; the rest are paged through
    # GET /v1/transfers/{id}/reversals (has_more says there are more).
    transfer["reversals"] = list_object(
        f"/v1/transfers/{transfer_id}/reversals", [dict(r) for r in every[:10]], has_more=len(every) > 10
    ) | {"total_count": len(every)}
    store.emit("transfer.reversed", transfer, previous)
    return reversal
