"""The postings of the trade, each one balanced by construction (MONEY.md I13, I15).

funding            stripe_clearing -amount          advertiser_balance +amount
card funding       stripe_clearing -(charge-fee), processing_fees -fee (the network absorbs Stripe's fee),
                   advertiser_receivable +owed (paid off first), advertiser_balance +(charge-owed)
funding withdrawn  (refund, dispute) stripe_clearing +amount, advertiser_balance -(what it holds),
                   advertiser_receivable -(the rest)
funding reinstated (dispute won) as card funding without a fee
earning approved   advertiser_balance -price        publisher_pending +payout, network_revenue +margin
hold ended         publisher_pending -payout        publisher_available +payout
payout reserved    publisher_available -amount      payouts_in_transit +amount
payout settled     payouts_in_transit -amount       stripe_clearing +amount
earning reversed   the approval undone; a payout already made turns into a publisher receivable
"""

from __future__ import annotations

from server.ledger import service as ledger
from server.ledger.service import Line, Posted
from server.ledger.tables import AccountKind as K


async def fund_advertiser(advertiser_id: int, amount: int, currency: str, *, reference_id: int, key: str) -> Posted:
    clearing = await ledger.account(K.stripe_clearing, currency)
    balance = await ledger.account(K.advertiser_balance, currency, advertiser_id)
    return await ledger.post(
        kind="funding",
        idempotency_key=key,
        reference_type="funding",
        reference_id=reference_id,
        lines=[Line(clearing, -amount, currency), Line(balance, amount, currency)],
    )


async def approve_earning(
    *,
    advertiser_id: int,
    publisher_id: int,
    price: int,
    payout: int,
    currency: str,
    reference_type: str,
    reference_id: int,
    key: str,
) -> Posted:
    """The advertiser pays `price`; the publisher earns `payout` (pending); the network keeps the rest.
    Raises InsufficientFunds, moving nothing, when the advertiser's balance cannot cover the price."""
    if not 0 <= payout <= price or price == 0:
        raise ledger.LedgerError("An earning needs 0 <= payout <= price and a price above zero.")
    lines = [Line(await ledger.account(K.advertiser_balance, currency, advertiser_id), -price, currency)]
    if payout:
        lines.append(Line(await ledger.account(K.publisher_pending, currency, publisher_id), payout, currency))
    if price - payout:
        lines.append(Line(await ledger.account(K.network_revenue, currency), price - payout, currency))
    return await ledger.post(
        kind="earning", idempotency_key=key, reference_type=reference_type, reference_id=reference_id, lines=lines
    )


async def release_earning(
    publisher_id: int, payout: int, currency: str, *, reference_type: str, reference_id: int, key: str
) -> Posted:
    """An earning's hold ended: pending becomes available."""
    pending = await ledger.account(K.publisher_pending, currency, publisher_id)
    available = await ledger.account(K.publisher_available, currency, publisher_id)
    return await ledger.post(
        kind="release",
        idempotency_key=key,
        reference_type=reference_type,
        reference_id=reference_id,
        lines=[Line(pending, -payout, currency), Line(available, payout, currency)],
    )


async def reserve_payout(publisher_id: int, amount: int, currency: str, *, reference_id: int, key: str) -> Posted:
    return await ledger.post(
        kind="payout.reserved",
        idempotency_key=key,
        reference_type="payout_line",
        reference_id=reference_id,
        lines=[
            Line(await ledger.account(K.publisher_available, currency, publisher_id), -amount, currency),
            Line(await ledger.account(K.payouts_in_transit, currency), amount, currency),
        ],
    )


async def settle_payout(amount: int, currency: str, *, reference_id: int, key: str) -> Posted:
    return await ledger.post(
        kind="payout.settled",
        idempotency_key=key,
        reference_type="payout_line",
        reference_id=reference_id,
        lines=[
            Line(await ledger.account(K.payouts_in_transit, currency), -amount, currency),
            Line(await ledger.account(K.stripe_clearing, currency), amount, currency),
        ],
    )


