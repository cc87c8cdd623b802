"""The posting function: balanced, integer, idempotent, atomic, append-only, never overdrawn."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from server.core.settings import ROOT
from server.ledger import engine, postings
from server.ledger import service as ledger
from server.ledger.engine import Line
from server.ledger.service import InsufficientFunds, LedgerError
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerAccount, LedgerEntry, LedgerTxn
from tests.conftest import TEST_SECRET
from tests.factories import make_advertiser, make_publisher


async def funded_advertiser(amount: int = 10_000, currency: str = "EUR") -> int:
    adv_id, _ = await make_advertiser()
    await postings.fund_advertiser(adv_id, amount, currency, reference_id=1, key=f"fund-{adv_id}")
    return adv_id


async def test_unbalanced_float_and_zero_lines_are_refused_and_move_nothing(clean):
    adv_id = await funded_advertiser()
    a = await ledger.account(K.advertiser_balance, "EUR", adv_id)
    b = await ledger.account(K.network_revenue, "EUR")
    before = (await LedgerTxn.count(), await LedgerEntry.count())
    bad = [
        [Line(a, -100, "EUR"), Line(b, 99, "EUR")],  # sums to -1
        [Line(a, -100, "EUR"), Line(b, 100, "USD")],  # balanced only across currencies
        [Line(a, -1.5, "EUR"), Line(b, 1.5, "EUR")],  # floats never
        [Line(a, 0, "EUR"), Line(b, 0, "EUR")],
        [Line(a, -100, "EUR")],
    ]
    for i, lines in enumerate(bad):
        with pytest.raises(LedgerError):
            await engine.post(
                kind="test", idempotency_key=f"bad-{i}", lines=lines, reference_type="manual", reference_id=1
            )
    with pytest.raises(LedgerError, match="holds EUR"):
        usd = await ledger.account(K.network_revenue, "USD")
        await engine.post(
            kind="test",
            idempotency_key="cur",
            reference_type="manual",
            reference_id=1,
            lines=[Line(a, -100, "USD"), Line(usd, 100, "USD")],
        )
    assert (await LedgerTxn.count(), await LedgerEntry.count()) == before
    assert await ledger.check() == []


async def test_an_idempotency_key_posts_once(clean):
    adv_id, _ = await make_advertiser()
    first = await postings.fund_advertiser(adv_id, 5_000, "EUR", reference_id=7, key="charge-ch_123")
    again = await postings.fund_advertiser(adv_id, 5_000, "EUR", reference_id=7, key="charge-ch_123")
    assert again.replayed and again.txn_id == first.txn_id and not first.replayed
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 5_000


async def test_spending_more_than_the_balance_is_refused_whole(clean, settings):
    adv_id = await funded_advertiser(1_000)
    pub_id, _ = await make_publisher(settings)
    with pytest.raises(InsufficientFunds):
        await postings.approve_earning(
            advertiser_id=adv_id,
            publisher_id=pub_id,
            price=1_001,
            payout=800,
            currency="EUR",
            reference_type="manual",
            reference_id=1,
            key="c1",
        )
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 1_000
    assert await ledger.balance(K.publisher_pending, "EUR", pub_id) == 0
    assert await LedgerTxn.count().where(LedgerTxn.idempotency_key == "c1") == 0


async def test_concurrent_spends_never_overdraw_the_advertiser(clean, settings):
    """50 spends of 300 against 10,000: exactly 33 go through, on either engine."""
    adv_id = await funded_advertiser(10_000)
    pub_id, _ = await make_publisher(settings)

    async def spend(i: int) -> bool:
        try:
            await postings.approve_earning(
                advertiser_id=adv_id,
                publisher_id=pub_id,
                price=300,
                payout=240,
                currency="EUR",
                reference_type="manual",
                reference_id=i,
                key=f"conv-{i}",
            )
        except InsufficientFunds:
            return False
        return True

    results = await asyncio.gather(*[spend(i) for i in range(50)])
    assert sum(results) == 33
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 100
    assert await ledger.balance(K.publisher_pending, "EUR", pub_id) == 33 * 240
    assert await ledger.balance(K.network_revenue, "EUR") == 33 * 60
    assert await ledger.check() == []


def spends(adv_acct: int, pub_acct: int, keys: range, price: int = 300) -> list[engine.Posting]:
    return [
        engine.Posting(
            kind="earning",
            idempotency_key=f"batch-{i}",
            reference_type="manual",
            reference_id=i,
            lines=[Line(adv_acct, -price, "EUR"), Line(pub_acct, price, "EUR")],
        )
        for i in keys
    ]


@pytest.mark.parametrize("size", [10, engine.BULK + 50], ids=["small", "bulk"])
async def test_a_batch_posts_one_transaction_per_posting_and_replays_what_was_posted(clean, settings, size):
    """Small batches insert; from engine.BULK postings on, PostgreSQL copies (and falls back to
    the insert that skips keys when some were posted before)."""
    adv_id = await funded_advertiser(1_000_000)
    pub_id, _ = await make_publisher(settings)
    adv = await ledger.account(K.advertiser_balance, "EUR", adv_id)
    pub = await ledger.account(K.publisher_available, "EUR", pub_id)
    half = size // 2
    first = await engine.post_many(spends(adv, pub, range(0, size)))
    assert len({p.txn_id for p in first}) == size and not any(p.replayed for p in first)
    # An overlapping batch: the half already posted replay with their first ids, the rest are new.
    second = await engine.post_many(spends(adv, pub, range(half, size + half)))
    assert [p.txn_id for p in second[: size - half]] == [p.txn_id for p in first[half:]]
    assert [p.replayed for p in second] == [True] * (size - half) + [False] * half
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 1_000_000 - (size + half) * 300
    assert await ledger.balance(K.publisher_available, "EUR", pub_id) == (size + half) * 300
    assert await LedgerEntry.count() == 2 + (size + half) * 2  # the funding, then two lines per spend
    assert await ledger.check() == []


async def test_a_batch_the_balance_cannot_cover_moves_nothing(clean, settings):
    adv_id = await funded_advertiser(1_000)
    pub_id, _ = await make_publisher(settings)
    adv = await ledger.account(K.advertiser_balance, "EUR", adv_id)
    pub = await ledger.account(K.publisher_available, "EUR", pub_id)
    before = (await LedgerTxn.count(), await LedgerEntry.count())
    with pytest.raises(InsufficientFunds):
        await engine.post_many(spends(adv, pub, range(4)))  # 1,200 against 1,000
    assert (await LedgerTxn.count(), await LedgerEntry.count()) == before
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 1_000
    with pytest.raises(LedgerError, match="its own idempotency key"):
        await engine.post_many(spends(adv, pub, range(1)) * 2)
    assert await ledger.check() == []


async def test_the_same_batch_posted_twice_at_once_moves_money_once(clean, settings):
    adv_id = await funded_advertiser(100_000)
    pub_id, _ = await make_publisher(settings)
    adv = await ledger.account(K.advertiser_balance, "EUR", adv_id)
    pub = await ledger.account(K.publisher_available, "EUR", pub_id)
    n = engine.BULK + 50
    first, second = await asyncio.gather(
        engine.post_many(spends(adv, pub, range(n))), engine.post_many(spends(adv, pub, range(n)))
    )
    assert [a.txn_id for a in first] == [b.txn_id for b in second]
    assert sum(not p.replayed for p in first + second) == n
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 100_000 - n * 300
    assert await ledger.check() == []


async def test_entries_and_transactions_cannot_be_updated_or_deleted(clean):
    adv_id = await funded_advertiser()
    for sql in [
        "UPDATE ledger_entry SET amount_minor = amount_minor + 1",
        "DELETE FROM ledger_entry",
        "UPDATE ledger_txn SET memo = 'x'",
        "DELETE FROM ledger_txn",
        "DELETE FROM ledger_account",
    ]:
        with pytest.raises(Exception, match="append-only"):
            await LedgerEntry.raw(sql)
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 10_000
    assert await ledger.check() == []


async def test_an_entry_pointing_nowhere_is_refused_or_reported_by_the_check(clean, settings):
    """SQLite keeps per-row foreign keys; PostgreSQL drops them for bulk posting speed, and the
    ledger check reports an orphan entry instead (server/ledger/schema.py)."""
    from server.core import db

    adv_id = await funded_advertiser()
    txn = await LedgerTxn.select(LedgerTxn.id).first()
    orphan = "INSERT INTO ledger_entry (txn, account, amount_minor, currency) VALUES ({}, {}, 0, 'EUR')"
    if db.is_sqlite():
        with pytest.raises(Exception, match="FOREIGN KEY"):
            await LedgerEntry.raw(orphan, txn["id"], 999_999)
        assert await ledger.check() == []
    else:
        await LedgerEntry.raw(orphan, txn["id"], 999_999)
        assert await ledger.check() == [
            f"I6 entry {(await LedgerEntry.select(LedgerEntry.id).where(LedgerEntry.account == 999_999).first())['id']}"
            f" points at a missing transaction {txn['id']} or account 999999"
        ]
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 10_000


async def test_an_earning_for_a_conversion_that_does_not_exist_is_reported(clean, settings):
    """I6: every earning traces to what earned it; the check's orphan query names any that does not."""
    adv_id = await funded_advertiser()
    pub_id, _ = await make_publisher(settings)
    posted = await postings.approve_earning(
        advertiser_id=adv_id,
        publisher_id=pub_id,
        price=1_000,
        payout=800,
        currency="EUR",
        reference_type="conversion",
        reference_id=424242,
        key="made-up",
    )
    assert await ledger.check() == [f"I6 transaction {posted.txn_id} is for conversion 424242, which does not exist"]


