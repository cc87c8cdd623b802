"""What one flush batch of clicks costs each shared component: the Redis classification and the
PostgreSQL insert, measured apart from HTTP, per batch size, for the capacity model (docs/scaling.md).

    .venv/bin/python bench/component_costs.py [--postgres | --database-url URL] [--batches 100,1000,5000]
                                              [--seconds 15] [--networks 20000] [--repeat 0.1]

Redis (a throwaway redis-server on loopback, as `affnet serve` would use one): batches of synthetic
clicks (every click a visitor of its own, except a --repeat share that repeats an earlier visitor
on the same link: duplicates; --networks /24s; 50 campaigns with caps and CPC budgets that are never
reached, 500 publishers) go through the click flush's classification, the one Lua call per batch:
`server.tracking.counting.ClickCounter.classify`. Per batch size, for --seconds each: Redis's own
time per call (INFO commandstats usec_per_call), the redis-server process's CPU per click (which
includes reading the request), the caller's CPU per click (building the batch's payload: spent in
the web process at each flush), and Redis's memory per click kept (dedup keys live an hour).

PostgreSQL (with --postgres a throwaway cluster with production's durability; fsync,
synchronous_commit and full_page_writes as the database reports them are printed): the same rows
stored by the click writer itself (`server.tracking.service.write_clicks`: one COPY per batch, one
commit), one batch after another from one connection, for --seconds per batch size: wall time per
batch (commit and its fsync included), the cluster's CPU per row (every postgres process, /proc),
the caller's CPU per row, WAL bytes and WAL syncs per batch (pg_stat_wal), and the table's bytes per
row on disk. A least-squares line (cost = per batch + per row x rows) is fitted to each measure
over the batch sizes: what a flush costs at any rate.

Rollup: then the reports' rollup of the hours holding those clicks (`rebuild_traffic`, what every
incremental run does for the current hour): clicks per second and database CPU per click.

Loopback only, bounded: --seconds per batch size and component (at most 60), at most 2,000 batches each.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    bench_database,
    database_cpu_seconds,
    durability,
    load_average,
    machine,
    tree_cpu_seconds,
)

sys.path.insert(0, str(ROOT))

from dev.services import start_redis  # noqa: E402

CAMPAIGNS, PUBLISHERS = 50, 500
MAX_BATCHES = 2000


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares: value = a + b x size; returns (a, b)."""
    n = len(points)
    if n < 2:
        size, value = points[0]
        return 0.0, value / size
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - b * mx, b


class Traffic:
    """Synthetic clicks: rows of the click table's columns, plus (network, what is left to decide)."""

    def __init__(self, seed: int, networks: int, repeat: float, links: dict[int, tuple[int, int]]) -> None:
        self.rng = random.Random(seed)
        self.networks = networks
        self.repeat = repeat
        self.links = links  # link id -> (campaign id, publisher id)
        self.link_ids = list(links)
        self.n = 0
        self.recent: list[tuple[str, int]] = []

    def rows(self, count: int, columns: tuple[str, ...], *, queued: bool = True) -> list[tuple]:
        """`queued`: as the buffer holds them (the network and what the flush decides follow the columns)."""
        rng, out = self.rng, []
        now = datetime.now(UTC)
        for _ in range(count):
            self.n += 1
            if self.recent and rng.random() < self.repeat:
                visitor, link = rng.choice(self.recent)
            else:
                visitor = hashlib.md5(f"v{self.n}".encode()).hexdigest()  # noqa: S324 - a name, not security
                link = rng.choice(self.link_ids)
                if len(self.recent) < 10_000:
                    self.recent.append((visitor, link))
                else:
                    self.recent[rng.randrange(10_000)] = (visitor, link)
            campaign, publisher = self.links[link]
            values = {
                "click_id": f"bench{self.n:012d}{rng.getrandbits(40):010x}",
                "clicked_at": now,
                "link": link,
                "campaign": campaign,
                "publisher": publisher,
                "sub1": f"s{rng.randrange(10)}",
                "referrer_host": "blog.example.com",
                "ua_family": "Chrome",
                "visitor_hash": visitor,
                "reason": "valid",
                "slot": None,
                "country": "DE",
            }
            unknown = [c for c in columns if c not in values and not c.startswith("sub")]
            if unknown:
                raise SystemExit(f"the click table has columns this bench does not fill: {unknown}")
            row = tuple(values.get(c, "") for c in columns)
            if queued:
                row += (f"10.{rng.randrange(self.networks) // 256 % 256}.{rng.randrange(256)}", 2)
            out.append(row)
        return out


