"""Publishers with money to pay out, built through the ledger's own postings, and batches
of them approved and paid against the local Stripe stand-in."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from server.accounts.tables import Role
from server.core import db
from server.core.settings import Settings
from server.ledger import postings
from server.payouts import service as payouts
from server.payouts.account_tables import PayoutAccount
from server.payouts.tables import PayoutBatch, PayoutLine
from tests.factories import make_advertiser, make_publisher, post_form, staff_client

_seq = itertools.count(1)


def after_next_cutoff() -> datetime:
    """A clock past the next monthly cut-off (the default schedule): everything posted now is in the period."""
    return datetime.now(UTC) + timedelta(days=32)


async def earning_publisher(
    settings: Settings,
    available: int,
    *,
    currency: str = "EUR",
    owed: int = 0,
    ready: bool = True,
    effective_at: datetime | None = None,
) -> int:
    """A publisher with `available` to be paid and, if `owed`, a receivable from a clawback after payout.
    `effective_at`: when the earning counts (default: now), for a period that closed before now."""
    publisher_id, _ = await make_publisher(settings)
    advertiser_id, _ = await make_advertiser()
    await postings.fund_advertiser(
        advertiser_id, 10 * (available + owed) + 1_000, currency, reference_id=1, key=f"fund:{next(_seq)}"
    )

    async def earn(amount: int) -> None:
        n = next(_seq)
        await postings.approve_earning(
            advertiser_id=advertiser_id,
            publisher_id=publisher_id,
            price=amount,
            payout=amount,
            currency=currency,
            reference_type="manual",
            reference_id=n,
            key=f"earn:{n}",
            effective_at=effective_at,
        )
        await postings.release_earning(
            publisher_id,
            amount,
            currency,
            reference_type="manual",
            reference_id=n,
            key=f"release:{n}",
            effective_at=effective_at,
        )

    if owed:  # earned and (as if) paid out, then the earning was reversed: a receivable
        n = next(_seq)
        await postings.reverse_earning(
            advertiser_id=advertiser_id,
            publisher_id=publisher_id,
            price=owed,
            payout=owed,
            currency=currency,
            released=True,
            reference_type="manual",
            reference_id=n,
            key=f"clawback:{n}",
        )
    if available:
        await earn(available)
    if ready is not None:
        await payout_account(publisher_id, f"acct_test{next(_seq)}", ready=ready)
    return publisher_id


async def payout_account(publisher_id: int, stripe_account_id: str, *, ready: bool = True) -> None:
    """The publisher's Stripe connected account, onboarded (`ready`) or not."""
    now = datetime.now(UTC)
    await PayoutAccount.insert(
        PayoutAccount(
            publisher=publisher_id,
            stripe_account_id=stripe_account_id,
            payouts_enabled=ready,
            details_submitted=ready,
            created_at=now,
            updated_at=now,
        )
    )


# Stripe keys derive from line ids and transfer groups from batch ids, and every test's database
# restarts its ids while the stand-in (one per session, like a Stripe account) remembers every key
# and transfer: each test's lines and batches start elsewhere.
_ids = itertools.count(random.randrange(10**5, 10**6) * 1000, 1000)


async def fresh_line_ids() -> None:
    start = next(_ids)
    if db.is_sqlite():  # INTEGER PRIMARY KEY: the next id is the largest + 1
        publisher_id, _ = await make_publisher_quick()
        old = datetime(2000, 1, 1, tzinfo=UTC)
        batch_id = (
            await PayoutBatch.insert(
                PayoutBatch(id=start, period_start=old, period_end=old, currency="XXX", status="done", prepared_at=old)
            ).returning(PayoutBatch.id)
        )[0]["id"]
        await PayoutLine.insert(
            PayoutLine(
                id=start,
                batch=batch_id,
                publisher=publisher_id,
                amount_minor=0,
                currency="XXX",
                available_minor=0,
                status="held",
                created_at=old,
                updated_at=old,
            )
        )
    else:
        await PayoutLine.raw("SELECT setval(pg_get_serial_sequence('payout_line', 'id'), {})", start)
        await PayoutBatch.raw("SELECT setval(pg_get_serial_sequence('payout_batch', 'id'), {})", start)


async def make_publisher_quick() -> tuple[int, str]:
    from server.core.settings import load_settings  # noqa: PLC0415  # only the secret's length matters here

    return await make_publisher(load_settings())


async def connected_account(stripe_local) -> str:
    client = stripe_local.client()
    account = await client.v1.accounts.create_async(
        {"type": "express", "country": "DE", "capabilities": {"transfers": {"requested": True}}}
    )
    stripe_local.control("POST", f"/_local/accounts/{account.id}/complete_onboarding")
    return account.id


async def approved_batch(new_client, settings, stripe_local, *amounts: int) -> tuple[int, dict[int, str]]:
    """A batch of one line per amount, each publisher with a real (stand-in) connected account,
    approved by a second finance person through the page."""
    await fresh_line_ids()
    accounts = {}
    for amount in amounts:
        publisher_id = await earning_publisher(settings, amount)
        accounts[publisher_id] = await connected_account(stripe_local)
        await PayoutAccount.update({PayoutAccount.stripe_account_id: accounts[publisher_id]}).where(
            PayoutAccount.publisher == publisher_id
        )
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    finance, _ = await staff_client(new_client, Role.finance, first_page="/finance/payouts")
    assert (await post_form(finance, f"/finance/payouts/{batch_id}/approve")).status_code == 303
    return batch_id, accounts


async def lines_of(batch_id: int) -> list[dict]:
    return await PayoutLine.select().where(PayoutLine.batch == batch_id).order_by(PayoutLine.id)


def transfer_posts(stripe_local, line_id: int) -> list[dict]:
    """The stand-in's log of POST /v1/transfers for this line (any attempt)."""
    prefix = f"payout-line:{line_id}:attempt:"
    return [
        r
        for r in stripe_local.control("GET", "/_local/requests").json()["data"]
        if r["method"] == "POST" and r["path"] == "/v1/transfers" and (r["idempotency_key"] or "").startswith(prefix)
    ]


def made(posts: list[dict]) -> list[dict]:
    """The posts that made a transfer (answered 200, not replayed from the idempotency layer)."""
    return [p for p in posts if p["status"] == 200 and not p.get("replayed")]
