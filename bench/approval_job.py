"""Benchmark the approval job: how long reconciliation takes over N pending conversions past their hold.

    .venv/bin/python bench/approval_job.py [--conversions 1000000] [--publishers 1000] [--advertisers 20]
                                           [--postgres | --database-url URL] [--profile FILE]

Makes a fresh database (SQLite, or a throwaway PostgreSQL on loopback with --postgres: production's
durability, fsync and synchronous_commit on), funds the advertisers, bulk-loads N pending CPA
conversions spread over their campaigns and the publishers, then times `approval.run()` exactly as
the worker calls it. It prints the durability settings as the database reports them, the load
average before and after, and the CPU the job cost this process and (on its own PostgreSQL) the
database. Afterwards it checks the outcome: every conversion approved once, money conserved to the
cent, `ledger.check()` clean, and a second run changes nothing. `--profile FILE` writes the job's
cProfile, sorted by cumulative time (it slows the Python side). No network traffic at all; a
failure at any step (or SIGTERM) stops the throwaway cluster before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    SECRET,
    bench_database,
    database_cpu_seconds,
    durability,
    load_average,
    machine,
)

sys.path.insert(0, str(ROOT))

PRICE, PAYOUT = 1_000, 800  # 10.00 EUR charged, 8.00 earned: the demo's CPA terms
CONVERSION_COLUMNS = [
    "campaign",
    "goal",
    "publisher",
    "link",
    "click_id",
    "txn_id",
    "sale_amount_minor",
    "currency",
    "advertiser_amount_minor",
    "publisher_amount_minor",
    "network_amount_minor",
    "status",
    "status_reason",
    "source",
    "clicked_at",
    "converted_at",
    "hold_until",
    "created_at",
]


async def seed(n: int, publishers: int, advertisers: int) -> None:
    from server.accounts.tables import Role, User
    from server.campaigns.tables import Campaign, Goal, Link, Membership
    from server.core import db
    from server.ledger import postings

    now = datetime.now(UTC)
    # Users are bulk-inserted with an unusable hash: nobody logs in, and argon2 would take minutes.
    unusable = "!"
    users = [
        User(
            email=f"adv{i}@bench.example",
            password_hash=unusable,
            role=Role.advertiser.value,
            created_at=now,
            password_changed_at=now,
        )
        for i in range(advertisers)
    ]
    users += [
        User(
            email=f"pub{i}@bench.example",
            password_hash=unusable,
            role=Role.publisher.value,
            created_at=now,
            password_changed_at=now,
        )
        for i in range(publishers)
    ]
    await User.insert(*users)
    ids = {r["email"]: r["id"] for r in await User.select(User.id, User.email)}
    adv_ids = [ids[f"adv{i}@bench.example"] for i in range(advertisers)]
    pub_ids = [ids[f"pub{i}@bench.example"] for i in range(publishers)]
    campaigns, goals = [], []
    for i, adv in enumerate(adv_ids):
        row = (
            await Campaign.insert(
                Campaign(
                    advertiser=adv,
                    name=f"Bench {i}",
                    landing_url="https://shop.example.com/",
                    allowed_domains="shop.example.com",
                    currency="EUR",
                    public_key=f"bench{i}",
                    postback_secret=f"secret{i}",
                    created_at=now,
                    updated_at=now,
                )
            ).returning(Campaign.id)
        )[0]
        campaigns.append(row["id"])
        goals.append(
            (
                await Goal.insert(
                    Goal(
                        campaign=row["id"],
                        name="sale",
                        payout_model="cpa",
                        advertiser_amount=PRICE,
                        publisher_amount=PAYOUT,
                    )
                ).returning(Goal.id)
            )[0]["id"]
        )
    links: dict[tuple[int, int], int] = {}
    for c, campaign in enumerate(campaigns):
        await Membership.insert(
            *[Membership(campaign=campaign, publisher=p, status="approved", created_at=now) for p in pub_ids]
        )
        members = await Membership.select(Membership.id, Membership.publisher).where(Membership.campaign == campaign)
        await Link.insert(
            *[
                Link(
                    code=f"b{c}x{m['publisher']}",
                    campaign=campaign,
                    publisher=m["publisher"],
                    membership=m["id"],
                    created_at=now,
                )
                for m in members
            ]
        )
        for link in await Link.select(Link.id, Link.publisher).where(Link.campaign == campaign):
            links[(campaign, link["publisher"])] = link["id"]
    per_advertiser = -(-n // advertisers) * PRICE  # exactly enough for their share
    for adv in adv_ids:
        await postings.fund_advertiser(adv, per_advertiser, "EUR", reference_id=adv, key=f"bench-fund-{adv}")

    past = now - timedelta(days=31)
    chunk: list[tuple] = []
    for i in range(n):
        c = i % advertisers
        pub = pub_ids[(i // advertisers) % publishers]
        chunk.append(
            (
                campaigns[c],
                goals[c],
                pub,
                links[(campaigns[c], pub)],
                f"bench-click-{i}",
                f"order-{i}",
                None,
                "EUR",
                PRICE,
                PAYOUT,
                PRICE - PAYOUT,
                "pending",
                "",
                "postback",
                past,
                past,
                now - timedelta(days=1),
                past,
            )
        )
        if len(chunk) == 50_000 or i == n - 1:
            await _copy(db, chunk)
            chunk = []


async def _copy(db, rows: list[tuple]) -> None:
    eng = db.engine()
    if db.is_sqlite(eng):
        conn = await eng.get_connection()
        try:
            placeholders = ", ".join("?" * len(CONVERSION_COLUMNS))
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany(
                f"INSERT INTO conversion ({', '.join(CONVERSION_COLUMNS)}) "  # noqa: S608
                f"VALUES ({placeholders})",
                rows,
            )
            await conn.execute("COMMIT")
        finally:
            await conn.close()
        return
    async with eng.pool.acquire() as conn:
        await conn.copy_records_to_table("conversion", records=rows, columns=CONVERSION_COLUMNS)
        await conn.execute("ANALYZE conversion")


def _own_cpu() -> float:
    usage = os.times()
    return usage.user + usage.system


async def run(database_url: str, n: int, publishers: int, advertisers: int, profile: Path | None) -> None:
    from server import piccolo_app
    from server.conversions import approval
    from server.conversions.tables import Conversion
    from server.core import db
    from server.ledger import service as ledger
    from server.ledger.tables import AccountKind as K
    from server.ledger.tables import LedgerTxn

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        started = time.perf_counter()
        await seed(n, publishers, advertisers)
        print(f"seeded {n:,} pending conversions in {time.perf_counter() - started:.1f} s")

        load_before = load_average()
        cpu_before, db_before = _own_cpu(), database_cpu_seconds(database_url)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        outcome = await approval.run()
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu, db_after = _own_cpu() - cpu_before, database_cpu_seconds(database_url)
        print(
            f"approval job: {outcome.approved:,} approved and {outcome.released:,} available in {elapsed:.1f} s "
            f"= {outcome.approved / elapsed:,.0f} conversions/s (batches of {approval.batch_size():,})"
        )
        database = "inside this process (SQLite)"
        if db_before is not None and db_after is not None:
            database = (
                f"{db_after - db_before:.1f} s ({(db_after - db_before) * 1e6 / max(n, 1):.0f} µs per conversion)"
            )
        print(
            f"CPU during the job: this process {cpu:.1f} s ({cpu * 1e6 / max(n, 1):.0f} µs per conversion), "
            f"database {database}; load average {load_before} before, {load_average()} after (1, 5, 15 min)"
        )
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
            profile.write_text(out.getvalue())  # noqa: ASYNC240 - after the timed part
            print(f"profile (cProfile, cumulative): {profile}")

        started = time.perf_counter()
        again = await approval.run()
        print(
            f"second run: {again.approved} approved, {again.released} released in {time.perf_counter() - started:.2f} s"
        )
        started = time.perf_counter()
        problems = await ledger.check()
        print(f"ledger check: {len(problems)} problems in {time.perf_counter() - started:.1f} s")

        approved = await Conversion.count().where(Conversion.status == "approved", Conversion.released_at.is_not_null())
        postings = await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion")
        revenue = await ledger.balance(K.network_revenue, "EUR")
        available = sum(
            r["balance_minor"]
            for r in await ledger.LedgerAccount.select(ledger.LedgerAccount.balance_minor).where(
                ledger.LedgerAccount.kind == K.publisher_available.value
            )
        )
        failures = [
            f"{approved:,} conversions approved and available, expected {n:,}" if approved != n else "",
            f"{postings:,} approval postings, expected {n:,}" if postings != n else "",
            f"network revenue {revenue}, expected {n * (PRICE - PAYOUT)}" if revenue != n * (PRICE - PAYOUT) else "",
            f"publishers' available {available}, expected {n * PAYOUT}" if available != n * PAYOUT else "",
            "a second run changed something" if again.approved or again.released else "",
            *problems,
        ]
        failures = [f for f in failures if f]
        if failures:
            sys.exit("FAILED: " + "; ".join(failures))
        print("every conversion approved once; cents conserved; ledger clean")
    finally:
        await db.stop(engine)


def _exit_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM or SIGHUP (a timeout, a closed terminal) unwinds like Ctrl-C: every `finally` runs, so
    the throwaway cluster is stopped rather than left running."""
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversions", type=int, default=1_000_000)
    parser.add_argument("--publishers", type=int, default=1_000)
    parser.add_argument("--advertisers", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL on loopback")
    parser.add_argument("--profile", type=Path, default=None, help="write the job's cProfile to this file")
    args = parser.parse_args()
    n = min(max(args.conversions, 1), 5_000_000)
    if args.publishers < 1 or args.advertisers < 1:
        sys.exit("--publishers and --advertisers must be at least 1")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)

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
            print(f"machine:  {machine()}")
            print(f"database: {durability(database_url)} (as the database reports them)")
            print(
                f"settings: {n:,} conversions, {args.publishers:,} publishers, {args.advertisers} advertisers, "
                "in process (as the worker runs it)"
            )
            asyncio.run(run(database_url, n, args.publishers, args.advertisers, args.profile))


if __name__ == "__main__":
    main()