async def redis_part(args: argparse.Namespace, workdir: Path, sizes: list[int], seconds: float) -> list[str]:
    import redis as redis_sync
    from redis.asyncio import Redis

    from server.tracking import counting
    from server.tracking.service import CLICK_COLUMNS

    service = start_redis(workdir / "redis")
    sync = redis_sync.Redis.from_url(service.url)
    client = Redis.from_url(service.url)
    links = {i: (1 + i % CAMPAIGNS, 1000 + i % PUBLISHERS) for i in range(1, 2001)}
    traffic = Traffic(args.seed, args.networks, args.repeat, links)
    try:
        limits = counting.Limits(
            cap_clicks_daily=10**9,
            cap_publisher_clicks_daily=10**8,
            cpc_price_minor=25,
            daily_budget_minor=10**13,
            total_budget_minor=10**14,
        )

        async def seed(key) -> int:  # noqa: ANN001 - every counter starts at 0, as on a fresh day
            return 0

        async def limits_of(ids) -> dict:  # noqa: ANN001
            return dict.fromkeys(ids, limits)

        counter = counting.ClickCounter(client, columns=CLICK_COLUMNS, seed=seed, seed_total=seed, limits_of=limits_of)
        counter.limits.update(dict.fromkeys(range(1, CAMPAIGNS + 1), limits))
        what = "server.tracking.counting.ClickCounter.classify (the click flush's own Lua call)"
        classify = counter.classify
        # Warm up: the script loaded, the counters seeded.
        await classify(traffic.rows(100, CLICK_COLUMNS))
        lines = [f"Redis {sync.info('server')['redis_version']}, one instance on loopback; classification: {what}"]
        lines.append(
            f"{'batch':>6} {'batches':>8} {'wall ms/batch':>14} {'Redis µs/call':>14} {'Redis µs/click':>15} "
            f"{'redis-server CPU µs/click':>26} {'caller CPU µs/click':>20} {'memory B/click':>15}"
        )
        points: dict[str, list[tuple[int, float]]] = {"usec": [], "cpu": [], "caller": []}
        for size in sizes:
            stats0 = {k: (v["calls"], v["usec"]) for k, v in sync.info("commandstats").items()}
            memory0 = sync.info("memory")["used_memory"]
            cpu0, caller0 = tree_cpu_seconds(service.proc.pid), time.process_time()
            wall = making = 0.0
            done = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and done < MAX_BATCHES:
                made = time.process_time()
                rows = traffic.rows(size, CLICK_COLUMNS)  # new visitors every batch
                making += time.process_time() - made  # the bench's work, not the flush's
                started = time.perf_counter()
                await classify(rows)
                wall += time.perf_counter() - started
                done += 1
            cpu = tree_cpu_seconds(service.proc.pid) - cpu0
            caller = time.process_time() - caller0 - making
            stats1 = {k: (v["calls"], v["usec"]) for k, v in sync.info("commandstats").items()}
            memory = sync.info("memory")["used_memory"] - memory0
            calls = usec = 0
            for name, (n, us) in stats1.items():
                if name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro"):
                    calls += n - stats0.get(name, (0, 0))[0]
                    usec += us - stats0.get(name, (0, 0))[1]
            clicks = done * size
            per_call = usec / max(calls, 1)
            points["usec"].append((size, per_call))
            points["cpu"].append((size, cpu * 1e6 / done))
            points["caller"].append((size, caller * 1e6 / done))
            lines.append(
                f"{size:>6} {done:>8} {wall * 1e3 / done:>14.2f} {per_call:>14.0f} {usec / max(clicks, 1):>15.2f} "
                f"{cpu * 1e6 / clicks:>26.2f} {caller * 1e6 / clicks:>20.2f} {memory / clicks:>15.0f}"
            )
        for name, label in (
            ("usec", "Redis time per EVALSHA (commandstats)"),
            ("cpu", "redis-server CPU per batch"),
            ("caller", "caller CPU per batch (web process, at the flush)"),
        ):
            a, b = fit(points[name])
            lines.append(f"fit, {label}: {a:,.0f} µs per batch + {b:.2f} µs per click")
        lines.append(
            f"keys in Redis at the end: {sync.dbsize():,}; used_memory {sync.info('memory')['used_memory_human']}"
        )
        return lines
    finally:
        await client.aclose()
        sync.close()
        service.stop()


