"""A Hypothesis state machine drives the ledger through funding, earnings, holds, payouts,
reversals and replays, and after every step checks MONEY.md's invariants (`ledger.check()`)
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
from server.ledger import service as ledger
from server.ledger import templates
from server.ledger.service import InsufficientFunds
from server.ledger.tables import AccountKind as K
from tests.factories import make_advertiser, make_publisher

CUR = "EUR"
TRACKED = [
    K.advertiser_balance,
    K.publisher_pending,
    K.publisher_available,
    K.publisher_receivable,
    K.network_revenue,
    K.payouts_in_transit,
    K.stripe_clearing,
]


class LedgerMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    app_settings: object

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def owner(self, kind: K) -> int | None:
        return {"advertiser": self.advertiser_id, "publisher": self.publisher_id}.get(
            "advertiser"
            if kind is K.advertiser_balance
            else "publisher"
            if kind.value.startswith("publisher")
            else "network"
        )

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

    def key(self, what: str) -> str:
        return f"{self.prefix}-{what}-{next(self.seq)}"

    @rule(amount=st.integers(1, 10**7))
    def fund(self, amount):
        key = self.key("fund")
        self.run(templates.fund_advertiser(self.advertiser_id, amount, CUR, reference_id=1, key=key))
        self.model[K.stripe_clearing] -= amount
        self.model[K.advertiser_balance] += amount
        self.fundings.append((key, amount))

    @precondition(lambda self: self.fundings)
    @rule(data=st.data())
    def replay_a_funding(self, data):
        key, amount = data.draw(st.sampled_from(self.fundings))
        posted = self.run(templates.fund_advertiser(self.advertiser_id, amount, CUR, reference_id=1, key=key))
        assert posted.replayed  # and the model does not change

    @rule(price=st.integers(1, 10**6), share=st.integers(0, 100))
    def approve(self, price, share):
        payout = price * share // 100
        key = self.key("earn")
        try:
            self.run(
                templates.approve_earning(
                    advertiser_id=self.advertiser_id,
                    publisher_id=self.publisher_id,
                    price=price,
                    payout=payout,
                    currency=CUR,
                    reference_type="manual",
                    reference_id=1,
                    key=key,
                )
            )
        except InsufficientFunds:
            assert self.model[K.advertiser_balance] < price
            return
        assert self.model[K.advertiser_balance] >= price
        self.model[K.advertiser_balance] -= price
        self.model[K.publisher_pending] += payout
        self.model[K.network_revenue] += price - payout
        self.earnings.append({"price": price, "payout": payout, "released": False, "reversed": False})

    def _pick(self, data, **state) -> dict:
        choices = [e for e in self.earnings if all(e[k] == v for k, v in state.items())]
        return data.draw(st.sampled_from(choices))

    @precondition(lambda self: any(not e["released"] and not e["reversed"] for e in self.earnings))
    @rule(data=st.data())
    def hold_ends(self, data):
        earning = self._pick(data, released=False, reversed=False)
        if earning["payout"]:
            self.run(
                templates.release_earning(
                    self.publisher_id,
                    earning["payout"],
                    CUR,
                    reference_type="manual",
                    reference_id=1,
                    key=self.key("release"),
                )
            )
        earning["released"] = True
        self.model[K.publisher_pending] -= earning["payout"]
        self.model[K.publisher_available] += earning["payout"]

    @precondition(lambda self: self.model[K.publisher_available] > 0)
    @rule()
    def pay_out_everything_available(self):
        amount = self.model[K.publisher_available]
        self.run(templates.reserve_payout(self.publisher_id, amount, CUR, reference_id=1, key=self.key("reserve")))
        self.run(templates.settle_payout(amount, CUR, reference_id=1, key=self.key("settle")))
        self.model[K.publisher_available] -= amount
        self.model[K.stripe_clearing] += amount

    @precondition(lambda self: any(not e["reversed"] for e in self.earnings))
    @rule(data=st.data())
    def reverse(self, data):
        earning = self._pick(data, reversed=False)
        price, payout = earning["price"], earning["payout"]
        self.run(
            templates.reverse_earning(
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

    @invariant()
    def invariants_hold_and_balances_match_the_model(self):
        assert self.run(ledger.check()) == []
        actual = self.run(self.actual())
        assert actual == self.model
        assert actual[K.advertiser_balance] >= 0 and actual[K.publisher_receivable] <= 0


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
