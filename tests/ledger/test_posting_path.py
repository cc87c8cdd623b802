"""One posting path: production moves money only through server/ledger/postings.py, whose named
functions decide the accounts and signs; the engine that writes entries is the ledger's own."""

from __future__ import annotations

import ast
import tomllib

from server.core.settings import ROOT
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerEntry, LedgerTxn
from tests.factories import make_advertiser, make_publisher

ENGINE = "server.ledger.engine"


def _imports_engine(path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name == ENGINE for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (
            node.module == ENGINE or (node.module == "server.ledger" and any(a.name == "engine" for a in node.names))
        ):
            return True
    return False


def test_no_module_outside_the_ledger_imports_its_engine():
    """Also inside functions, where the import-linter contract cannot see a dodge."""
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("server", "workers")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (ROOT / "server" / "ledger") not in path.parents and _imports_engine(path)
    ]
    assert offenders == []


def test_lint_imports_forbids_the_engine_to_every_other_module():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    forbidden = [c for c in contracts if c["type"] == "forbidden" and ENGINE in c["forbidden_modules"]]
    assert len(forbidden) == 1
    assert set(forbidden[0]["source_modules"]) == {"server.*", "workers.*"}


async def test_a_batch_of_approvals_answers_in_the_order_it_was_given_across_currencies(clean, settings):
    adv, _ = await make_advertiser()
    pub, _ = await make_publisher(settings)
    for currency in ("EUR", "USD"):
        await postings.fund_advertiser(adv, 10_000, currency, reference_id=1, key=f"fund-{currency}-{adv}")
    given = [("EUR", 1, False), ("USD", 2, True), ("EUR", 3, True), ("USD", 4, False)]
    posted = await postings.approve_earnings(
        [
            postings.Earning(adv, pub, 1_000, 700, c, "manual", ref, f"earn-{adv}-{ref}", available=a)
            for c, ref, a in given
        ]
    )
    txns = {r["id"]: r for r in await LedgerTxn.select().where(LedgerTxn.id.is_in([p.txn_id for p in posted]))}
    assert [txns[p.txn_id]["reference_id"] for p in posted] == [1, 2, 3, 4]
    # Past its hold, an earning is available at once; else pending until released.
    assert await ledger.balance(K.publisher_available, "EUR", pub) == 700
    assert await ledger.balance(K.publisher_pending, "USD", pub) == 700
    released = await postings.release_earnings([postings.Release(pub, 700, "USD", "manual", 4, f"release-{adv}-4")])
    assert not released[0].replayed
    assert await ledger.balance(K.publisher_available, "USD", pub) == 1_400  # 2 past its hold, 4 released
    assert await ledger.check() == []


async def test_a_reservation_nets_the_debt_and_its_reversal_gives_both_back(clean, settings):
    adv, _ = await make_advertiser()
    pub, _ = await make_publisher(settings)
    await postings.fund_advertiser(adv, 20_000, "EUR", reference_id=1, key=f"fund-{adv}")
    for ref in (1, 2):
        await postings.approve_earning(
            advertiser_id=adv,
            publisher_id=pub,
            price=5_000,
            payout=5_000,
            currency="EUR",
            reference_type="manual",
            reference_id=ref,
            key=f"earn-{adv}-{ref}",
            available=True,
        )
    # All 10,000 paid out, then 3,000 of an earning clawed back: the publisher owes 3,000.
    await postings.reserve_payout(pub, 10_000, "EUR", reference_id=1, key=f"reserve-{adv}-1")
    await postings.settle_payout(10_000, "EUR", reference_id=1, key=f"settle-{adv}-1")
    await postings.reverse_earning(
        advertiser_id=adv,
        publisher_id=pub,
        price=3_000,
        payout=3_000,
        currency="EUR",
        released=True,
        reference_type="manual",
        reference_id=2,
        key=f"clawback-{adv}",
    )
    assert await ledger.balance(K.publisher_receivable, "EUR", pub) == -3_000
    await postings.fund_advertiser(adv, 10_000, "EUR", reference_id=1, key=f"fund-again-{adv}")
    await postings.approve_earning(
        advertiser_id=adv,
        publisher_id=pub,
        price=8_000,
        payout=8_000,
        currency="EUR",
        reference_type="manual",
        reference_id=3,
        key=f"earn-{adv}-3",
        available=True,
    )
    transit = await ledger.balance(K.payouts_in_transit, "EUR")
    reserved = await postings.reserve_payout(pub, 8_000, "EUR", owed=3_000, reference_id=2, key=f"reserve-{adv}-2")
    entries = sorted(
        (r["account.kind"], r["amount_minor"])
        for r in await LedgerEntry.select(LedgerEntry.account.kind, LedgerEntry.amount_minor).where(
            LedgerEntry.txn == reserved.txn_id
        )
    )
    assert entries == [("payouts_in_transit", 5_000), ("publisher_available", -8_000), ("publisher_receivable", 3_000)]
    assert await ledger.balance(K.publisher_receivable, "EUR", pub) == 0
    await postings.reverse(reserved.txn_id, key=f"undo-{adv}-2", memo="held")
    assert await ledger.balance(K.publisher_available, "EUR", pub) == 8_000
    assert await ledger.balance(K.publisher_receivable, "EUR", pub) == -3_000
    assert await ledger.balance(K.payouts_in_transit, "EUR") == transit
    # A transfer reversed at Stripe: the money comes back to the publisher's available balance.
    before = await ledger.balance(K.stripe_clearing, "EUR")
    await postings.return_payout(pub, 2_500, "EUR", reference_id=1, key=f"returned-{adv}")
    assert await ledger.balance(K.publisher_available, "EUR", pub) == 10_500
    assert await ledger.balance(K.stripe_clearing, "EUR") == before - 2_500
    assert await ledger.check() == []
