"""Benchmark payout batches (issue 6): preparing a period's batch for N publishers, and paying one.

    .venv/bin/python bench/payout_batch.py [--publishers 100000] [--transfers 2000]
                                           [--postgres | --database-url URL] [--profile]

Makes a fresh database (SQLite, or a throwaway PostgreSQL on loopback with --postgres) and starts the
local Stripe stand-in (`affnet-dev stripe-local`) on a free loopback port, with M connected accounts made
through the SDK and onboarded through its /_local controls. Then:

1. prepare: N publishers, each with a payout account that can receive payouts and an available balance
   above the minimum (one `post_many` of balanced postings from stripe_clearing), and the time of
   `prepare_due` exactly as the worker's cron calls it, with a clock after the cut-off. Checked: one
   line per publisher, each reserved once, nothing carried over, a second run prepares nothing,
   `ledger.check()` clean.
2. execute: M of those publishers (on the stand-in's accounts) earn again; the next period's batch is
   prepared by one finance user, approved by another, and `execute` is timed with the client the worker
   uses. Checked on both sides: every line paid and settled once, exactly M transfers made at the
   stand-in (its request log), one idempotency key per line, a second execute sends nothing,
   `ledger.check()` clean.

Target (issue 6): prepare ≤ 10 s for 100,000 publishers on PostgreSQL; execute ≥ 200 transfers/s.
Traffic goes to 127.0.0.1 only, bounded in count (M ≤ 20,000) and time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, SECRET, bench_database, durability, load_average, machine  # noqa: E402

sys.path.insert(0, str(ROOT))

CURRENCY = "EUR"  # the big batch
PAID_CURRENCY = "USD"  # the batch paid at the stand-in: only the M publishers on its accounts earn in it
BASE_AMOUNT = 10_000  # 100.00 EUR and up: above the default 50.00 minimum
EXECUTE_TIMEOUT = 900  # seconds: the execute phase is bounded even if the stand-in stalls
USER_COLUMNS = ["email", "password_hash", "role", "is_active", "created_at", "password_changed_at"]
ACCOUNT_COLUMNS = [
    "publisher",
    "stripe_account_id",
    "country",
    "default_currency",
    "details_submitted",
    "payouts_enabled",
    "requirements_due",
    "disabled_reason",
    "state_at",
    "created_at",
    "updated_at",
]


PROFILE = False  # --profile: where each timed phase spends this process's time (cProfile; slows it down)


@contextmanager
def profiled(phase: str) -> Iterator[None]:
    if not PROFILE:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        print(f"--- profile of {phase} (this process only; the database and the stand-in are not in it) ---")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)


def amount_for(i: int) -> int:
    return BASE_AMOUNT + (i % 997)


# --- the stand-in ----------------------------------------------------------------------------------


class StandIn:
    """`affnet-dev stripe-local` on a free loopback port; the key reaches it by environment, as `affnet-dev dev`
    does."""

    def __init__(self, workdir: Path) -> None:
        from dev.services import free_port, wait_for_port

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.secret_key = "sk_test_bench" + secrets.token_hex(12)
        env = {
            **os.environ,
            "STRIPE_SECRET_KEY": self.secret_key,
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
        }
        self.log = open(workdir / "stripe-local.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dev.cli",
                "stripe-local",
                "--port",  # noqa: S603
                str(self.port),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=30, proc=self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


async def connected_accounts(stand_in: StandIn, m: int) -> list[str]:
    """M Express accounts through the SDK, each onboarded (transfers active) through the /_local control, and
    the platform's balance funded to pay them."""
    import httpx

    from server.billing import stripe_api

    client = stripe_api.new_client(stand_in.secret_key, stand_in.base_url, network_retries=0)
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=stand_in.base_url, timeout=30) as local:

        async def one(_: int) -> str:
            async with gate:
                account = await client.v1.accounts.create_async(
                    {"type": "express", "country": "DE", "capabilities": {"transfers": {"requested": True}}}
                )
                done = await local.post(f"/_local/accounts/{account.id}/complete_onboarding")
                done.raise_for_status()
                return account.id

        accounts = list(await asyncio.gather(*(one(i) for i in range(m))))
        # Transfers are paid from the platform's available balance, as on Stripe: fund it first, with the
        # test card whose funds are available at once (every line is below 2 × BASE_AMOUNT).
        for n in range(-(-m * 2 * BASE_AMOUNT // 99_999_999)):
            session = await client.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "success_url": "http://bench.test/ok",
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": PAID_CURRENCY.lower(),
                                "unit_amount": 99_999_999,
                                "product_data": {"name": "platform funds"},
                            },
                        }
                    ],
                },
                {"idempotency_key": f"bench-fund-{n}"},
            )
            paid = await local.post(f"/_local/checkout/sessions/{session.id}/pay", data={"card": "4000000000000077"})
            paid.raise_for_status()
        return accounts


