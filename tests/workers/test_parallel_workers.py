"""Two `affnet worker` processes on one PostgreSQL, one Redis and the Stripe stand-in: a payout batch of
10,000 lines and a reconcile of 100,000 conversions are shared between them, and still each line is paid
once at Stripe, each conversion approved once, and the ledger checks clean (issue 16)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from dev.services import stop_all
from server.accounts.tables import Role, User
from server.campaigns.tables import Goal
from server.conversions.tables import Conversion
from server.core import clock, db
from server.core.settings import ROOT, Settings
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.payouts import service as payouts
from server.payouts.account_tables import PayoutAccount
from server.payouts.tables import PayoutBatch, PayoutLine
from tests.conftest import TEST_SECRET
from tests.factories import make_advertiser, post_form, staff_client
from tests.payouts.factories import fresh_line_ids
from tests.tracking.factories import campaign_with_link

pytestmark = pytest.mark.slow

LINES = 10_000
CONVERSIONS = 100_000
AMOUNT = 5_000  # each line: the default minimum payout
PRICE, PAYOUT = 100, 80  # each conversion
DEADLINE = 600.0  # seconds the workers may take on a loaded machine (polled, never asserted as timing)


class Workers:
    """`affnet worker` processes with the test's database, Redis and stand-in; each logs to its own file."""

    def __init__(self, settings: Settings, stripe, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": TEST_SECRET,
            "STRIPE_SECRET_KEY": stripe.secret_key,
            "STRIPE_WEBHOOK_SECRET": stripe.webhook_secret,
            "STRIPE_CONNECT_WEBHOOK_SECRET": stripe.connect_webhook_secret,
            "STRIPE_API_BASE": stripe.base_url,
            "MEDIA_DIR": str(tmp / "media"),
            "JOURNAL_DIR": str(tmp / "journal"),
            "AFFNET_DATA_DIR": str(tmp / "data"),
        }
        self.procs: list[subprocess.Popen] = []

    def start(self, count: int) -> None:
        for n in range(count):
            log = open(self.tmp / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed when the process is reaped
            self.procs.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "server.cli", "worker"],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()

    def names(self) -> list[str]:
        """Each process as a payout line's `worker` names it (host:pid)."""
        import socket  # noqa: PLC0415

        return [f"{socket.gethostname()}:{p.pid}" for p in self.procs]

    def log(self, n: int) -> str:
        return (self.tmp / f"worker-{n}.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_all(self.procs)


async def _publishers_with_connect_accounts(stripe, count: int, effective_at) -> list[int]:
    """`count` publishers, each with AMOUNT available as it stood at `effective_at` and an onboarded
    account at the stand-in, written in bulk (COPY; the earnings through the ledger's own posting)."""
    accounts = stripe.control("POST", "/_local/accounts/onboarded", count=count).json()["data"]
    now = clock.now()
    async with db.transaction():
        ids = await db.insert_rows(
            User,
            ["email", "password_hash", "role", "is_active", "created_at", "password_changed_at", "time_zone"],
            [(f"bulk-{i}@publishers.test", "!", Role.publisher.value, True, now, now, "") for i in range(count)],
        )
        await db.insert_rows(
            PayoutAccount,
            [
                "publisher",
                "stripe_account_id",
                "country",
                "default_currency",
                "details_submitted",
                "payouts_enabled",
                "requirements_due",
                "disabled_reason",
                "created_at",
                "updated_at",
            ],
            [(p, a, "DE", "eur", True, True, "", "", now, now) for p, a in zip(ids, accounts, strict=True)],
        )
    advertiser_id, _ = await make_advertiser()
    await postings.fund_advertiser(advertiser_id, count * AMOUNT, "EUR", reference_id=1, key="fund:bulk-earnings")
    await postings.approve_earnings(
        [
            postings.Earning(advertiser_id, p, AMOUNT, AMOUNT, "EUR", "manual", p, f"bulk-earning:{p}", available=True)
            for p in ids
        ],
        effective_at=effective_at,
    )
    return ids


async def _due_conversions(settings: Settings, publishers: list[int], count: int) -> None:
    """`count` pending CPA conversions past their hold on one funded campaign, earned by `publishers`
    in turn: one INSERT … SELECT (the intake's own path is measured elsewhere)."""
    setup = await campaign_with_link(settings)
    goal = await Goal.select(Goal.id).where(Goal.campaign == setup.campaign_id).first()
    await postings.fund_advertiser(
        setup.advertiser.id, count * PRICE, "EUR", reference_id=2, key="fund:bulk-conversions"
    )
    past = clock.now() - timedelta(days=1)
    await Conversion.raw(
        "INSERT INTO conversion (campaign, goal, publisher, link, click_id, click_ordinal, txn_id, currency, "
        "advertiser_amount_minor, publisher_amount_minor, network_amount_minor, status, status_reason, source, "
        "clicked_at, converted_at, hold_until, created_at) "
        "SELECT {}, {}, ({}::bigint[])[1 + g % {}], {}, 'bulk-click-' || g, 1, 'bulk-' || g, 'EUR', "
        "{}, {}, {}, 'pending', '', 'postback', {}, {}, {}, {} FROM generate_series(1, {}) AS g",
        setup.campaign_id,
        goal["id"],
        publishers,
        len(publishers),
        setup.link_id,
        PRICE,
        PAYOUT,
        PRICE - PAYOUT,
        past,
        past,
        past,
        past,
        count,
    )


async def _until(check, what: str, workers: Workers) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if await check():
            return
        if any(p.poll() is not None for p in workers.procs):
            pytest.fail(
                f"a worker exited while waiting for {what}:\n" + workers.log(0)[-3000:] + workers.log(1)[-3000:]
            )
        await asyncio.sleep(1)
    pytest.fail(f"not within {DEADLINE:.0f} s: {what}")


def _approved_by_log(text: str) -> int:
    """Conversions the reconcile runs (the cron job and its helpers) of one worker say they approved."""
    return sum(int(m.group(1)) for m in re.finditer(r"← \S*reconcile_conversions ● \{'approved': (\d+)", text))


async def test_two_workers_share_a_payout_batch_and_a_reconcile_and_do_each_thing_once(
    new_client, settings: Settings, new_stripe_account, tmp_path: Path
):
    if settings.is_sqlite:
        pytest.skip("two worker processes on one database: PostgreSQL (SQLite has one writer)")
    stripe = new_stripe_account()
    stripe.fund_platform(99_999_999)
    funds = stripe.available()
    await fresh_line_ids()

    # A period that closed before now, so the workers' own startup `prepare_payouts` finds it prepared.
    _, cutoff = payouts.last_cutoff(await payouts.schedule_terms(), clock.now())
    publishers = await _publishers_with_connect_accounts(stripe, LINES, cutoff - timedelta(hours=1))
    prepared = await payouts.prepare_due(clock.now())
    assert prepared.lines == LINES
    [batch_id] = prepared.batches
    finance, _ = await staff_client(new_client, Role.finance, first_page="/finance/payouts")
    # Approved through the page, which queues the batch's job on Redis for the workers.
    assert (await post_form(finance, f"/finance/payouts/{batch_id}/approve")).status_code == 303
    await _due_conversions(settings, publishers, CONVERSIONS)

    workers = Workers(settings, stripe, tmp_path)
    began = time.monotonic()
    workers.start(2)
    try:

        async def batch_done() -> bool:
            row = await PayoutBatch.select(PayoutBatch.status).where(PayoutBatch.id == batch_id).first()
            return row["status"] == "done"

        async def reconciled() -> bool:
            return await Conversion.count().where(Conversion.status == "pending") == 0

        await _until(batch_done, "the batch was paid", workers)
        paid_after = time.monotonic() - began
        await _until(reconciled, "every conversion was approved", workers)
        approved_after = time.monotonic() - began
        logs = [workers.log(0), workers.log(1)]
    finally:
        workers.stop()
    figures = f"{LINES} lines paid {paid_after:.1f} s, {CONVERSIONS} conversions approved {approved_after:.1f} s"
    print(f"\n{figures} after the workers started")  # noqa: T201 - the figures for docs/scaling.md (-s)

    # Each line paid once: one transfer made per line at the stand-in, under the line's first key. The SDK may
    # send a request again after a network timeout on a loaded machine (same key): Stripe replays the first
    # answer, so a replay is allowed and never a second transfer.
    lines = await PayoutLine.select(PayoutLine.id, PayoutLine.status, PayoutLine.worker).where(
        PayoutLine.batch == batch_id
    )
    assert len(lines) == LINES and {line["status"] for line in lines} == {"paid"}
    posts = [
        r
        for r in stripe.control("GET", "/_local/requests").json()["data"]
        if r["method"] == "POST" and r["path"] == "/v1/transfers"
    ]
    keys = {f"payout-line:{line['id']}:attempt:1" for line in lines}
    assert {r["idempotency_key"] for r in posts} == keys
    made = Counter(r["idempotency_key"] for r in posts if r["status"] == 200 and not r.get("replayed"))
    twice = {key: n for key, n in made.items() if n != 1}
    assert set(made) == keys and not twice, (len(made), twice, Counter((r["status"], r.get("replayed")) for r in posts))
    assert funds - stripe.available() == LINES * AMOUNT
    assert await LedgerTxn.count().where(LedgerTxn.kind == "payout.settled") == LINES
    # Shared: each worker paid some of the lines (the line records which one).
    by_worker = Counter(line["worker"] for line in lines)
    assert set(by_worker) == set(workers.names()), by_worker
    assert all(n > 0 for n in by_worker.values())

    # Each conversion approved once: one ledger transaction per conversion, and the runs' own counts add up.
    assert await Conversion.count().where(Conversion.status == "approved") == CONVERSIONS
    per_conversion = await LedgerTxn.raw(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT reference_id) AS conversions FROM ledger_txn "
        "WHERE reference_type = 'conversion'"
    )
    assert per_conversion == [{"n": CONVERSIONS, "conversions": CONVERSIONS}]
    approved = [_approved_by_log(text) for text in logs]
    assert sum(approved) == CONVERSIONS and all(n > 0 for n in approved), approved

    assert await ledger.check() == []
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
