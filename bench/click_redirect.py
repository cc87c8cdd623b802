"""Benchmark the click redirect against a bare Litestar 302 served with the same uvicorn options.

    .venv/bin/python bench/click_redirect.py [--seconds 10] [--connections 32] [--postgres | --database-url URL]

Starts affnet (one uvicorn worker) on 127.0.0.1 with a fresh database, then measures, in one run:
(r) a raw ASGI app answering 302 (bench/raw302.py) under the same uvicorn options, the true ceiling;
(a) GET /__bench/302 of a bare Litestar app answering 302 (bench/litestar302.py, same uvicorn
options), and (b) GET /c/{code} with click recording on: maximum requests per second with wrk,
then p50/p99 latency at half of that rate with hey. It shuts the server down gracefully and counts
the click rows stored: every /c/ request that got an answer must be there.
Needs wrk and hey (Debian packages; installed if root).

Besides req/s it prints the server's CPU time per request in each maximum-rate phase (from
/proc): on a shared, busy machine the rates swing with the neighbours' load, the CPU a request
costs much less, so the CPU ratio is the steadier estimate of the same thing. bench/click_crash.py
measures what a kill -9 under this load loses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    POSTGRES_DURABILITY,
    ROOT,
    Load,
    Server,
    asgi_302,
    bench_database,
    ensure_tools,
    hey,
    machine,
    phase_line,
    start_server,
    wrk,
)

sys.path.insert(0, str(ROOT))


async def seed(database_url: str) -> str:
    """An advertiser with a campaign and a publisher who joined it; returns the link code."""
    from server import piccolo_app
    from server.accounts import service as accounts
    from server.accounts.identity import CurrentUser
    from server.accounts.tables import Publisher, Role
    from server.campaigns import service as campaigns
    from server.campaigns.tables import Link
    from server.core import db
    from server.core.settings import Settings

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        settings = Settings(database_url=database_url, secret_key="x" * 40, publisher_auto_approve=True)
        adv_id = await accounts.create_user("adv@bench.example", "bench password 1", Role.advertiser)
        campaign = await campaigns.create_campaign(
            CurrentUser(adv_id, "adv@bench.example", Role.advertiser, "bench"),
            {
                "name": "Bench",
                "currency": "EUR",
                "landing_url": "https://shop.example.com/landing",
                "allowed_domains": "shop.example.com",
                "goal_0_name": "sale",
                "goal_0_model": "cpa",
                "goal_0_advertiser": "10.00",
            },
        )
        pub_id = await accounts.signup_publisher(
            {
                "email": "pub@bench.example",
                "password": "bench password 1",
                "display_name": "Bench",
                "blog_url": "https://blog.example.com",
                "audience": "bench",
            },
            settings,
        )
        assert (await Publisher.select(Publisher.status).where(Publisher.user == pub_id).first())[
            "status"
        ] == "approved"
        await campaigns.join(CurrentUser(pub_id, "pub@bench.example", Role.publisher, "bench"), campaign)
        return (await Link.select(Link.code).first())["code"]
    finally:
        await db.stop(engine)


async def count_clicks(database_url: str) -> int:
    from server import piccolo_app
    from server.core import db
    from server.tracking.tables import Click

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        return await Click.count()
    finally:
        await db.stop(engine)


def measured(server: Server, url: str, seconds: int, connections: int) -> tuple[Load, float]:
    """wrk at the maximum rate, and the server's CPU microseconds per request meanwhile."""
    before = server.cpu_seconds()
    load = wrk(url, seconds, connections)
    return load, (server.cpu_seconds() - before) / max(load.requests, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load phase (max 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2), 60)
    ensure_tools("wrk", "hey")

    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        server = start_server(workdir, url)
        database_url = server.env["DATABASE_URL"]
        code = asyncio.run(seed(database_url))
        click_url = f"{server.url}/c/{code}?sub1=bench"
        sent_clicks = 0
        try:
            sent_clicks += wrk(click_url, 2, args.connections).requests  # warm up
            load_before = os.getloadavg()
            with asgi_302(workdir) as raw:
                wrk(raw.url, 2, args.connections)  # warm up
                r_max, r_cpu = measured(raw, raw.url, seconds, args.connections)
            with asgi_302(workdir, "litestar302:app") as bare:
                baseline_url = f"{bare.url}/__bench/302"
                wrk(baseline_url, 2, args.connections)  # warm up
                a_max, a_cpu = measured(bare, baseline_url, seconds, args.connections)
                a_half = hey(baseline_url, seconds, a_max.rps / 2)
            b_max, b_cpu = measured(server, click_url, seconds, args.connections)
            sent_clicks += b_max.requests
            b_half = hey(click_url, seconds, b_max.rps / 2)
            sent_clicks += b_half.requests
        finally:
            exit_code = server.stop()
        stored = asyncio.run(count_clicks(database_url))

    line = phase_line

    engine = "PostgreSQL" if database_url.startswith("postgres") else "SQLite (WAL, synchronous=FULL: the default)"
    if args.postgres:
        engine += f" ({POSTGRES_DURABILITY})"
    print(f"machine:  {machine()}")
    print(
        f"settings: uvicorn, 1 worker, {engine}, wrk -t1 -c{args.connections}, {seconds}s per phase, "
        "hey 8 workers at half the max rate, loopback only"
    )
    print(
        f"(r) raw ASGI 302, same server   max {r_max.rps:>8.0f} req/s (p50 {r_max.p50_ms:.2f} ms, "
        f"p99 {r_max.p99_ms:.2f} ms)   the ceiling"
    )
    print(line("(a) bare Litestar 302", a_max, a_half))
    print(line("(b) /c/{code} + recording", b_max, b_half))
    print(
        f"ratio b/a (max req/s):      {b_max.rps / a_max.rps:.2f}   b/r (of the raw ASGI ceiling): "
        f"{b_max.rps / r_max.rps:.2f}"
    )
    print(
        f"server CPU per request:     (r) {r_cpu:.0f} µs, (a) {a_cpu:.0f} µs, (b) {b_cpu:.0f} µs; "
        f"ratio a/b {a_cpu / b_cpu:.2f}, r/b {r_cpu / b_cpu:.2f}"
    )
    print(f"load average:               {' '.join(f'{x:.2f}' for x in load_before)} before the max-rate phases")
    print(
        f"clicks answered: {sent_clicks}, stored after graceful shutdown: {stored}, "
        f"lost: {max(0, sent_clicks - stored)} (server exit code {exit_code})"
    )


if __name__ == "__main__":
    main()