async def transfer_posts(stand_in: StandIn) -> list[dict]:
    import httpx

    async with httpx.AsyncClient(base_url=stand_in.base_url, timeout=60) as local:
        answer = await local.get("/_local/requests")
        answer.raise_for_status()
    return [r for r in answer.json()["data"] if r["method"] == "POST" and r["path"] == "/v1/transfers"]


# --- seeding ---------------------------------------------------------------------------------------


async def bulk(table: str, columns: list[str], rows: list[tuple]) -> None:
    """COPY on PostgreSQL, executemany in one transaction on SQLite."""
    from server.core import db

    eng = db.engine()
    if db.is_sqlite(eng):
        conn = await eng.get_connection()
        try:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608  # constant names
                f"VALUES ({', '.join('?' * len(columns))})",
                rows,
            )
            await conn.execute("COMMIT")
        finally:
            await conn.close()
        return
    async with eng.pool.acquire() as conn:
        await conn.copy_records_to_table(table, records=rows, columns=columns)
        await conn.execute(f"ANALYZE {table}")


async def seed(n: int, stripe_accounts: list[str]) -> tuple[list[int], list[int]]:
    """N ready publishers with money available (the first M on the stand-in's accounts), and two finance users.
    Users are bulk-inserted with an unusable hash: nobody logs in, and argon2 would take minutes."""
    from server.accounts.tables import Role, User
    from server.ledger.tables import AccountKind as K

    now = datetime.now(UTC)
    users = [(f"pub{i}@bench.example", "!", Role.publisher.value, True, now, now) for i in range(n)]
    users += [(f"finance{i}@bench.example", "!", Role.finance.value, True, now, now) for i in range(2)]
    await bulk("app_user", USER_COLUMNS, users)
    ids = {r["email"]: r["id"] for r in await User.select(User.id, User.email)}
    pub_ids = [ids[f"pub{i}@bench.example"] for i in range(n)]
    finance = [ids[f"finance{i}@bench.example"] for i in range(2)]
    accounts = [
        (
            pub,
            stripe_accounts[i] if i < len(stripe_accounts) else f"acct_bench{i:010d}",
            "DE",
            "eur",
            True,
            True,
            "",
            "",
            now,
            now,
            now,
        )
        for i, pub in enumerate(pub_ids)
    ]
    await bulk("payout_account", ACCOUNT_COLUMNS, accounts)
    # The publishers' available accounts, created empty (as releases would have); `accounts` makes the
    # missing ones one at a time, which is not what is measured here.
    await bulk(
        "ledger_account",
        ["owner", "kind", "currency", "balance_minor", "created_at"],
        [(pub, K.publisher_available.value, CURRENCY, 0, now) for pub in pub_ids]
        + [(pub, K.publisher_available.value, PAID_CURRENCY, 0, now) for pub in pub_ids[: len(stripe_accounts)]],
    )
    await earn(pub_ids, CURRENCY)
    return pub_ids, finance


