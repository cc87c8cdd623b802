"""Stripe, out: the few calls billing makes, through the official SDK, in Stripe's wire format.

The same code talks to Stripe in test or live mode (STRIPE_SECRET_KEY) or to the local stand-in
(STRIPE_API_BASE). Every call that creates something carries an idempotency key derived from a
stored id, so a retry (ours, or the SDK's own network retries) never creates it twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import stripe

from server.core.settings import Settings

GatewayError = stripe.StripeError  # anything Stripe (or the way to it) answers with instead of a result

# Transient: the worker leaves the event unprocessed and tries again later.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (stripe.APIConnectionError, stripe.RateLimitError)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    expires_at: datetime | None = None  # when Stripe expires it unpaid


@dataclass(frozen=True)
class Payment:
    """A succeeded payment as Stripe holds it now, in minor units."""

    payment_intent_id: str
    status: str
    amount_minor: int  # received
    currency: str  # upper case
    charge_id: str
    receipt_url: str
    fee_minor: int | None  # None while the charge has no balance transaction yet
    fee_currency: str
    funding_id: int | None = None  # from the intent's metadata


class Gateway(Protocol):
    async def create_checkout_session(
        self,
        *,
        funding_id: int,
        reference: str,
        amount_minor: int,
        currency: str,
        email: str,
        success_url: str,
        cancel_url: str,
        vat_minor: int = 0,
        vat_label: str = "",
    ) -> CheckoutSession: ...

    async def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> bool: ...

    async def payment(self, payment_intent_id: str) -> Payment: ...

    async def reversals(self, transfer_id: str) -> list[dict[str, Any]]: ...


def configured(settings: Settings) -> bool:
    return bool(settings.stripe_secret_key)


class StripeGateway:
    """Billing's calls on one StripeClient (async, over httpx)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    async def create_checkout_session(
        self,
        *,
        funding_id: int,
        reference: str,
        amount_minor: int,
        currency: str,
        email: str,
        success_url: str,
        cancel_url: str,
        vat_minor: int = 0,
        vat_label: str = "",
    ) -> CheckoutSession:
        """A Checkout Session charging `amount_minor`: the balance top-up, and its VAT (`vat_minor`, included
        in `amount_minor`) as a line of its own, so the payer sees both."""
        metadata = {"funding_id": str(funding_id)}

        def item(amount: int, name: str) -> dict[str, Any]:
            price = {"currency": currency.lower(), "unit_amount": amount, "product_data": {"name": name}}
            return {"quantity": 1, "price_data": price}

        items = [item(amount_minor - vat_minor, "affnet prepaid balance")]
        if vat_minor:
            items.append(item(vat_minor, vat_label or "VAT"))
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": items,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(funding_id),
            "metadata": metadata,
            # So payment_intent.succeeded, which may arrive first, names the funding too.
            "payment_intent_data": {"metadata": metadata},
        }
        if email:
            params["customer_email"] = email
        session = await self.client.v1.checkout.sessions.create_async(
            params,  # type: ignore[arg-type]
            {"idempotency_key": f"funding:{funding_id}:{reference}:checkout"},
        )
        expires_at = datetime.fromtimestamp(session.expires_at, UTC) if session.expires_at else None
        return CheckoutSession(id=session.id, url=session.url or "", expires_at=expires_at)

    async def expire_checkout_session(self, session_id: str, *, idempotency_key: str) -> bool:
        """Close an open Checkout Session so it can no longer be paid; True once Stripe says it is
        expired, False if it was not open any more (paid, or expired already: its events tell)."""
        try:
            session = await self.client.v1.checkout.sessions.expire_async(
                session_id, options={"idempotency_key": idempotency_key}
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "checkout_session_not_open":
                return False
            raise
        return session.status == "expired"

    async def payment(self, payment_intent_id: str) -> Payment:
        intent = (
            await self.client.v1.payment_intents.retrieve_async(
                payment_intent_id, {"expand": ["latest_charge.balance_transaction"]}
            )
        ).to_dict()
        charge: Any = intent.get("latest_charge")
        if isinstance(charge, str):
            charge = (
                await self.client.v1.charges.retrieve_async(charge, {"expand": ["balance_transaction"]})
            ).to_dict()
        txn: Any = charge.get("balance_transaction") if charge else None
        if isinstance(txn, str):
            txn = (await self.client.v1.balance_transactions.retrieve_async(txn)).to_dict()
        return Payment(
            payment_intent_id=intent["id"],
            status=intent["status"],
            amount_minor=int(intent.get("amount_received") or 0),
            currency=str(intent["currency"]).upper(),
            charge_id=charge["id"] if charge else "",
            receipt_url=(charge.get("receipt_url") or "") if charge else "",
            fee_minor=int(txn["fee"]) if txn else None,
            fee_currency=str(txn["currency"]).upper() if txn else "",
            funding_id=_funding_id(intent.get("metadata")),
        )

    async def reversals(self, transfer_id: str) -> list[dict[str, Any]]:
        """Every reversal of a transfer, newest first: a transfer (and its event) carries only the 10 most
        recent, so the rest are read page by page (has_more, starting_after)."""
        return [reversal.to_dict() async for reversal in await all_reversals(self.client, transfer_id)]


REVERSALS_PAGE = 100  # Stripe's largest page


async def all_reversals(client: stripe.StripeClient, transfer_id: str) -> Any:
    """An async iterator over every reversal of a transfer, newest first, one page request after another
    while Stripe says has_more."""
    page = await client.v1.transfers.reversals.list_async(transfer_id, {"limit": REVERSALS_PAGE})
    return page.auto_paging_iter()


def _funding_id(metadata: Any) -> int | None:
    raw = metadata.get("funding_id") if metadata else None
    return int(raw) if raw and str(raw).isdigit() else None


class HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, sending the encoded form as `content=` (httpx deprecates raw `data=`)."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if isinstance(data, str | bytes):
            kwargs["content"] = data
        elif data:
            kwargs["data"] = data
        return args, kwargs


def new_client(
    secret_key: str, api_base: str = "", *, http_client: stripe.HTTPClient | None = None, network_retries: int = 2
) -> stripe.StripeClient:
    """Every StripeClient affnet builds: Stripe itself, or the stand-in at `api_base`. Without an
    `http_client` the SDK picks its own (tests and bench, which also call it synchronously)."""
    base = {"api": api_base.rstrip("/")} if api_base else None
    return stripe.StripeClient(
        secret_key,
        base_addresses=base,  # type: ignore[arg-type]
        http_client=http_client,
        max_network_retries=network_retries,
    )


def client_for(settings: Settings, http_client: stripe.HTTPClient | None = None) -> stripe.StripeClient:
    """The product's client: the configured key and API base, async over httpx, two network retries."""
    return new_client(settings.stripe_secret_key, settings.stripe_api_base, http_client=http_client or HTTPXClient())


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[StripeGateway]:
    """A gateway for the duration of one piece of work; its HTTP connections closed after."""
    http = HTTPXClient()
    try:
        yield StripeGateway(client_for(settings, http))
    finally:
        await http.close_async()
