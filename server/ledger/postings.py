"""Every posting the trade makes, each a named function, balanced by construction (MONEY.md I1, I13, I15).

This is the one way money moves: the accounts and signs of each posting are decided here, and the
engine that writes them (server/ledger/engine.py) is private to the ledger package (an import-linter
contract in pyproject.toml). The idempotency keys are the caller's: they name the caller's records.

funding            stripe_clearing -amount          advertiser_balance +amount
card funding       stripe_clearing -(charge-fee), processing_fees -fee (the network absorbs Stripe's fee),
                   vat_payable +vat (the invoice's VAT, owed to the tax authorities),
                   advertiser_receivable +owed (paid off first), advertiser_balance +(charge-vat-owed)
funding withdrawn  (refund, dispute) stripe_clearing +amount, vat_payable -vat (the credit note's share),
                   advertiser_balance -(what it holds of the rest), advertiser_receivable -(the rest)
funding reinstated (dispute won) as card funding without a fee
earning approved   advertiser_balance -price        publisher_pending +payout, network_revenue +margin
                   (publisher_available +payout instead when the hold is already over)
hold ended         publisher_pending -payout        publisher_available +payout
payout reserved    publisher_available -available   payouts_in_transit +(available-owed),
                   publisher_receivable +owed (netting: the debt is paid off by this payout, I5)
payout settled     payouts_in_transit -amount       stripe_clearing +amount
payout returned    (a transfer reversed at Stripe) stripe_clearing -amount, publisher_available +amount
earning reversed   the approval undone; a payout already made turns into a publisher receivable
reversed           the exact opposite of one posted transaction (a held line's reservation, a failed
                   transfer's)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from server.ledger import engine
from server.ledger import service as ledger
from server.ledger.engine import Line, Posting
from server.ledger.service import Posted
from server.ledger.tables import AccountKind as K

# --- advertisers' money ---------------------------------------------------------------------------


async def fund_advertiser(advertiser_id: int, amount: int, currency: str, *, reference_id: int, key: str) -> Posted:
    clearing = await ledger.account(K.stripe_clearing, currency)
    balance = await ledger.account(K.advertiser_balance, currency, advertiser_id)
    return await engine.post(
        kind="funding",
        idempotency_key=key,
        reference_type="funding",
        reference_id=reference_id,
        lines=[Line(clearing, -amount, currency), Line(balance, amount, currency)],
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


async def _vat_line(vat: int, currency: str) -> list[Line]:
    return [Line(await ledger.account(K.vat_payable, currency), vat, currency)] if vat else []


async def fund_advertiser_by_card(
    advertiser_id: int, charge: int, fee: int, currency: str, *, reference_id: int, key: str, vat: int = 0
) -> Posted:
    """Stripe charged `charge` (VAT included) and kept `fee`. The network absorbs the fee and owes the
    `vat`: the advertiser is credited the rest, the invoice's net (I13: charge = credit + vat; clearing +
    fees = charge)."""
    if not 0 <= fee < charge:
        raise ledger.LedgerError("A card funding needs 0 <= fee < charge.")
    if not 0 <= vat < charge:
        raise ledger.LedgerError("A card funding needs 0 <= vat < charge.")
    lines = [Line(await ledger.account(K.stripe_clearing, currency), -(charge - fee), currency)]
    if fee:
        lines.append(Line(await ledger.account(K.processing_fees, currency), -fee, currency))
    lines += await _vat_line(vat, currency)
    lines += await _credit_lines(advertiser_id, charge - vat, currency)
    return await engine.post(
        kind="funding", idempotency_key=key, reference_type="funding", reference_id=reference_id, lines=lines
    )


async def withdraw_funding(
    advertiser_id: int, amount: int, currency: str, *, kind: str, reference_id: int, key: str, vat: int = 0
) -> Posted:
    """A refund or a dispute takes `amount` of a funding back through Stripe: `vat` of it is VAT no longer
    owed (its credit note's), the rest comes from the advertiser's balance as far as it goes, and what
    it cannot cover becomes a receivable the advertiser owes (I4 holds)."""
    if amount <= 0:
        raise ledger.LedgerError("A withdrawal needs an amount above zero.")
    if not 0 <= vat < amount:
        raise ledger.LedgerError("A withdrawal needs 0 <= vat < amount.")
    net = amount - vat
    held = await ledger.balance(K.advertiser_balance, currency, advertiser_id)
    taken = min(max(held, 0), net)
    lines = [Line(await ledger.account(K.stripe_clearing, currency), amount, currency)]
    lines += await _vat_line(-vat, currency)
    if taken:
        lines.append(Line(await ledger.account(K.advertiser_balance, currency, advertiser_id), -taken, currency))
    if net - taken:
        lines.append(
            Line(await ledger.account(K.advertiser_receivable, currency, advertiser_id), -(net - taken), currency)
        )
    return await engine.post(
        kind=kind, idempotency_key=key, reference_type="funding", reference_id=reference_id, lines=lines
    )


async def reinstate_funding(
    advertiser_id: int, amount: int, currency: str, *, reference_id: int, key: str, vat: int = 0
) -> Posted:
    """A dispute was won: Stripe returns the disputed amount, its `vat` is owed again (invoiced again),
    and the advertiser gets the rest back."""
    if amount <= 0:
        raise ledger.LedgerError("A reinstatement needs an amount above zero.")
    if not 0 <= vat < amount:
        raise ledger.LedgerError("A reinstatement needs 0 <= vat < amount.")
    lines = [
        Line(await ledger.account(K.stripe_clearing, currency), -amount, currency),
        *await _vat_line(vat, currency),
        *await _credit_lines(advertiser_id, amount - vat, currency),
    ]
    return await engine.post(
        kind="funding.reinstated", idempotency_key=key, reference_type="funding", reference_id=reference_id, lines=lines
    )


# --- earnings -------------------------------------------------------------------------------------


class Earning(NamedTuple):
    """One earning to approve: the advertiser pays `price`, the publisher earns `payout`, the network
    keeps the rest. `available`: the hold is already over, so the payout goes straight to the
    publisher's available balance instead of pending."""

    advertiser_id: int
    publisher_id: int
    price: int
    payout: int
    currency: str
    reference_type: str
    reference_id: int
    key: str
    available: bool = False


async def approve_earnings(earnings: Sequence[Earning], *, effective_at: datetime | None = None) -> list[Posted]:
    """Approve many earnings at once, all or nothing, one ledger transaction each (so each traces to
    its conversion or hour, I6); the result is in the order of `earnings`. Raises InsufficientFunds,
    moving nothing, when an advertiser's balance cannot cover their share of the batch. A handful of
    statements however many earnings (the approval job posts thousands)."""
    for e in earnings:
        if not 0 <= e.payout <= e.price or e.price == 0:
            raise ledger.LedgerError(
                f"An earning needs 0 <= payout <= price and a price above zero ({e.reference_type} {e.reference_id})."
            )
    by_currency: dict[str, list[Earning]] = defaultdict(list)
    for e in earnings:
        by_currency[e.currency].append(e)
    advertisers: dict[str, dict[int, int]] = {}
    available: dict[str, dict[int, int]] = {}
    pending: dict[str, dict[int, int]] = {}
    network: dict[str, int] = {}
    for currency, group in by_currency.items():
        advertisers[currency] = await ledger.accounts(K.advertiser_balance, currency, [e.advertiser_id for e in group])
        available[currency] = await ledger.accounts(
            K.publisher_available, currency, [e.publisher_id for e in group if e.payout and e.available]
        )
        pending[currency] = await ledger.accounts(
            K.publisher_pending, currency, [e.publisher_id for e in group if e.payout and not e.available]
        )
        if any(e.price - e.payout for e in group):
            network[currency] = await ledger.account(K.network_revenue, currency)
    postings = []
    for e in earnings:
        c = e.currency
        lines = [Line(advertisers[c][e.advertiser_id], -e.price, c)]
        if e.payout:
            lines.append(Line((available if e.available else pending)[c][e.publisher_id], e.payout, c))
        if e.price - e.payout:
            lines.append(Line(network[c], e.price - e.payout, c))
        postings.append(Posting("earning", e.key, lines, e.reference_type, e.reference_id, effective_at=effective_at))
    return await engine.post_many(postings)


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
    available: bool = False,
    effective_at: datetime | None = None,
) -> Posted:
    """One earning approved (see approve_earnings). Raises InsufficientFunds, moving nothing, when the
    advertiser's balance cannot cover the price."""
    earning = Earning(
        advertiser_id, publisher_id, price, payout, currency, reference_type, reference_id, key, available
    )
    return (await approve_earnings([earning], effective_at=effective_at))[0]