async def earn(pub_ids: list[int], currency: str) -> None:
    """Money into each publisher's available balance: one `post_many` of balanced postings from stripe_clearing."""
    from server.ledger import engine  # a bench seeds money no production posting makes
    from server.ledger import service as ledger
    from server.ledger.engine import Line, Posting
    from server.ledger.tables import AccountKind as K

    clearing = await ledger.account(K.stripe_clearing, currency)
    available = await ledger.accounts(K.publisher_available, currency, pub_ids)
    await engine.post_many(
        [
            Posting(
                "bench.credit",
                f"bench:{currency}:{pub}",
                [Line(clearing, -amount_for(i), currency), Line(available[pub], amount_for(i), currency)],
                "manual",
                pub,
                memo="benchmark seed",
            )
            for i, pub in enumerate(pub_ids)
        ]
    )


# --- the phases ------------------------------------------------------------------------------------


async def prepare_phase(n: int, clock: datetime) -> tuple[float, list[str]]:
    from server.ledger import service as ledger
    from server.ledger.tables import AccountKind as K
    from server.ledger.tables import LedgerAccount, LedgerTxn
    from server.payouts import service as payouts
    from server.payouts.tables import PayoutBatch, PayoutCarryOver, PayoutLine

    started = time.perf_counter()
    with profiled("prepare"):
        outcome = await payouts.prepare_due(clock)  # as workers/jobs/payouts.py:prepare_payouts calls it
    elapsed = time.perf_counter() - started
    print(
        f"prepare: {outcome.lines:,} lines, {outcome.carried:,} carried over, in {elapsed:.2f} s "
        f"= {outcome.lines / elapsed:,.0f} publishers/s"
    )

    again = await payouts.prepare_due(clock)
    total = sum(amount_for(i) for i in range(n))
    [batch_id] = outcome.batches or [None]
    batch = await PayoutBatch.select().where(PayoutBatch.id == batch_id).first() if batch_id else None
    lines = await PayoutLine.count().where(PayoutLine.batch == batch_id)
    publishers = len(await PayoutLine.select(PayoutLine.publisher).where(PayoutLine.batch == batch_id).distinct())
    reserved = await LedgerTxn.count().where(LedgerTxn.kind == "payout.reserved")
    reserved_lines = len(
        await LedgerTxn.select(LedgerTxn.reference_id).where(LedgerTxn.kind == "payout.reserved").distinct()
    )
    reasons = {
        r["reason"]: r["count"]
        for r in await PayoutCarryOver.raw("SELECT reason, COUNT(*) AS count FROM payout_carry_over GROUP BY reason")
    }
    left = await LedgerAccount.select(LedgerAccount.id).where(
        LedgerAccount.kind == K.publisher_available.value, LedgerAccount.balance_minor != 0
    )
    in_transit = await ledger.balance(K.payouts_in_transit, CURRENCY)
    started = time.perf_counter()
    problems = await ledger.check()
    print(f"ledger check: {len(problems)} problems in {time.perf_counter() - started:.1f} s")
    failures = [
        f"{len(outcome.batches)} batches, expected 1" if len(outcome.batches) != 1 else "",
        f"{lines:,} lines for {publishers:,} publishers, expected {n:,} each" if (lines, publishers) != (n, n) else "",
        f"{outcome.carried:,} carried over, expected 0" if outcome.carried else "",
        f"{reserved:,} reservations for {reserved_lines:,} lines, expected {n:,} each"
        if (reserved, reserved_lines) != (n, n)
        else "",
        f"{len(left):,} publishers still have an available balance" if left else "",
        f"{in_transit} in transit, expected {total}" if in_transit != total else "",
        f"the batch says {batch and (batch['line_count'], batch['total_minor'])}, expected {(n, total)}"
        if not batch or (batch["line_count"], batch["total_minor"]) != (n, total)
        else "",
        f"a second run prepared {again.batches}" if again.batches or again.lines else "",
        f"carried over: {reasons}" if reasons else "",
        *problems,
    ]
    return elapsed, [f for f in failures if f]


