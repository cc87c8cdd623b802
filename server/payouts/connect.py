"""Publishers' Stripe Connect Express accounts: creating one (once), onboarding links, and the state
Stripe reports in `account.updated`. The only writer of PayoutAccount.

The row is stored before Stripe is asked, holding a random reference in place of the account id
(`pending:<reference>`); the account's idempotency key is derived from it, so a retry after a lost
answer or a crash gets the same account back from Stripe rather than a second one. The state shown
to the publisher comes from Stripe only: from `account.updated`, which Stripe sends to the Connect
endpoint with the event's `account` (applied when the event is newer than the stored state, MONEY.md
I11, and only if the event's account is the account it describes), and from reading the account at
Stripe when the publisher comes back from onboarding. The return URL itself proves nothing: its
query is never read, the account is asked for."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import stripe

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import PublisherStatus
from server.billing.stripe_api import HTTPXClient, client_for
from server.core import clock, db
from server.core.errors import Conflict, NotFound
from server.core.settings import Settings
from server.payouts import notices, shared
from server.payouts.account_tables import PayoutAccount

log = logging.getLogger("affnet.payouts")

PENDING = "pending:"  # stripe_account_id of a row whose Stripe account is not known yet
RETURN_PATH = "/publisher/payouts/return"
REFRESH_PATH = "/publisher/payouts/refresh"


class AccountState(StrEnum):
    not_set_up = "not_set_up"  # no Stripe account yet
    checking = "checking"  # created; Stripe has not reported its state yet
    details_due = "details_due"  # onboarding not finished
    restricted = "restricted"  # details given, but Stripe has stopped payouts
    ready = "ready"


STATE_WORDS = {
    AccountState.not_set_up: "Not set up",
    AccountState.checking: "Being checked by Stripe",
    AccountState.details_due: "Details due",
    AccountState.restricted: "Restricted",
    AccountState.ready: "Ready for payouts",
}

# Stripe's requirements.disabled_reason, in words a publisher can act on.
REASON_WORDS = {
    "requirements.past_due": "Stripe needs more information from you, and its deadline has passed.",
    "requirements.pending_verification": "Stripe is verifying the information you gave.",
    "under_review": "Stripe is reviewing the account.",
    "listed": "Stripe is reviewing the account.",
    "rejected.fraud": "Stripe rejected the account.",
    "rejected.terms_of_service": "Stripe rejected the account.",
    "rejected.listed": "Stripe rejected the account.",
    "rejected.other": "Stripe rejected the account.",
    "platform_paused": "affnet has paused payouts to this account.",
}

# Stripe's requirement fields (requirements.currently_due), in plain words; others are shown as named.
FIELD_WORDS = {
    "business_type": "whether you are an individual or a company",
    "external_account": "the bank account to pay into",
    "individual.first_name": "your first name",
    "individual.last_name": "your last name",
    "individual.dob.day": "your date of birth",
    "individual.dob.month": "your date of birth",
    "individual.dob.year": "your date of birth",
    "individual.address.line1": "your address",
    "individual.address.city": "your address",
    "individual.address.postal_code": "your address",
    "individual.email": "your email address",
    "individual.phone": "your phone number",
    "individual.id_number": "your ID number",
    "individual.verification.document": "an identity document",
    "individual.verification.additional_document": "a proof of address",
    "tos_acceptance.date": "accepting Stripe's terms",
    "tos_acceptance.ip": "accepting Stripe's terms",
    "business_profile.url": "your website",
    "business_profile.mcc": "what your business does",
}


@dataclass(frozen=True)
class AccountView:
    """A publisher's payout account as affnet last heard it from Stripe."""

    state: AccountState
    stripe_account_id: str  # "" until Stripe created it
    details_submitted: bool
    payouts_enabled: bool
    requirements_due: list[str]  # Stripe's field names
    disabled_reason: str
    country: str
    default_currency: str  # upper case, "" until known
    state_at: datetime | None

    @property
    def words(self) -> str:
        return STATE_WORDS[self.state]

    @property
    def reason_words(self) -> str:
        if not self.disabled_reason:
            return "Stripe needs more information before it pays out again." if self.requirements_due else ""
        return REASON_WORDS.get(self.disabled_reason, f"Stripe says: {self.disabled_reason}.")

    @property
    def due_words(self) -> list[str]:
        """What Stripe asks for, in plain words, each once, in Stripe's order."""
        found: list[str] = []
        for name in self.requirements_due:
            words = FIELD_WORDS.get(name, name)
            if words not in found:
                found.append(words)
        return found