class Release(NamedTuple):
    """An earning whose hold ended: its payout goes from the publisher's pending to available."""

    publisher_id: int
    payout: int
    currency: str
    reference_type: str
    reference_id: int
    key: str


async def release_earnings(releases: Sequence[Release], *, effective_at: datetime | None = None) -> list[Posted]:
    """Release many earnings at once, all or nothing, one ledger transaction each, in their order."""
    for r in releases:
        if r.payout <= 0:
            raise ledger.LedgerError(f"A release needs a payout above zero ({r.reference_type} {r.reference_id}).")
    pending: dict[str, dict[int, int]] = {}
    available: dict[str, dict[int, int]] = {}
    for currency in sorted({r.currency for r in releases}):
        owners = [r.publisher_id for r in releases if r.currency == currency]
        pending[currency] = await ledger.accounts(K.publisher_pending, currency, owners)
        available[currency] = await ledger.accounts(K.publisher_available, currency, owners)
    return await engine.post_many(
        [
            Posting(
                "release",
                r.key,
                [
                    Line(pending[r.currency][r.publisher_id], -r.payout, r.currency),
                    Line(available[r.currency][r.publisher_id], r.payout, r.currency),
                ],
                r.reference_type,
                r.reference_id,
                effective_at=effective_at,
            )
            for r in releases
        ]
    )