async def execute_phase(
    stand_in: StandIn, pub_ids: list[int], stripe_accounts: list[str], finance: list[int], clock: datetime
) -> tuple[float, int, list[str]]:
    from server.accounts.identity import CurrentUser
    from server.accounts.tables import Role
    from server.billing import stripe_api
    from server.ledger import service as ledger
    from server.ledger.tables import AccountKind as K
    from server.ledger.tables import LedgerAccount, LedgerTxn
    from server.payouts import execute, keys, review
    from server.payouts import service as payouts
    from server.payouts.tables import PayoutBatch, PayoutLine

    m = len(stripe_accounts)
    paying = pub_ids[:m]
    await earn(paying, PAID_CURRENCY)
    failures = []
    prepared = await payouts.prepare_due(clock, actor_id=finance[0])  # as the finance page's Prepare button
    batch_id = (
        await PayoutBatch.select(PayoutBatch.id).where(PayoutBatch.currency == PAID_CURRENCY).output(as_list=True)
    )
    if len(batch_id) != 1:
        return 0.0, 0, [f"preparing {PAID_CURRENCY} gave {prepared}, expected one batch"]
    [batch_id] = batch_id
    lines = await PayoutLine.count().where(PayoutLine.batch == batch_id)
    if lines != m:  # pay what there is, to time it, but the bench fails
        failures.append(f"the {PAID_CURRENCY} batch has {lines:,} lines, expected {m:,}")
    await review.approve(CurrentUser(finance[1], "finance1@bench.example", Role.finance, "session"), batch_id)
    before = len(await transfer_posts(stand_in))

    # The client the worker's execute job builds (workers/jobs/payouts.py: stripe_api.client_for).
    settings = SimpleNamespace(stripe_secret_key=stand_in.secret_key, stripe_api_base=stand_in.base_url)
    http = stripe_api.HTTPXClient()
    try:
        client = stripe_api.client_for(settings, http)
        started = time.perf_counter()
        async with asyncio.timeout(EXECUTE_TIMEOUT):
            with profiled("execute"):
                status = await execute.execute(batch_id, client)
        elapsed = time.perf_counter() - started
        print(
            f"execute: {lines:,} lines in {elapsed:.2f} s = {lines / elapsed:,.0f} transfers/s "
            f"(concurrency {execute.CONCURRENCY}), batch {status}"
        )
        async with asyncio.timeout(EXECUTE_TIMEOUT):
            again = await execute.execute(batch_id, client)
    finally:
        await http.close_async()

    posts = (await transfer_posts(stand_in))[before:]
    made = [p for p in posts if p["status"] == 200 and not p.get("replayed")]
    rows = await PayoutLine.select().where(PayoutLine.batch == batch_id)
    expected_keys = sorted(keys.idempotency_key(line["id"], 1) for line in rows)
    by_account = dict(zip(paying, stripe_accounts, strict=True))
    settled = await LedgerTxn.count().where(LedgerTxn.kind == "payout.settled")
    in_transit = await ledger.balance(K.payouts_in_transit, PAID_CURRENCY)
    available = sum(
        r["balance_minor"]
        for r in await LedgerAccount.select(LedgerAccount.balance_minor).where(
            LedgerAccount.kind == K.publisher_available.value, LedgerAccount.currency == PAID_CURRENCY
        )
    )
    problems = await ledger.check()
    row = await PayoutBatch.select(PayoutBatch.status).where(PayoutBatch.id == batch_id).first()
    unpaid = [line["id"] for line in rows if line["status"] != "paid"]
    failures += [
        f"batch {status} then {again} ({row['status']} stored), expected done"
        if (status, again, row["status"]) != ("done", "done", "done")
        else "",
        f"{len(unpaid):,} lines not paid (first: {unpaid[:5]})" if unpaid else "",
        f"{len({line['stripe_transfer_id'] for line in rows}):,} distinct transfer ids for {lines:,} lines"
        if len({line["stripe_transfer_id"] for line in rows}) != lines
        else "",
        "a line points at another publisher's account"
        if any(line["stripe_account_id"] != by_account.get(line["publisher"]) for line in rows)
        else "",
        f"{len(made):,} transfers made at the stand-in ({len(posts):,} POSTs), expected {lines:,}"
        if (len(made), len(posts)) != (lines, lines)
        else "",
        "the stand-in's idempotency keys are not one per line"
        if sorted(p["idempotency_key"] for p in posts) != expected_keys
        else "",
        f"{settled:,} settlements, expected {lines:,}" if settled != lines else "",
        f"{in_transit} {PAID_CURRENCY} still in transit" if in_transit else "",
        f"{available} {PAID_CURRENCY} left available" if lines == m and available else "",
        *problems,
    ]
    return elapsed, len(made), [f for f in failures if f]