async def test_a_reversal_undoes_exactly_once(clean, settings):
    adv_id = await funded_advertiser(10_000)
    pub_id, _ = await make_publisher(settings)
    earned = await postings.approve_earning(
        advertiser_id=adv_id,
        publisher_id=pub_id,
        price=1_000,
        payout=800,
        currency="EUR",
        reference_type="manual",
        reference_id=9,
        key="e9",
    )
    undone = await engine.reverse(earned.txn_id, idempotency_key="r9")
    assert (await engine.reverse(earned.txn_id, idempotency_key="r9")).txn_id == undone.txn_id  # a replay
    with pytest.raises(Exception, match="already been reversed"):
        await engine.reverse(earned.txn_id, idempotency_key="r9-again")
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 10_000
    assert await ledger.balance(K.publisher_pending, "EUR", pub_id) == 0
    assert await ledger.balance(K.network_revenue, "EUR") == 0


async def test_reversal_after_payout_becomes_a_receivable(clean, settings):
    adv_id = await funded_advertiser(10_000)
    pub_id, _ = await make_publisher(settings)
    common = {
        "advertiser_id": adv_id,
        "publisher_id": pub_id,
        "price": 1_000,
        "payout": 800,
        "currency": "EUR",
        "reference_type": "manual",
        "reference_id": 3,
    }
    await postings.approve_earning(**common, key="e3")
    await postings.release_earning(pub_id, 800, "EUR", reference_type="manual", reference_id=3, key="rel3")
    await postings.reserve_payout(pub_id, 800, "EUR", reference_id=1, key="line1")
    await postings.settle_payout(800, "EUR", reference_id=1, key="paid1")
    await postings.reverse_earning(**common, released=True, key="rev3")
    assert await ledger.balance(K.publisher_available, "EUR", pub_id) == 0
    assert await ledger.balance(K.publisher_receivable, "EUR", pub_id) == -800  # owed back, netted next time
    assert await ledger.balance(K.advertiser_balance, "EUR", adv_id) == 10_000
    assert await ledger.check() == []


def _ledger_check(settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "SECRET_KEY": TEST_SECRET}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "ledger", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_ledger_check_reports_drift_and_exits_non_zero(clean, settings):
    adv_id = await funded_advertiser(2_500)
    healthy = _ledger_check(settings)
    assert healthy.returncode == 0, healthy.stderr
    assert "every invariant holds" in healthy.stdout
    # A cached balance edited behind the posting function's back is drift (I3).
    account_id = await ledger.account(K.advertiser_balance, "EUR", adv_id)
    await LedgerAccount.update({LedgerAccount.balance_minor: 9_999}).where(LedgerAccount.id == account_id)
    drifted = _ledger_check(settings)
    assert drifted.returncode == 1
    assert f"I3 account {account_id} (advertiser_balance) stores 9999 but its entries sum to 2500" in drifted.stderr