async def reverse_earning(
    *,
    advertiser_id: int,
    publisher_id: int,
    price: int,
    payout: int,
    currency: str,
    released: bool,
    reference_type: str,
    reference_id: int,
    key: str,
) -> Posted:
    """Undo an approved earning: the advertiser gets the price back, the network its margin out, and
    the publisher loses the payout from pending (not yet released) or available; whatever available
    cannot cover (it was paid out already) becomes a receivable, netted against the next payout (I5)."""
    lines = [Line(await ledger.account(K.advertiser_balance, currency, advertiser_id), price, currency)]
    if price - payout:
        lines.append(Line(await ledger.account(K.network_revenue, currency), -(price - payout), currency))
    if payout:
        if not released:
            lines.append(Line(await ledger.account(K.publisher_pending, currency, publisher_id), -payout, currency))
        else:
            available = await ledger.balance(K.publisher_available, currency, publisher_id)
            from_available = min(max(available, 0), payout)
            if from_available:
                lines.append(
                    Line(await ledger.account(K.publisher_available, currency, publisher_id), -from_available, currency)
                )
            if payout - from_available:
                lines.append(
                    Line(
                        await ledger.account(K.publisher_receivable, currency, publisher_id),
                        -(payout - from_available),
                        currency,
                    )
                )
    return await ledger.post(
        kind="earning.reversal",
        idempotency_key=key,
        reference_type=reference_type,
        reference_id=reference_id,
        lines=lines,
    )


async def _credit_lines(advertiser_id: int, amount: int, currency: str) -> list[Line]:
    """Money for an advertiser: what they owe (a receivable) is paid off first, the rest is balance."""
    owed = -await ledger.balance(K.advertiser_receivable, currency, advertiser_id)
    payoff = min(max(owed, 0), amount)
    lines = []
    if payoff:
        lines.append(Line(await ledger.account(K.advertiser_receivable, currency, advertiser_id), payoff, currency))
    if amount - payoff:
        lines.append(
            Line(await ledger.account(K.advertiser_balance, currency, advertiser_id), amount - payoff, currency)
        )
    return lines


async def fund_advertiser_by_card(
    advertiser_id: int, charge: int, fee: int, currency: str, *, reference_id: int, key: str
) -> Posted:
    """Stripe charged `charge` and kept `fee`. The network absorbs the fee: the advertiser is credited
    the whole charge (I13: charge = credit + 0; clearing + fees = charge)."""
    if not 0 <= fee < charge:
        raise ledger.LedgerError("A card funding needs 0 <= fee < charge.")
    lines = [Line(await ledger.account(K.stripe_clearing, currency), -(charge - fee), currency)]
    if fee:
        lines.append(Line(await ledger.account(K.processing_fees, currency), -fee, currency))
    lines += await _credit_lines(advertiser_id, charge, currency)
    return await ledger.post(
        kind="funding", idempotency_key=key, reference_type="funding", reference_id=reference_id, lines=lines
    )


async def withdraw_funding(
    advertiser_id: int, amount: int, currency: str, *, kind: str, reference_id: int, key: str
) -> Posted:
    """A refund or a dispute takes `amount` of a funding back through Stripe: from the advertiser's
    balance as far as it goes, the rest becomes a receivable the advertiser owes (I4 holds)."""
    if amount <= 0:
        raise ledger.LedgerError("A withdrawal needs an amount above zero.")
    held = await ledger.balance(K.advertiser_balance, currency, advertiser_id)
    taken = min(max(held, 0), amount)
    lines = [Line(await ledger.account(K.stripe_clearing, currency), amount, currency)]
    if taken:
        lines.append(Line(await ledger.account(K.advertiser_balance, currency, advertiser_id), -taken, currency))
    if amount - taken:
        lines.append(
            Line(await ledger.account(K.advertiser_receivable, currency, advertiser_id), -(amount - taken), currency)
        )
    return await ledger.post(
        kind=kind, idempotency_key=key, reference_type="funding", reference_id=reference_id, lines=lines
    )


async def reinstate_funding(advertiser_id: int, amount: int, currency: str, *, reference_id: int, key: str) -> Posted:
    """A dispute was won: Stripe returns the disputed amount, and the advertiser gets it back."""
    if amount <= 0:
        raise ledger.LedgerError("A reinstatement needs an amount above zero.")
    lines = [
        Line(await ledger.account(K.stripe_clearing, currency), -amount, currency),
        *await _credit_lines(advertiser_id, amount, currency),
    ]
    return await ledger.post(
        kind="funding.reinstated", idempotency_key=key, reference_type="funding", reference_id=reference_id, lines=lines
    )
