"""Publishers with money to pay out, built through the ledger's own posting templates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from server.ledger import templates
from server.payouts.account_tables import PayoutAccount
from server.settings import Settings
from tests.factories import make_advertiser, make_publisher

_seq = itertools.count(1)


def after_next_cutoff() -> datetime:
    """A clock past the next monthly cut-off (the default schedule): everything posted now is in the period."""
    return datetime.now(UTC) + timedelta(days=32)


async def earning_publisher(settings: Settings, available: int, *, currency: str = "EUR", owed: int = 0,
                            ready: bool = True) -> int:
    """A publisher with `available` to be paid and, if `owed`, a receivable from a clawback after payout."""
    publisher_id, _ = await make_publisher(settings)
    advertiser_id, _ = await make_advertiser()
    await templates.fund_advertiser(advertiser_id, 10 * (available + owed) + 1_000, currency, reference_id=1,
                                    key=f"fund:{next(_seq)}")

    async def earn(amount: int) -> None:
        n = next(_seq)
        await templates.approve_earning(advertiser_id=advertiser_id, publisher_id=publisher_id, price=amount,
                                        payout=amount, currency=currency, reference_type="manual", reference_id=n,
                                        key=f"earn:{n}")
        await templates.release_earning(publisher_id, amount, currency, reference_type="manual", reference_id=n,
                                        key=f"release:{n}")

    if owed:  # earned and (as if) paid out, then the earning was reversed: a receivable
        n = next(_seq)
        await templates.reverse_earning(advertiser_id=advertiser_id, publisher_id=publisher_id, price=owed,
                                        payout=owed, currency=currency, released=True, reference_type="manual",
                                        reference_id=n, key=f"clawback:{n}")
    if available:
        await earn(available)
    if ready is not None:
        now = datetime.now(UTC)
        await PayoutAccount.insert(PayoutAccount(publisher=publisher_id, stripe_account_id=f"acct_test{next(_seq)}",
                                                 payouts_enabled=ready, details_submitted=ready, created_at=now,
                                                 updated_at=now))
    return publisher_id