async def run(database_url: str, n: int, m: int, workdir: Path) -> None:
    from server import piccolo_app
    from server.core import db
    from server.core.settings import Settings
    from server.mail import outbox

    stand_in = StandIn(workdir)
    # Paying a line writes its publisher's mail in the same transaction (nothing delivers it here).
    outbox.configure(Settings(database_url=database_url, secret_key="bench-" + "x" * 40))
    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    failures = []
    try:
        started = time.perf_counter()
        stripe_accounts = await connected_accounts(stand_in, m)
        print(f"stand-in: {m:,} connected accounts made and onboarded in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        pub_ids, finance = await seed(n, stripe_accounts)
        print(f"seeded {n:,} ready publishers with {CURRENCY} available in {time.perf_counter() - started:.1f} s")

        # A clock past the next monthly cut-off (the default schedule): everything posted now is in the period.
        clock = datetime.now(UTC) + timedelta(days=32)
        try:
            prepare_seconds, prepare_failures = await prepare_phase(n, clock)
        except Exception as exc:  # the code under test broke: nothing after it means anything
            failures.append(f"prepare raised {type(exc).__name__}: {exc}")
            return
        failures += [f"prepare: {f}" for f in prepare_failures]
        if not prepare_failures:
            print("every publisher has one line, reserved once; ledger clean")
        print(f"prepare target ≤ 10 s for 100,000 publishers on PostgreSQL: {prepare_seconds:.2f} s for {n:,}")

        execute_seconds, made, execute_failures = await execute_phase(
            stand_in, pub_ids, stripe_accounts, finance, clock
        )
        failures += [f"execute: {f}" for f in execute_failures]
        if not execute_failures:
            print(f"every line paid and settled once, {made:,} transfers at the stand-in; ledger clean")
        if execute_seconds:
            print(f"execute target ≥ 200 transfers/s: {made / execute_seconds:,.0f} transfers/s for {made:,}")
    finally:
        await db.stop(engine)
        stand_in.stop()
        if failures:
            sys.exit("FAILED: " + "; ".join(failures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishers", type=int, default=100_000)
    parser.add_argument("--transfers", type=int, default=2_000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL on loopback")
    parser.add_argument("--profile", action="store_true", help="print where prepare and execute spend time")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    n = min(max(args.publishers, 1), 1_000_000)
    m = min(max(args.transfers, 1), 20_000, n)

    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp:
        workdir = Path(tmp)
        with bench_database(workdir, args) as database_url:
            database_url = database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
            env = {
                "DATABASE_URL": database_url,
                "SECRET_KEY": SECRET,
                "AFFNET_DATA_DIR": str(workdir / "data"),
                "PATH": "/usr/bin:/bin",
            }
            subprocess.run(
                [sys.executable, "-m", "server.cli", "migrate"],
                cwd=ROOT,
                env=env,
                check=True,  # noqa: S603
                capture_output=True,
            )
            engine = durability(database_url)  # as the database reports them
            print(f"machine:  {machine()}")
            print(f"load average: {load_average()} before")
            print(
                f"settings: {engine}, {n:,} publishers to prepare, {m:,} transfers to execute against the local "
                f"Stripe stand-in on loopback, in process (as the worker runs it)"
            )
            asyncio.run(run(database_url, n, m, workdir))


if __name__ == "__main__":
    main()