NOT_SET_UP = AccountView(AccountState.not_set_up, "", False, False, [], "", "", "", None)


def _state(row: dict[str, Any]) -> AccountState:
    if row["stripe_account_id"].startswith(PENDING):
        return AccountState.not_set_up  # Stripe was not reached, or its answer was lost: "Set up" tries again
    if row["payouts_enabled"]:  # what the payout cycle checks too (server/payouts/service.py)
        return AccountState.ready
    if row["state_at"] is None:
        return AccountState.checking
    if not row["details_submitted"]:
        return AccountState.details_due
    return AccountState.restricted


def _view(row: dict[str, Any] | None) -> AccountView:
    if row is None:
        return NOT_SET_UP
    created = not row["stripe_account_id"].startswith(PENDING)
    return AccountView(
        state=_state(row),
        stripe_account_id=row["stripe_account_id"] if created else "",
        details_submitted=row["details_submitted"],
        payouts_enabled=row["payouts_enabled"],
        requirements_due=[f for f in row["requirements_due"].split(",") if f],
        disabled_reason=row["disabled_reason"],
        country=row["country"],
        default_currency=row["default_currency"],
        state_at=row["state_at"],
    )


async def account_of(publisher_id: int) -> AccountView:
    """The publisher's own payout account (there is no way to ask for another's)."""
    return _view(await PayoutAccount.select().where(PayoutAccount.publisher == publisher_id).first())


# --- Stripe, out ---------------------------------------------------------------------------------


class ConnectGateway(Protocol):
    async def create_account(self, *, publisher_id: int, reference: str) -> str: ...

    async def retrieve_account(self, account_id: str) -> dict[str, Any]: ...

    async def create_onboarding_link(
        self, *, publisher_id: int, account_id: str, return_url: str, refresh_url: str
    ) -> str: ...