async def release_earning(
    publisher_id: int,
    payout: int,
    currency: str,
    *,
    reference_type: str,
    reference_id: int,
    key: str,
    effective_at: datetime | None = None,
) -> Posted:
    """An earning's hold ended: pending becomes available."""
    release = Release(publisher_id, payout, currency, reference_type, reference_id, key)
    return (await release_earnings([release], effective_at=effective_at))[0]


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
    return await engine.post(
        kind="earning.reversal",
        idempotency_key=key,
        reference_type=reference_type,
        reference_id=reference_id,
        lines=lines,
    )


# --- payouts --------------------------------------------------------------------------------------

NETTED = "netted against what the publisher owed"


class Reservation(NamedTuple):
    """A payout line's money set aside: all of the publisher's `available` leaves their available
    balance, what they `owed` (publisher_receivable) is paid off from it, the net goes in transit."""

    publisher_id: int
    available: int
    owed: int
    currency: str
    line_id: int
    key: str
    memo: str = ""  # "" : says so when a debt was netted
    actor_id: int | None = None


async def reserve_payouts(reservations: Sequence[Reservation]) -> list[Posted]:
    """Reserve many payout lines at once, all or nothing, one ledger transaction each, in their order:
        publisher_available -available, publisher_receivable +owed, payouts_in_transit +(available - owed)
    so the debt is paid off exactly when, and only if, the publisher is paid (I5). Raises
    InsufficientFunds, moving nothing, when a balance no longer holds its line's money."""
    for r in reservations:
        if not 0 <= r.owed < r.available:
            raise ledger.LedgerError(f"A reservation needs 0 <= owed < available (payout line {r.line_id}).")
    available: dict[str, dict[int, int]] = {}
    receivable: dict[str, dict[int, int]] = {}
    in_transit: dict[str, int] = {}
    for currency in sorted({r.currency for r in reservations}):
        mine = [r for r in reservations if r.currency == currency]
        available[currency] = await ledger.accounts(K.publisher_available, currency, [r.publisher_id for r in mine])
        receivable[currency] = await ledger.accounts(
            K.publisher_receivable, currency, [r.publisher_id for r in mine if r.owed]
        )
        in_transit[currency] = await ledger.account(K.payouts_in_transit, currency)
    postings = []
    for r in reservations:
        c = r.currency
        lines = [Line(available[c][r.publisher_id], -r.available, c), Line(in_transit[c], r.available - r.owed, c)]
        if r.owed:
            lines.append(Line(receivable[c][r.publisher_id], r.owed, c))
        memo = r.memo or (NETTED if r.owed else "")
        postings.append(Posting("payout.reserved", r.key, lines, "payout_line", r.line_id, memo, r.actor_id))
    return await engine.post_many(postings)


