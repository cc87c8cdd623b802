"""A Hypothesis state machine drives the ledger through every posting production makes (the
functions of server/ledger/postings.py): fundings by transfer and by card, refunds, disputes lost and
won, earnings approved one by one and in batches, holds ending one by one and in batches, payouts
reserved against a receivable, settled, held or failed, and reversed at Stripe, earnings reversed,
and replays, and after every step checks MONEY.md's invariants (`ledger.check()`)
and that every balance equals a model kept in plain Python."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from server import piccolo_app
from server.core import db
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.service import InsufficientFunds
from server.ledger.tables import AccountKind as K
from tests.factories import make_advertiser, make_publisher

CUR = "EUR"
TRACKED = [
    K.advertiser_balance,
    K.advertiser_receivable,
    K.publisher_pending,
    K.publisher_available,
    K.publisher_receivable,
    K.network_revenue,
    K.payouts_in_transit,
    K.stripe_clearing,
    K.processing_fees,
]


class LedgerMachine(RuleBasedStateMachine):
    """Every rule is a function of server/ledger/postings.py, called as production calls it: the
    state machine runs exactly the postings the code makes, and nothing else."""

    loop: asyncio.AbstractEventLoop
    app_settings: object

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def owner(self, kind: K) -> int | None:
        if kind.value.startswith("advertiser"):
            return self.advertiser_id
        if kind.value.startswith("publisher"):
            return self.publisher_id
        return None  # the network's own accounts

    async def actual(self) -> dict[K, int]:
        return {k: await ledger.balance(k, CUR, self.owner(k)) for k in TRACKED}

    @initialize()
    def start(self):
        # A new advertiser and publisher per example, so no example's state depends on another's.
        self.advertiser_id = self.run(make_advertiser())[0]
        self.publisher_id = self.run(make_publisher(self.app_settings))[0]
        self.prefix = uuid.uuid4().hex[:8]
        self.seq = itertools.count()
        self.model = self.run(self.actual())  # the network's accounts carry over between examples
        self.earnings: list[dict] = []
        self.fundings: list[tuple[str, int]] = []
        self.payouts: list[dict] = []

    def key(self, what: str) -> str:
        return f"{self.prefix}-{what}-{next(self.seq)}"

    def _credit(self, amount: int) -> None:
        """Money for the advertiser: their debt is paid off first, the rest is balance."""
        payoff = min(max(-self.model[K.advertiser_receivable], 0), amount)
        self.model[K.advertiser_receivable] += payoff
        self.model[K.advertiser_balance] += amount - payoff

    # --- advertisers' money ---

    @rule(amount=st.integers(1, 10**7))
    def fund(self, amount):
        key = self.key("fund")
        self.run(postings.fund_advertiser(self.advertiser_id, amount, CUR, reference_id=1, key=key))
        self.model[K.stripe_clearing] -= amount
        self.model[K.advertiser_balance] += amount
        self.fundings.append((key, amount))

    @precondition(lambda self: self.fundings)
    @rule(data=st.data())
    def replay_a_funding(self, data):
        key, amount = data.draw(st.sampled_from(self.fundings))
        posted = self.run(postings.fund_advertiser(self.advertiser_id, amount, CUR, reference_id=1, key=key))
        assert posted.replayed  # and the model does not change

    @rule(charge=st.integers(2, 10**7), fee_share=st.integers(0, 10))
    def fund_by_card(self, charge, fee_share):
        fee = min(charge * fee_share // 100, charge - 1)
        self.run(
            postings.fund_advertiser_by_card(self.advertiser_id, charge, fee, CUR, reference_id=1, key=self.key("card"))
        )
        self.model[K.stripe_clearing] -= charge - fee
        self.model[K.processing_fees] -= fee
        self._credit(charge)

    @rule(amount=st.integers(1, 10**7), dispute=st.booleans())
    def refund_or_dispute(self, amount, dispute):
        self.run(
            postings.withdraw_funding(
                self.advertiser_id,
                amount,
                CUR,
                kind="funding.disputed" if dispute else "funding.refunded",
                reference_id=1,
                key=self.key("withdraw"),
            )
        )
        taken = min(max(self.model[K.advertiser_balance], 0), amount)
        self.model[K.stripe_clearing] += amount
        self.model[K.advertiser_balance] -= taken
        self.model[K.advertiser_receivable] -= amount - taken

    @rule(amount=st.integers(1, 10**7))
    def dispute_won(self, amount):
        self.run(postings.reinstate_funding(self.advertiser_id, amount, CUR, reference_id=1, key=self.key("won")))
        self.model[K.stripe_clearing] -= amount
        self._credit(amount)

    # --- earnings ---

    @rule(price=st.integers(1, 10**6), share=st.integers(0, 100))
    def approve(self, price, share):
        payout = price * share // 100
        try:
            self.run(
                postings.approve_earning(
                    advertiser_id=self.advertiser_id,
                    publisher_id=self.publisher_id,
                    price=price,
                    payout=payout,
                    currency=CUR,
                    reference_type="manual",
                    reference_id=1,
                    key=self.key("earn"),
                )
            )
        except InsufficientFunds:
            assert self.model[K.advertiser_balance] < price
            return
        assert self.model[K.advertiser_balance] >= price
        self._earned(price, payout, available=False)

    def _earned(self, price: int, payout: int, *, available: bool) -> None:
        self.model[K.advertiser_balance] -= price
        self.model[K.publisher_available if available else K.publisher_pending] += payout
        self.model[K.network_revenue] += price - payout
        self.earnings.append({"price": price, "payout": payout, "released": available, "reversed": False})

    @rule(batch=st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, 100), st.booleans()), min_size=1, max_size=4))
    def approve_a_batch(self, batch):
        """The approval job: many earnings in one call, all or nothing; those past their hold go
        straight to available."""
        earnings = [
            postings.Earning(
                self.advertiser_id,
                self.publisher_id,
                price,
                price * share // 100,
                CUR,
                "manual",
                1,
                self.key("batch-earn"),
                available=hold_over,
            )
            for price, share, hold_over in batch
        ]
        total = sum(e.price for e in earnings)
        try:
            posted = self.run(postings.approve_earnings(earnings))
        except InsufficientFunds:
            assert self.model[K.advertiser_balance] < total
            return
        assert self.model[K.advertiser_balance] >= total and len(posted) == len(earnings)
        for e in earnings:
            self._earned(e.price, e.payout, available=e.available)

    def _pick(self, data, **state) -> dict:
        choices = [e for e in self.earnings if all(e[k] == v for k, v in state.items())]
        return data.draw(st.sampled_from(choices))

    @precondition(lambda self: any(not e["released"] and not e["reversed"] for e in self.earnings))
    @rule(data=st.data())
    def hold_ends(self, data):
        earning = self._pick(data, released=False, reversed=False)
        if earning["payout"]:
            self.run(
                postings.release_earning(
                    self.publisher_id,
                    earning["payout"],
                    CUR,
                    reference_type="manual",
                    reference_id=1,
                    key=self.key("release"),
                )
            )
        self._released(earning)

    def _released(self, earning: dict) -> None:
        earning["released"] = True
        self.model[K.publisher_pending] -= earning["payout"]
        self.model[K.publisher_available] += earning["payout"]

    @precondition(lambda self: any(not e["released"] and not e["reversed"] for e in self.earnings))
    @rule(data=st.data())
    def holds_end_in_a_batch(self, data):
        """The approval job's releases: every chosen earning in one call."""
        waiting = [e for e in self.earnings if not e["released"] and not e["reversed"]]
        chosen = data.draw(st.lists(st.sampled_from(waiting), min_size=1, max_size=4, unique_by=id))
        releases = [
            postings.Release(self.publisher_id, e["payout"], CUR, "manual", 1, self.key("batch-release"))
            for e in chosen
            if e["payout"]
        ]
        self.run(postings.release_earnings(releases))
        for earning in chosen:
            self._released(earning)

    @precondition(lambda self: any(not e["reversed"] for e in self.earnings))
    @rule(data=st.data())
    def reverse(self, data):
        earning = self._pick(data, reversed=False)
        price, payout = earning["price"], earning["payout"]
        self.run(
            postings.reverse_earning(
                advertiser_id=self.advertiser_id,
                publisher_id=self.publisher_id,
                price=price,
                payout=payout,
                currency=CUR,
                released=earning["released"],
                reference_type="manual",
                reference_id=1,
                key=self.key("reverse"),
            )
        )
        earning["reversed"] = True
        self.model[K.advertiser_balance] += price
        self.model[K.network_revenue] -= price - payout
        if not earning["released"]:
            self.model[K.publisher_pending] -= payout
        else:
            from_available = min(max(self.model[K.publisher_available], 0), payout)
            self.model[K.publisher_available] -= from_available
            self.model[K.publisher_receivable] -= payout - from_available

    # --- payouts ---

    @precondition(lambda self: self.model[K.publisher_available] > -self.model[K.publisher_receivable])
    @rule()
    def reserve_a_payout(self):
        """What preparing a batch does: all of available out, the debt netted, the rest in transit."""
        available, owed = self.model[K.publisher_available], -self.model[K.publisher_receivable]
        posted = self.run(
            postings.reserve_payout(
                self.publisher_id, available, CUR, owed=owed, reference_id=1, key=self.key("reserve")
            )
        )
        self.model[K.publisher_available] -= available
        self.model[K.publisher_receivable] += owed
        self.model[K.payouts_in_transit] += available - owed
        self.payouts.append(
            {"txn": posted.txn_id, "available": available, "owed": owed, "state": "reserved", "returned": 0}
        )

    def _payout(self, data, state: str) -> dict:
        return data.draw(st.sampled_from([p for p in self.payouts if p["state"] == state]))

    @precondition(lambda self: any(p["state"] == "reserved" for p in self.payouts))
    @rule(data=st.data())
    def settle(self, data):
        payout = self._payout(data, "reserved")
        net = payout["available"] - payout["owed"]
        self.run(postings.settle_payouts([postings.Settlement(net, CUR, 1, self.key("settle"))]))
        payout["state"] = "settled"
        self.model[K.payouts_in_transit] -= net
        self.model[K.stripe_clearing] += net

    @precondition(lambda self: any(p["state"] == "reserved" for p in self.payouts))
    @rule(data=st.data())
    def hold_or_fail_a_line(self, data):
        """A held line, or a refused transfer: its reservation reversed exactly, the debt back too."""
        payout = self._payout(data, "reserved")
        self.run(postings.reverse(payout["txn"], key=self.key("undo")))
        payout["state"] = "undone"
        self.model[K.publisher_available] += payout["available"]
        self.model[K.publisher_receivable] -= payout["owed"]
        self.model[K.payouts_in_transit] -= payout["available"] - payout["owed"]

    @precondition(
        lambda self: any(p["state"] == "settled" and p["returned"] < p["available"] - p["owed"] for p in self.payouts)
    )
    @rule(data=st.data(), part=st.integers(1, 100))
    def transfer_reversed(self, data, part):
        """Stripe reversed (part of) a paid transfer: back to the publisher's available balance."""
        payout = data.draw(
            st.sampled_from(
                [p for p in self.payouts if p["state"] == "settled" and p["returned"] < p["available"] - p["owed"]]
            )
        )
        left = payout["available"] - payout["owed"] - payout["returned"]
        amount = max(1, left * part // 100)
        self.run(postings.return_payout(self.publisher_id, amount, CUR, reference_id=1, key=self.key("returned")))
        payout["returned"] += amount
        self.model[K.stripe_clearing] -= amount
        self.model[K.publisher_available] += amount

    @invariant()
    def invariants_hold_and_balances_match_the_model(self):
        assert self.run(ledger.check()) == []
        actual = self.run(self.actual())
        assert actual == self.model
        assert actual[K.advertiser_balance] >= 0 and actual[K.advertiser_receivable] <= 0
        assert actual[K.publisher_available] >= 0 and actual[K.publisher_receivable] <= 0


def _run_machine(app_settings) -> None:
    """In a thread with its own event loop and engine: Hypothesis drives the steps synchronously."""
    loop = asyncio.new_event_loop()
    engine = piccolo_app.bind(db.engine_for(app_settings.database_url))
    loop.run_until_complete(db.start(engine))
    try:
        LedgerMachine.loop = loop
        LedgerMachine.app_settings = app_settings
        test = LedgerMachine.TestCase
        test.settings = settings(
            max_examples=20, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        )
        test().runTest()
    finally:
        loop.run_until_complete(db.stop(engine))
        loop.close()


async def test_ledger_state_machine_keeps_every_invariant(clean, settings):
    engine = db.engine()
    try:
        await asyncio.to_thread(_run_machine, settings)
    finally:
        piccolo_app.bind(engine)
    assert await ledger.check() == []