class StripeConnect:
    """The two Connect calls onboarding makes, on one StripeClient (async, over httpx)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    async def create_account(self, *, publisher_id: int, reference: str) -> str:
        # Only what is stored goes in (no email, which may change between two clicks): Stripe refuses a key
        # reused with other parameters, and a retry must get the first answer back. Stripe's onboarding
        # asks for the email, country and bank account itself.
        account = await self.client.v1.accounts.create_async(
            {
                "type": "express",
                # Transfers from affnet's balance are how publishers are paid.
                "capabilities": {"transfers": {"requested": True}},
                "metadata": {"publisher_id": str(publisher_id)},
            },
            {"idempotency_key": f"payout-account:{publisher_id}:{reference}"},
        )
        return account.id

    async def retrieve_account(self, account_id: str) -> dict[str, Any]:
        return (await self.client.v1.accounts.retrieve_async(account_id)).to_dict()

    async def create_onboarding_link(
        self, *, publisher_id: int, account_id: str, return_url: str, refresh_url: str
    ) -> str:
        # A link is single-use and short-lived, and making one changes nothing at Stripe: each click gets a
        # fresh one. The key makes the SDK's own network retries of this one request safe.
        link = await self.client.v1.account_links.create_async(
            {"account": account_id, "type": "account_onboarding", "return_url": return_url, "refresh_url": refresh_url},
            {"idempotency_key": f"payout-account:{publisher_id}:{account_id}:link:{secrets.token_hex(8)}"},
        )
        return link.url


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[StripeConnect]:
    http = HTTPXClient()
    try:
        yield StripeConnect(client_for(settings, http))
    finally:
        await http.close_async()


# --- onboarding ----------------------------------------------------------------------------------


async def _ensure_account(publisher: CurrentUser, connect: ConnectGateway) -> str:
    """The publisher's Stripe account id, creating the account the first time (and only then)."""
    now = clock.now()
    await PayoutAccount.insert(
        PayoutAccount(
            publisher=publisher.id,
            stripe_account_id=PENDING + secrets.token_hex(12),
            created_at=now,
            updated_at=now,
        )
    ).on_conflict(target=PayoutAccount.publisher, action="DO NOTHING")
    row = (
        await PayoutAccount.select(PayoutAccount.stripe_account_id)
        .where(PayoutAccount.publisher == publisher.id)
        .first()
    )
    stored = row["stripe_account_id"]
    if not stored.startswith(PENDING):
        return stored
    try:
        account_id = await connect.create_account(publisher_id=publisher.id, reference=stored.removeprefix(PENDING))
    except Exception as exc:
        log.warning("creating the Stripe account of publisher %s failed: %s", publisher.id, exc)
        raise Conflict(
            "Stripe could not be reached to set up your payouts. Nothing was created; please try again in a minute."
        ) from None
    # Conditional: a concurrent click that got the same account (same key) stores the same id.
    await PayoutAccount.update(
        {PayoutAccount.stripe_account_id: account_id, PayoutAccount.updated_at: clock.now()}
    ).where(PayoutAccount.publisher == publisher.id, PayoutAccount.stripe_account_id == stored)
    return account_id


async def _link(publisher_id: int, account_id: str, connect: ConnectGateway, base_url: str) -> str:
    try:
        url = await connect.create_onboarding_link(
            publisher_id=publisher_id,
            account_id=account_id,
            return_url=base_url + RETURN_PATH,
            refresh_url=base_url + REFRESH_PATH,
        )
    except Exception as exc:
        log.warning("the onboarding link of publisher %s failed: %s", publisher_id, exc)
        raise Conflict("Stripe could not be reached to open the setup page. Please try again in a minute.") from None
    if not url:
        raise Conflict("Stripe did not return a setup page. Please try again.")
    return url


async def start_onboarding(publisher: CurrentUser, connect: ConnectGateway, base_url: str) -> str:
    """Where to send the publisher to give Stripe their details: creates their account once, then a link."""
    profile = await accounts.publisher_profile(publisher.id)
    if profile["status"] != PublisherStatus.approved.value:
        raise Conflict("Payouts can be set up once your publisher account is approved.")
    account_id = await _ensure_account(publisher, connect)
    return await _link(publisher.id, account_id, connect, base_url)


async def refresh_link(publisher: CurrentUser, connect: ConnectGateway, base_url: str) -> str:
    """A fresh onboarding link for an account that exists (Stripe sends expired links' users here)."""
    view = await account_of(publisher.id)
    if not view.stripe_account_id:
        raise NotFound("You have no payout account yet: use Set up payouts.")
    return await _link(publisher.id, view.stripe_account_id, connect, base_url)


# --- Stripe, in ---------------------------------------------------------------------------------

# A state read from Stripe is stamped this much before the read: an event Stripe stamped (in whole
# seconds, by its own clock) just before the read may hold a change the read saw or one it missed, so it
# still applies; at worst it briefly shows the state before its successor's event, which follows.
READ_MARGIN = timedelta(seconds=5)