async def reserve_payout(
    publisher_id: int,
    amount: int,
    currency: str,
    *,
    reference_id: int,
    key: str,
    owed: int = 0,
    memo: str = "",
    actor_id: int | None = None,
) -> Posted:
    """One payout line reserved (see reserve_payouts): `amount` leaves the publisher's available
    balance, `owed` of it pays off their receivable, the rest goes in transit."""
    reservation = Reservation(publisher_id, amount, owed, currency, reference_id, key, memo, actor_id)
    return (await reserve_payouts([reservation]))[0]


class Settlement(NamedTuple):
    """A payout line's transfer was made: its money leaves transit for Stripe."""

    amount: int
    currency: str
    line_id: int
    key: str


async def settle_payouts(settlements: Sequence[Settlement]) -> list[Posted]:
    """Settle many paid lines at once, all or nothing, one ledger transaction each, in their order."""
    accounts = {
        c: (await ledger.account(K.payouts_in_transit, c), await ledger.account(K.stripe_clearing, c))
        for c in sorted({s.currency for s in settlements})
    }
    return await engine.post_many(
        [
            Posting(
                "payout.settled",
                s.key,
                [
                    Line(accounts[s.currency][0], -s.amount, s.currency),
                    Line(accounts[s.currency][1], s.amount, s.currency),
                ],
                "payout_line",
                s.line_id,
            )
            for s in settlements
        ]
    )


async def settle_payout(amount: int, currency: str, *, reference_id: int, key: str) -> Posted:
    return (await settle_payouts([Settlement(amount, currency, reference_id, key)]))[0]


async def return_payout(
    publisher_id: int, amount: int, currency: str, *, reference_id: int, key: str, memo: str = ""
) -> Posted:
    """A paid line's transfer was reversed at Stripe (all or part of it): the money is back in
    stripe_clearing and goes to the publisher's available balance again."""
    if amount <= 0:
        raise ledger.LedgerError("A returned payout needs an amount above zero.")
    return await engine.post(
        kind="payout.reversed",
        idempotency_key=key,
        reference_type="payout_line",
        reference_id=reference_id,
        memo=memo,
        lines=[
            Line(await ledger.account(K.stripe_clearing, currency), -amount, currency),
            Line(await ledger.account(K.publisher_available, currency, publisher_id), amount, currency),
        ],
    )


# --- corrections ----------------------------------------------------------------------------------


async def reverse(txn_id: int, *, key: str, memo: str = "", actor_id: int | None = None) -> Posted:
    """The exact opposite of one posted transaction (I2, I15): a held line's reservation given back,
    a failed transfer's returned. Reversing twice is refused (Conflict); replaying the key is not."""
    return await engine.reverse(txn_id, idempotency_key=key, memo=memo, actor_id=actor_id)
