"""Benchmark the click redirect against a bare Litestar 302 and a raw ASGI 302, with 1 and N server processes.

    .venv/bin/python bench/click_redirect.py [--workers 2] [--runs 3] [--seconds 10] [--connections 32]
                                             [--postgres | --database-url URL] [--no-latency]
                                             [--distinct-visitors] [--server uvicorn|granian]

For each worker count (1, and --workers N if more) and each of --runs rounds, in one run and
with the same load generator, it measures the maximum rate (wrk, closed loop, one thread) of:
(n) nginx answering `return 302` with as many worker processes, when nginx is installed (the
machine's ceiling for any redirect); (r) a raw ASGI app answering 302 (bench/raw302.py) under the
same HTTP server as (b), with `affnet serve`'s options and the same number of workers: the true
ceiling; (a) GET /__bench/302 of a bare Litestar app answering 302 (bench/litestar302.py,
likewise); (b) GET /c/{code} of affnet started as production runs it, `affnet serve --workers N`
(the server's workers sharing one listening socket), with click recording on, on one database and
one Redis. The server is `affnet serve`'s default, or --server's (uvicorn or granian;
bench/servers.py compares them on the whole app). Rounds interleave (r), (a), (b) for every
worker count, so a neighbour's burst of load spreads over all of them; each server is started for
its phase and stopped after it. In the first round it also measures p50/p99 at half the maximum
rate (hey). After every affnet phase the server is stopped gracefully; at the end the click rows
stored are counted: every /c/ request that got an answer must be there.

By default every request is the same visitor from 127.0.0.1, as before issue 16: after the first,
every click is a duplicate and, past 120 a minute, rate-limited, the cheapest case for the flush's
Redis call. With --distinct-visitors every request names another client network through
X-Forwarded-For (a wrk Lua script; the servers trust loopback as behind a proxy, the bare apps
too, under granian through the same wrapper as affnet), so every click is a new visitor counted
in Redis: the flush's most expensive case. The half-rate phases (hey) send one visitor either way.

It prints the machine, the load average before and after, the database's durability settings as
the database reports them, every round's rate and the spread (min-max) of the rounds, the ratios
(b/a, b/r, N workers / 1 worker) computed within each round, and where the CPU went in each max-rate
phase (Linux /proc): the server's processes, its Redis, its PostgreSQL (SQLite's work is inside the
server process) and the load generator, which runs on the same cores: with 2 cores and 2 workers
wrk's share is CPU the servers do not get, so the "cores" columns say how much each one used. The
CPU per request moves less with the neighbours' load than the rate does. Loopback only, bounded in
time (phases of --seconds, at most 60). Needs wrk and hey (Debian packages; installed if root).
bench/click_crash.py measures what a kill -9 under this load loses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_SERVER,
    ROOT,
    SERVERS,
    Load,
    Server,
    approved_publisher,
    asgi_302,
    bench_database,
    database_cpu_seconds,
    durability,
    ensure_tools,
    hey,
    load_average,
    machine,
    nginx_302,
    start_server,
    wrk,
)

sys.path.insert(0, str(ROOT))


async def seed(database_url: str) -> str:
    """An advertiser with a campaign and a publisher who joined it; returns the link code."""
    from server import piccolo_app
    from server.accounts import service as accounts
    from server.accounts.identity import CurrentUser
    from server.accounts.tables import Role
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
        pub_id = await approved_publisher(settings, blog_url="https://blog.example.com")
        await campaigns.join(CurrentUser(pub_id, "pub@bench.example", Role.publisher, "bench"), campaign)
        return (await Link.select(Link.code).first())["code"]
    finally:
        await db.stop(engine)


async def count_clicks(database_url: str) -> dict[str, int]:
    """Stored clicks by reason ("valid" or why not)."""
    from piccolo.query.functions.aggregate import Count

    from server import piccolo_app
    from server.core import db
    from server.tracking.tables import Click

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        rows = await Click.select(Click.reason, Count(Click.id, alias="n")).group_by(Click.reason)
        return {r["reason"]: r["n"] for r in rows}
    finally:
        await db.stop(engine)


@dataclass
class Phase:
    """One maximum-rate phase: the load, and the CPU seconds each part used during it."""

    load: Load
    server_cpu: float
    redis_cpu: float | None = None
    database_cpu: float | None = None
    redis_calls: dict[str, tuple[int, int]] | None = None  # command -> (calls, µs) during the phase

    def per_request_us(self, cpu: float | None) -> float | None:
        return None if cpu is None else cpu / max(self.load.requests, 1) * 1e6

    def cores(self, cpu: float | None) -> float | None:
        return None if cpu is None else cpu / self.load.seconds


# Every request from another network (an IPv4 /24 of its own, a.b.c.1), so no visitor repeats within
# millions of requests and no network reaches its rate limit; IPv4, as most visitors are, and the
# redirect's fast path for them. The /16s a.b are those from 11.0 to 110.255 that hold no address of
# the data-centre list (server/tracking/datacenter.py): a click from a data centre is settled at the
# redirect as `datacenter` and skips the flush's Redis count, which would make this load cheaper
# than the new readers it stands for. The counter starts from the clock (2^16 addresses a second),
# so phases started seconds apart (the warm-up, then the measured phase, on the same Redis) do not
# repeat each other's visitors.
_DISTINCT_LUA = """
local prefixes = {%s}
local n = (os.time() %% 100) * 65536
local headers = {}
for k, v in pairs(wrk.headers) do headers[k] = v end
request = function()
  n = n + 1
  local prefix = prefixes[1 + math.floor(n / 256) %% #prefixes]
  headers["X-Forwarded-For"] = string.format("%%d.%%d.%%d.1", math.floor(prefix / 256), prefix %% 256, n %% 256)
  return wrk.format(nil, nil, headers)
end
"""


def residential_prefixes() -> list[int]:
    """The /16s (as a * 256 + b) from 11.0 to 110.255 with no data-centre range in them."""
    from bisect import bisect_right

    from server.tracking import datacenter

    starts, ends = datacenter.snapshot().v4
    free = []
    for prefix in range(11 * 256, 111 * 256):
        low, high = prefix << 16, (prefix << 16) | 0xFFFF
        at = bisect_right(starts, high) - 1
        if at < 0 or ends[at] < low:
            free.append(prefix)
    return free


def distinct_lua() -> str:
    """The wrk script of --distinct-visitors (see above)."""
    return _DISTINCT_LUA % ",".join(map(str, residential_prefixes()))


SCRIPT: list[Path | None] = [None]  # the wrk script of every max-rate phase (None: plain GETs)


def measured(server: Server, url: str, seconds: int, connections: int, database_url: str | None = None) -> Phase:
    """wrk at the maximum rate, and the CPU the server, its Redis and its database used meanwhile."""
    before = server.cpu_seconds(), server.redis_cpu_seconds(), database_cpu_seconds(database_url or "")
    calls_before = server.redis_commandstats()
    load = wrk(url, seconds, connections, SCRIPT[0])
    after = server.cpu_seconds(), server.redis_cpu_seconds(), database_cpu_seconds(database_url or "")
    calls_after = server.redis_commandstats()
    delta = [None if b is None or a is None else a - b for a, b in zip(after, before, strict=True)]
    calls = {
        name: (n - calls_before.get(name, (0, 0))[0], us - calls_before.get(name, (0, 0))[1])
        for name, (n, us) in calls_after.items()
        if n > calls_before.get(name, (0, 0))[0] and name != "info"
    }
    return Phase(load, delta[0], delta[1], delta[2], calls if server.redis is not None else None)


# nginx's `return 302` is the machine's ceiling for any redirect; measured when nginx is installed.
APPS = (("nginx",) if shutil.which("nginx") else ()) + ("raw", "litestar", "click")
LABELS = {
    "nginx": "(n) nginx return 302",
    "raw": "(r) raw ASGI 302",
    "litestar": "(a) bare Litestar 302",
    "click": "(b) /c/{code} + recording",
}


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return fmt.format(low) if len(values) == 1 else f"{fmt.format(low)}–{fmt.format(high)}"


def med(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def show(value: float | None, fmt: str = "{:.0f}") -> str:
    return "unmeasured" if value is None else fmt.format(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load phase (2 to 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="also measure with N server processes (1 always)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of every phase, for the spread (1 to 5)")
    parser.add_argument("--no-latency", action="store_true", help="skip the half-rate latency phases")
    parser.add_argument(
        "--distinct-visitors", action="store_true", help="every request another client network (X-Forwarded-For)"
    )
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=DEFAULT_SERVER,
        help=f"the HTTP server of every phase but nginx (default: affnet serve's, {DEFAULT_SERVER})",
    )
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2), 60)
    runs = min(max(args.runs, 1), 5)
    worker_counts = sorted({1, min(max(args.workers, 1), 8)})
    ensure_tools("wrk", "hey")

    phases: dict[tuple[int, str], list[Phase]] = {(n, app): [] for n in worker_counts for app in APPS}
    half: dict[tuple[int, str], Load] = {}
    if args.distinct_visitors:
        os.environ["TRUSTED_PROXIES"] = "127.0.0.1"  # affnet believes X-Forwarded-For from loopback only
    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        if args.distinct_visitors:
            SCRIPT[0] = workdir / "distinct.lua"
            SCRIPT[0].write_text(distinct_lua())
        server = start_server(workdir, url, server=args.server)
        database_url = server.env["DATABASE_URL"]
        try:
            code = asyncio.run(seed(database_url))
        finally:
            server.stop()  # a seeding failure leaves no server behind
        settings = durability(database_url)
        load_before = load_average()
        sent_clicks, exit_codes = 0, []
        for round_ in range(runs):
            for n in worker_counts:
                for app in APPS:
                    if app == "click":
                        server = start_server(workdir, database_url, workers=n, server=args.server)
                        target = f"{server.url}/c/{code}?sub1=bench"
                        try:
                            sent_clicks += wrk(target, 2, args.connections, SCRIPT[0]).requests  # warm up
                            phase = measured(server, target, seconds, args.connections, database_url)
                            sent_clicks += phase.load.requests
                            if round_ == 0 and not args.no_latency:
                                half[n, app] = hey(target, seconds, phase.load.rps / 2)
                                sent_clicks += half[n, app].requests
                        finally:
                            exit_codes.append(server.stop())
                    elif app == "nginx":
                        with nginx_302(workdir, n) as bare:
                            wrk(bare.url, 2, args.connections, SCRIPT[0])  # warm up
                            phase = measured(bare, bare.url, seconds, args.connections)
                    else:
                        name = "raw302:app" if app == "raw" else "litestar302:app"
                        with asgi_302(
                            workdir, name, n, proxy_headers=args.distinct_visitors, server=args.server
                        ) as bare:
                            target = bare.url if app == "raw" else f"{bare.url}/__bench/302"
                            wrk(target, 2, args.connections, SCRIPT[0])  # warm up
                            phase = measured(bare, target, seconds, args.connections)
                            if app == "litestar" and round_ == 0 and not args.no_latency:
                                half[n, app] = hey(target, seconds, phase.load.rps / 2)
                    phases[n, app].append(phase)
                    print(
                        f"round {round_ + 1}, {n} worker(s), {LABELS[app]}: {phase.load.rps:,.0f} req/s "
                        f"(load average {load_average()})",
                        file=sys.stderr,
                        flush=True,
                    )
        load_after = load_average()
        by_reason = asyncio.run(count_clicks(database_url))
        stored = sum(by_reason.values())

    report(args, seconds, runs, worker_counts, phases, half, settings, load_before, load_after)
    lost = max(0, sent_clicks - stored)
    print(
        f"clicks answered: {sent_clicks:,}, stored after graceful shutdowns: {stored:,}, lost: {lost} "
        f"(server exit codes {sorted(set(exit_codes))}); by reason: "
        + ", ".join(f"{reason} {n:,}" for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))
    )
    if lost or any(exit_codes):
        sys.exit("FAILED: clicks answered but not stored, or a server did not stop cleanly")


def report(args, seconds, runs, worker_counts, phases, half, settings, load_before, load_after) -> None:  # noqa: ANN001, PLR0913
    print(f"machine:      {machine()}")
    print(f"load average: {load_before} before, {load_after} after (1, 5, 15 min)")
    print(f"database:     {settings} (as the database reports them)")
    print(
        f"settings:     {args.server} as `affnet serve --server {args.server} --workers N` runs it (the bare "
        f"apps too), wrk -t1 -c{args.connections} on the same "
        f"cores, {seconds}s per phase, {runs} rounds, loopback only; Redis: a throwaway one per server start"
    )
    print(
        "visitors:     "
        + (
            "every request another network (X-Forwarded-For): every click a new visitor, counted in Redis"
            if args.distinct_visitors
            else "one (127.0.0.1, one browser): after the first click, duplicates and rate-limited"
        )
    )
    print()
    print(f"{'workers':<8} {'app':<27} {'max req/s, every round':<32} {'spread':<17} server µs/req  cores: server  wrk")
    for n in worker_counts:
        for app in APPS:
            ps = phases[n, app]
            rates = ", ".join(f"{p.load.rps:,.0f}" for p in ps)
            server_us = med([p.per_request_us(p.server_cpu) for p in ps])
            print(
                f"{n:<8} {LABELS[app]:<27} {rates:<32} {spread([p.load.rps for p in ps]):<17} "
                f"{show(server_us):>13}  {show(med([p.cores(p.server_cpu) for p in ps]), '{:.2f}'):>13}  "
                f"{show(med([p.cores(p.load.client_cpu) for p in ps]), '{:.2f}'):>4}"
            )
    print()

    def ratio(num: list[Phase], den: list[Phase]) -> str:
        values = [a.load.rps / b.load.rps for a, b in zip(num, den, strict=True)]
        return f"{', '.join(f'{v:.2f}' for v in values)} (spread {spread(values, '{:.2f}')})"

    def cpu_ratio(num: list[Phase], den: list[Phase]) -> str:
        # requests per server CPU-second, num ÷ den: the same ratio, steadier on a busy machine
        values = [
            b.per_request_us(b.server_cpu) / a.per_request_us(a.server_cpu) for a, b in zip(num, den, strict=True)
        ]
        return f"{', '.join(f'{v:.2f}' for v in values)} (spread {spread(values, '{:.2f}')})"

    for n in worker_counts:
        click = phases[n, "click"]
        print(f"{n} worker(s): b/a (/c/ ÷ Litestar, same round) {ratio(click, phases[n, 'litestar'])}")
        print(f"{n} worker(s): b/r (/c/ ÷ raw ASGI, same round)  {ratio(click, phases[n, 'raw'])}")
        print(f"{n} worker(s): b/a by server CPU per request   {cpu_ratio(click, phases[n, 'litestar'])}")
        print(f"{n} worker(s): b/r by server CPU per request   {cpu_ratio(click, phases[n, 'raw'])}")
        if "nginx" in APPS:
            print(f"{n} worker(s): b/n (/c/ ÷ nginx, same round)     {ratio(click, phases[n, 'nginx'])}")
            print(f"{n} worker(s): r/n (raw ASGI ÷ nginx)           {ratio(phases[n, 'raw'], phases[n, 'nginx'])}")
    top = worker_counts[-1]
    if top > 1:
        for app in APPS:
            print(f"{top} workers ÷ 1 worker, {LABELS[app]:<27} {ratio(phases[top, app], phases[1, app])}")
    print()
    print("where the CPU went per /c/ request in the max-rate phases (median of the rounds):")
    for n in worker_counts:
        ps = phases[n, "click"]
        server_us = med([p.per_request_us(p.server_cpu) for p in ps])
        redis_us = med([p.per_request_us(p.redis_cpu) for p in ps])
        db_us = med([p.per_request_us(p.database_cpu) for p in ps])
        wrk_us = med([p.per_request_us(p.load.client_cpu) for p in ps])
        print(
            f"  {n} worker(s): server {show(server_us)} µs, Redis {show(redis_us, '{:.1f}')} µs, "
            f"PostgreSQL {show(db_us, '{:.1f}') if db_us is not None else 'in the server (SQLite) or unmeasured'} µs, "
            f"wrk {show(wrk_us, '{:.1f}')} µs; clicks per server CPU-second "
            f"{show(1e6 / server_us if server_us else None, '{:,.0f}')}"
        )
        calls: dict[str, list[tuple[int, int]]] = {}
        for p in ps:
            for name, value in (p.redis_calls or {}).items():
                calls.setdefault(name, []).append(value)
        # Only the scripts: the commands a script runs are listed by Redis too, and counted in its time.
        for name, values in sorted((k, v) for k, v in calls.items() if k.startswith("eval")):
            n_calls = sum(c for c, _ in values)
            usec = sum(u for _, u in values)
            requests = sum(p.load.requests for p in ps)
            print(
                f"    Redis {name}: {n_calls / len(ps):,.0f} calls per phase, "
                f"{usec / max(n_calls, 1):,.1f} µs per call (INFO commandstats), "
                f"{requests / max(n_calls, 1):,.0f} requests per call"
            )
    if half:
        print()
        print("at half the maximum rate (hey, first round):")
        for (n, app), load in sorted(half.items()):
            print(
                f"  {n} worker(s), {LABELS[app]:<27} {load.rps:,.0f} req/s: p50 {load.p50_ms:.2f} ms, "
                f"p99 {load.p99_ms:.2f} ms"
            )


if __name__ == "__main__":
    main()