async def postgres_part(
    args: argparse.Namespace, database_url: str, sizes: list[int], seconds: float, settings: str
) -> list[str]:
    from click_redirect import seed

    from server import piccolo_app
    from server.campaigns.tables import Link
    from server.core import db
    from server.tracking import service as tracking

    await seed(database_url)
    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        row = await Link.select(Link.id, Link.campaign.id.as_alias("c"), Link.publisher.id.as_alias("p")).first()
        traffic = Traffic(args.seed, args.networks, args.repeat, {row["id"]: (row["c"], row["p"])})
        postgres = not db.is_sqlite(engine)

        async def wal() -> tuple[int, int]:
            if not postgres:
                return 0, 0
            async with engine.pool.acquire() as conn:
                r = await conn.fetchrow("SELECT wal_bytes::bigint AS b, wal_sync AS s FROM pg_stat_wal")
                return int(r["b"]), int(r["s"])

        lines = [f"database: {settings}; writer: server.tracking.service.write_clicks"]
        lines.append(
            f"{'batch':>6} {'batches':>8} {'wall ms/batch':>14} {'rows/s, one writer':>19} "
            f"{'database CPU µs/row':>20} {'caller CPU µs/row':>18} {'WAL B/row':>10} {'WAL syncs/batch':>16}"
        )
        points: dict[str, list[tuple[int, float]]] = {"wall": [], "db": [], "caller": []}
        first_click = datetime.now(UTC)
        await tracking.write_clicks(traffic.rows(100, tracking.CLICK_COLUMNS, queued=False))  # warm up
        for size in sizes:
            wal0, db0, caller0 = await wal(), database_cpu_seconds(database_url), time.process_time()
            wall = making = 0.0
            done = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and done < MAX_BATCHES:
                made = time.process_time()
                rows = traffic.rows(size, tracking.CLICK_COLUMNS, queued=False)
                making += time.process_time() - made  # the bench's work, not the flush's
                started = time.perf_counter()
                await tracking.write_clicks(rows)
                wall += time.perf_counter() - started
                done += 1
            caller = time.process_time() - caller0 - making
            db1, wal1 = database_cpu_seconds(database_url), await wal()
            rows = done * size
            db_us = None if db0 is None or db1 is None else (db1 - db0) * 1e6 / rows
            points["wall"].append((size, wall * 1e6 / done))
            points["caller"].append((size, caller * 1e6 / done))
            if db_us is not None:
                points["db"].append((size, db_us * size))
            # SQLite works inside this process (its CPU is the caller's) and has no pg_stat_wal.
            wal_bytes = f"{(wal1[0] - wal0[0]) / rows:.0f}" if postgres else "-"
            wal_syncs = f"{(wal1[1] - wal0[1]) / done:.2f}" if postgres else "-"
            database = "in caller" if not postgres else "unmeasured" if db_us is None else f"{db_us:.2f}"
            lines.append(
                f"{size:>6} {done:>8} {wall * 1e3 / done:>14.2f} {rows / wall:>19,.0f} "
                f"{database:>20} {caller * 1e6 / rows:>18.2f} {wal_bytes:>10} {wal_syncs:>16}"
            )
        for name, label in (
            ("wall", "wall time per batch (one writer, commit included)"),
            ("db", "database CPU per batch"),
            ("caller", "caller CPU per batch (web process, at the flush)"),
        ):
            if points[name]:
                a, b = fit(points[name])
                lines.append(f"fit, {label}: {a:,.0f} µs per batch + {b:.2f} µs per row")
        lines.append(await rollup_cost(database_url, first_click))
        if postgres:
            async with engine.pool.acquire() as conn:
                # A partitioned table has no storage of its own: its partitions' sizes, summed.
                size_bytes = await conn.fetchval(
                    "SELECT pg_total_relation_size('click') + COALESCE((SELECT sum(pg_total_relation_size(inhrelid)) "
                    "FROM pg_inherits WHERE inhparent = 'click'::regclass), 0)"
                )
                count = await conn.fetchval("SELECT count(*) FROM click")
            lines.append(
                f"click table with its indexes: {size_bytes / max(count, 1):,.0f} bytes per row ({count:,} rows)"
            )
        return lines
    finally:
        await db.stop(engine)


