"""The shared_payout_account rule: one bank account paid into from two publishers' accounts.

Each publisher has their own Stripe Connect account (payout_account.stripe_account_id is unique, so
two publishers can never share one), but one person can open several publisher accounts and give
each the same bank account. Stripe gives every bank account a `fingerprint` that is the same for
the same account number wherever it is attached; `account.updated` carries the account's
external accounts with theirs, and server/payouts/connect.py stores them (bank_fingerprints).
When a stored fingerprint is another publisher's too, both publishers are held
(server/conversions/holds.py): none of their conversions is approved and no payout pays them until
finance or an admin releases or rejects the hold in the review queue.

affnet stores no tax id (Stripe collects it during onboarding and does not hand it to the
platform), so the bank account is what this rule compares."""

from __future__ import annotations

from typing import Any

from server.conversions import holds
from server.conversions.tables import PublisherRule
from server.payouts.account_tables import PayoutAccount

MAX_FINGERPRINTS = 10  # per account: Stripe allows a few external accounts; more is not kept


def fingerprints_of(account: dict[str, Any]) -> list[str] | None:
    """The fingerprints of an account object's bank accounts (and debit cards), sorted; None when the
    object does not list its external accounts (nothing to change then)."""
    external = account.get("external_accounts")
    if not isinstance(external, dict) or not isinstance(external.get("data"), list):
        return None
    found = {
        str(item["fingerprint"])[:64]
        for item in external["data"]
        if isinstance(item, dict) and isinstance(item.get("fingerprint"), str) and item["fingerprint"]
    }
    return sorted(f.replace(",", "") for f in found)[:MAX_FINGERPRINTS]


async def check(stripe_account_id: str) -> list[int]:
    """Hold the publisher of this account and every other publisher whose account shares one of its
    bank fingerprints; the publishers newly held."""
    row = (
        await PayoutAccount.select(PayoutAccount.publisher, PayoutAccount.bank_fingerprints)
        .where(PayoutAccount.stripe_account_id == stripe_account_id)
        .first()
    )
    if row is None or not row["bank_fingerprints"]:
        return []
    mine = set(row["bank_fingerprints"].split(","))
    others: dict[int, dict[str, Any]] = {}
    for fingerprint in sorted(mine):
        for other in await PayoutAccount.select(
            PayoutAccount.publisher,
            PayoutAccount.publisher.email.as_alias("email"),
            PayoutAccount.stripe_account_id,
            PayoutAccount.bank_fingerprints,
        ).where(PayoutAccount.bank_fingerprints.like(f"%{fingerprint}%"), PayoutAccount.publisher != row["publisher"]):
            if fingerprint in other["bank_fingerprints"].split(","):
                others[other["publisher"]] = other
    if not others:
        return []
    me = (
        await PayoutAccount.select(PayoutAccount.publisher.email.as_alias("email"))
        .where(PayoutAccount.stripe_account_id == stripe_account_id)
        .first()
    )
    everyone = {row["publisher"]: {"email": me["email"], "stripe_account_id": stripe_account_id}}
    everyone.update({p: {"email": o["email"], "stripe_account_id": o["stripe_account_id"]} for p, o in others.items()})
    evidence = {
        publisher: {
            "bank_fingerprint_prefixes": sorted(f[:6] for f in mine),
            "shared_with": [
                {"publisher_id": p, "email": e["email"], "stripe_account_id": e["stripe_account_id"]}
                for p, e in sorted(everyone.items())
                if p != publisher
            ],
            "stripe_account_id": everyone[publisher]["stripe_account_id"],
        }
        for publisher in everyone
    }
    return await holds.hold(sorted(everyone), PublisherRule.shared_payout_account, evidence)