async def apply_event(event_type: str, obj: dict[str, Any], created: int | None, source_account: str) -> str:
    """Store the state an `account.updated` of a connected account reports, unless the state stored is
    newer (by the event's `created`, which the webhook pipeline passes on). `source_account` is the
    event's `account`: the account it happened on must be the account it describes."""
    if event_type != "account.updated" or obj.get("object") != "account":
        return "ignored: not an account update"
    account_id = obj.get("id")
    if not isinstance(account_id, str) or not account_id:
        return "ignored: no account id"
    if account_id != source_account:
        return "ignored: the event is about another account than its own"
    if not isinstance(created, int):
        return "ignored: the event has no creation time"
    if await _store_state(obj, datetime.fromtimestamp(created, UTC)):
        return "account state stored"
    known = await PayoutAccount.exists().where(PayoutAccount.stripe_account_id == account_id)
    return "account: newer state kept" if known else "ignored: unknown account"


async def _store_state(account: dict[str, Any], produced: datetime) -> bool:
    """The account's state as Stripe produced it at `produced`, unless a newer one is stored. When the
    new state needs the publisher (payouts stopped, details due), they are told in the same transaction."""
    requirements = account.get("requirements") or {}
    due = [str(f) for f in requirements.get("currently_due") or []]
    fingerprints = shared.fingerprints_of(account)
    banks = {} if fingerprints is None else {PayoutAccount.bank_fingerprints: ",".join(fingerprints)}
    async with db.transaction():
        before = await PayoutAccount.select().where(PayoutAccount.stripe_account_id == account["id"]).first()
        updated = await _write_state(account, produced, due, banks)
        if updated:
            after = await PayoutAccount.select().where(PayoutAccount.id == updated[0]["id"]).first()
            await notices.account_changed(before, after)
        if updated and fingerprints:
            await shared.check(account["id"])  # the same bank account as another publisher's: both held
    return bool(updated)


async def _write_state(
    account: dict[str, Any], produced: datetime, due: list[str], banks: dict[Any, Any]
) -> list[dict[str, Any]]:
    requirements = account.get("requirements") or {}
    return (
        await PayoutAccount.update(
            {
                **banks,
                PayoutAccount.details_submitted: bool(account.get("details_submitted")),
                PayoutAccount.payouts_enabled: bool(account.get("payouts_enabled")),
                PayoutAccount.requirements_due: ",".join(due),
                PayoutAccount.disabled_reason: str(requirements.get("disabled_reason") or "")[:120],
                PayoutAccount.country: str(account.get("country") or "")[:2].upper(),
                PayoutAccount.default_currency: str(account.get("default_currency") or "")[:3].upper(),
                PayoutAccount.state_at: produced,
                PayoutAccount.updated_at: clock.now(),
            }
        )
        .where(
            PayoutAccount.stripe_account_id == account["id"],
            # Stripe stamps events in whole seconds: of two in the same second, the one processed last wins
            # (deliveries mostly arrive in order); an older one never overwrites a newer state.
            PayoutAccount.state_at.is_null() | (PayoutAccount.state_at <= produced),
        )
        .returning(PayoutAccount.id)
    )


async def refresh_from_stripe(publisher: CurrentUser, connect: ConnectGateway) -> AccountView:
    """The publisher is back from onboarding: ask Stripe for their account now rather than wait for its
    event (which may be late, or, with a misconfigured Connect endpoint, never come). Stripe unreachable:
    the state stored stays, and the event or the next return updates it."""
    row = (
        await PayoutAccount.select(PayoutAccount.stripe_account_id)
        .where(PayoutAccount.publisher == publisher.id)
        .first()
    )
    if row is None or row["stripe_account_id"].startswith(PENDING):
        return await account_of(publisher.id)
    read_at = clock.now()
    try:
        account = await connect.retrieve_account(row["stripe_account_id"])
    except Exception as exc:
        log.warning("reading the Stripe account of publisher %s failed: %s", publisher.id, exc)
        return await account_of(publisher.id)
    if account.get("id") == row["stripe_account_id"]:
        await _store_state(account, read_at.replace(microsecond=0) - READ_MARGIN)
    return await account_of(publisher.id)