async def rollup_cost(database_url: str, since: datetime) -> str:
    """The reports' rollup of the hours those clicks are in, as every incremental run (every five
    minutes) rebuilds the hour events are arriving in: raw clicks per second and database CPU per
    click. One link and ten sub-IDs make few groups: real traffic makes more, and costs more."""
    from server.core import db
    from server.core.hours import HOUR, hour_of
    from server.reports import rollup
    from server.tracking.tables import Click

    start, end = hour_of(since), hour_of(datetime.now(UTC)) + HOUR
    clicks = await Click.count().where(Click.clicked_at >= start, Click.clicked_at < end)
    db_before, wall = database_cpu_seconds(database_url), time.perf_counter()
    await rollup.rebuild_traffic(start, end)
    wall, db_after = time.perf_counter() - wall, database_cpu_seconds(database_url)
    cpu = "unmeasured" if db_before is None or db_after is None else f"{(db_after - db_before) * 1e6 / clicks:.1f} µs"
    kind = "SQLite" if db.is_sqlite() else "PostgreSQL"
    return (
        f"rollup (server.reports.rollup.rebuild_traffic of their {int((end - start) / HOUR)} hour(s), {kind}): "
        f"{clicks:,} clicks in {wall:.2f} s = {clicks / wall:,.0f} clicks/s; database CPU {cpu} per click "
        "(one link, ten sub-IDs: fewer groups than real traffic)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="100,1000,5000", help="batch sizes (the click buffer's max is 5000)")
    parser.add_argument("--seconds", type=float, default=15, help="per batch size and component (at most 60)")
    parser.add_argument("--networks", type=int, default=20_000, help="distinct /24 networks of the clicks")
    parser.add_argument("--repeat", type=float, default=0.1, help="share of clicks repeating an earlier visitor")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--skip-database", action="store_true")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    sizes = sorted({min(max(int(s), 1), 5000) for s in args.batches.split(",")})
    seconds = min(max(args.seconds, 1), 60)
    print(f"machine:      {machine()}")
    print(f"load average: {load_average()} before")
    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp:
        workdir = Path(tmp)
        if not args.skip_redis:
            print()
            print("\n".join(asyncio.run(redis_part(args, workdir, sizes, seconds))))
        if not args.skip_database:
            with bench_database(workdir, args) as url:
                url = url or f"sqlite:///{workdir / 'bench.sqlite3'}"
                env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "x" * 40}
                migrate = [sys.executable, "-m", "server.cli", "migrate"]
                subprocess.run(migrate, cwd=ROOT, env=env, check=True, capture_output=True)  # noqa: S603
                print()
                print("\n".join(asyncio.run(postgres_part(args, url, sizes, seconds, durability(url)))))
    print()
    print(f"load average: {load_average()} after")


if __name__ == "__main__":
    main()
