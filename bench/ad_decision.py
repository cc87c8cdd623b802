"""Benchmark ad decisions and view beacons against a bare Litestar 302 served alike.

    .venv/bin/python bench/ad_decision.py [--seconds 10] [--connections 32] [--workers 1]
                                          [--postgres | --database-url URL]

Starts affnet (`affnet serve --workers N`, one worker by default; the bare 302 with as many) on
127.0.0.1 with a fresh database (a throwaway PostgreSQL on loopback with --postgres), seeds a CPM
campaign with a 300x250 banner, a publisher in it and their slot, then measures in one run: (a)
GET /__bench/302 of a bare Litestar app answering 302 (bench/litestar302.py, under the same uvicorn
options), and
(b) the embed script's traffic: GET /ads/decide for the slot, and POST of each answer's view URL
(a wrk Lua script alternates them, every request from another client address through
X-Forwarded-For, as behind a proxy, so no per-network limit or frequency cap applies). For each:
the maximum rate (wrk, closed loop), then p50/p99 at half that rate (wrk with a per-connection
delay, the rate it reached printed), the decisions and views per second within the maximum, and
the CPU time the server process and its Redis spent per request at the maximum (steadier than
rates on a shared machine: classifying views at the flush moves work from the request to the
flush, and from the server to Redis). It then stops the server gracefully and checks that every
view answered 202 is stored once. Needs wrk (a Debian package; installed if root).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BROWSER_UA,
    ROOT,
    Load,
    approved_publisher,
    asgi_302,
    bench_database,
    durability,
    ensure_tools,
    load_average,
    machine,
    phase_line,
    start_server,
    wrk,
)

sys.path.insert(0, str(ROOT))

SITE = "https://blog.example.org"
TARGET_P99_MS = 10.0

LUA = r"""
local slot = "%(slot)s"
local ua = "%(ua)s"
local think = %(delay).3f
local queue = {}
local n = 0
counts = {ads = 0, fallbacks = 0, views = 0, replays = 0, other = 0}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function delay()
  -- wrk waits whole milliseconds: a fractional wait is dithered, so the mean is `think`
  return math.floor(think + math.random())
end

function request()
  n = n + 1
  -- A network (/24) of its own for every request of the phase: affnet knows a visitor by network and
  -- browser, and caps each visitor's views of a campaign at ten a day.
  local ip = string.format("10.%%d.%%d.%%d", math.floor(n / 256) %% 256, n %% 256, 1 + math.floor(n / 65536) %% 250)
  local headers = {["Origin"] = "%(site)s", ["User-Agent"] = ua, ["X-Forwarded-For"] = ip}
  if #queue > 0 then
    return wrk.format("POST", table.remove(queue, 1), headers, "")
  end
  return wrk.format("GET", "/ads/decide?slot=" .. slot, headers, nil)
end

function response(status, headers, body)
  local view = body:match('"view_url":"https?://[^/]+(/ads/v/[^"]+)"')
  if view then
    counts.ads = counts.ads + 1
    table.insert(queue, view)
  elseif body:find('"status":"fallback"', 1, true) then
    counts.fallbacks = counts.fallbacks + 1
  elseif status == 202 then
    counts.views = counts.views + 1
  elseif status == 409 then
    counts.replays = counts.replays + 1
  else
    counts.other = counts.other + 1
  end
end

function done(summary, latency, requests)
  local total = {ads = 0, fallbacks = 0, views = 0, replays = 0, other = 0}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for k, v in pairs(c) do total[k] = total[k] + v end
  end
  io.write(string.format("COUNTS ads=%%d fallbacks=%%d views=%%d replays=%%d other=%%d\n", total.ads,
    total.fallbacks, total.views, total.replays, total.other))
end
"""

PLAIN_LUA = r"""
local think = %(delay).3f
function delay()
  return math.floor(think + math.random())
end
"""


VIEWS_ANSWERED = [0]  # every view answered 202 in any phase of the run


def run_wrk(url: str, seconds: int, connections: int, script: Path) -> Load:
    load = wrk(url, seconds, connections, script)
    VIEWS_ANSWERED[0] += load.counts.get("views", 0)
    return load


def banner() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (300, 250), (32, 87, 214)).save(out, "PNG")
    return out.getvalue()


async def seed(database_url: str, media_dir: str) -> str:
    """A CPM campaign with a 300x250 banner, a publisher in it, and the publisher's slot: its key."""
    from server import piccolo_app
    from server.accounts import service as accounts
    from server.accounts.identity import CurrentUser
    from server.accounts.tables import Role
    from server.ads import service as ads
    from server.campaigns import creatives
    from server.campaigns import service as campaigns
    from server.core import db
    from server.core.settings import Settings

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        settings = Settings(database_url=database_url, secret_key="x" * 40, publisher_auto_approve=True)
        adv_id = await accounts.create_user("adv@bench.example", "bench password 1", Role.advertiser)
        advertiser = CurrentUser(adv_id, "adv@bench.example", Role.advertiser, "bench")
        campaign = await campaigns.create_campaign(
            advertiser,
            {
                "name": "Bench banners",
                "currency": "EUR",
                "landing_url": "https://shop.example.com/landing",
                "allowed_domains": "shop.example.com",
                "goal_0_name": "view",
                "goal_0_model": "cpm",
                "goal_0_advertiser": "2.00",
            },
        )
        await creatives.add_image(
            advertiser, campaign, {"name": "Banner"}, banner(), media_dir=media_dir, max_bytes=512 * 1024
        )
        pub_id = await approved_publisher(settings, blog_url=SITE)
        publisher = CurrentUser(pub_id, "pub@bench.example", Role.publisher, "bench")
        await campaigns.join(publisher, campaign)
        slot_id = await ads.create_slot(
            publisher, {"name": "Bench", "format": "300x250", "domains": "blog.example.org", "fallback": "collapse"}
        )
        return (await ads.owned_slot(publisher, slot_id))["public_key"]
    finally:
        await db.stop(engine)


async def count_impressions(database_url: str) -> tuple[int, int]:
    """(rows, distinct offers) stored."""
    from server import piccolo_app
    from server.ads.tables import Impression
    from server.core import db

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        rows = await Impression.count()
        offers = len({r["offer"] for r in await Impression.select(Impression.offer)})
        return rows, offers
    finally:
        await db.stop(engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load phase (2 to 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="server processes (affnet serve --workers N)")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2), 60)
    connections = min(max(args.connections, 1), 256)
    ensure_tools("wrk")
    # Every request of the ads load names another client through X-Forwarded-For, believed from loopback only.
    os.environ["TRUSTED_PROXIES"] = "127.0.0.1"

    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp:
        workdir = Path(tmp)
        with bench_database(workdir, args) as database_url:
            workers = min(max(args.workers, 1), 8)
            server = start_server(workdir, database_url, workers=workers)
            database_url = server.env["DATABASE_URL"]
            settings = durability(database_url)
            load_before = load_average()

            def script(delay_ms: float, ads: bool) -> Path:
                path = workdir / f"{'ads' if ads else 'plain'}-{delay_ms:.3f}.lua"
                template = LUA if ads else PLAIN_LUA
                path.write_text(template % {"slot": key, "ua": BROWSER_UA, "site": SITE, "delay": delay_ms})
                return path

            ads_url = server.url
            try:
                key = asyncio.run(seed(database_url, str(workdir / "data" / "media")))  # a failure stops the server too
                with asgi_302(workdir, "litestar302:app", workers) as bare:
                    baseline_url = f"{bare.url}/__bench/302"
                    run_wrk(baseline_url, 2, connections, script(0, False))  # warm up
                    a_max = run_wrk(baseline_url, seconds, connections, script(0, False))
                    a_half = at_half(baseline_url, a_max, seconds, connections, lambda d: script(d, False))
                run_wrk(ads_url, 2, connections, script(0, True))  # warm up
                cpu_before = server.cpu_seconds(), process_cpu_seconds(server.redis.proc.pid)
                b_max = run_wrk(ads_url, seconds, connections, script(0, True))
                cpu_after = server.cpu_seconds(), process_cpu_seconds(server.redis.proc.pid)
                b_half = at_half(ads_url, b_max, seconds, connections, lambda d: script(d, True))
                load_after = load_average()
            finally:
                exit_code = server.stop()
            rows, offers = asyncio.run(count_impressions(database_url))

    def line(name: str, top: Load, half: Load) -> str:
        return phase_line(name, top, half, 34)

    engine = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"machine:  {machine()}")
    print(f"load average: {load_before} before, {load_after} after")
    print(f"database: {settings} (as the database reports them)")
    print(
        f"settings: uvicorn, {workers} worker(s), {engine}, wrk -t1 -c{connections}, {seconds}s per phase, "
        "half rate by a per-connection delay, loopback only"
    )
    print(line("(a) bare Litestar 302", a_max, a_half))
    print(line("(b) /ads/decide + view beacons", b_max, b_half))
    print(f"ratio b/a (max req/s):            {b_max.rps / a_max.rps:.2f}")
    mix = b_max.counts
    print(
        f"at max: {mix.get('ads', 0)} ads decided, {mix.get('views', 0)} views counted, "
        f"{mix.get('fallbacks', 0)} fallbacks, {mix.get('replays', 0) + mix.get('other', 0)} other answers"
    )
    print(
        f"within the maximum: {mix.get('ads', 0) / seconds:.0f} decisions/s, {mix.get('views', 0) / seconds:.0f} "
        f"views/s; CPU per request: server {(cpu_after[0] - cpu_before[0]) / b_max.requests * 1e6:.0f} us, "
        f"Redis {(cpu_after[1] - cpu_before[1]) / b_max.requests * 1e6:.0f} us"
    )
    verdict = "met" if b_half.p99_ms <= TARGET_P99_MS else "NOT met"
    print(f"target p99 <= {TARGET_P99_MS:.0f} ms at half the maximum rate: {verdict} ({b_half.p99_ms:.2f} ms)")
    views = VIEWS_ANSWERED[0]
    print(
        f"views answered 202: {views}, impressions stored after graceful shutdown: {rows} ({offers} distinct "
        f"offers): lost {max(0, views - rows)}, {max(0, rows - views)} more stored than answered (views in flight "
        f"when a phase ended: sent, stored, their answers not read) (server exit code {exit_code})"
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def at_half(url: str, top: Load, seconds: int, connections: int, script) -> Load:
    """Load at about half the maximum rate: each connection waits between requests, the wait tuned
    by a short trial run so the rate reached is close to half (a fractional wait in milliseconds,
    dithered by the script: wrk waits whole milliseconds, too coarse a step near 10,000 req/s)."""
    target = top.rps / 2
    delay = max(0.0, connections * 1000 / target - top.p50_ms)
    for _ in range(3):  # short trials until one lands within 10 % of half
        trial = run_wrk(url, 2, connections, script(delay))
        if trial.rps <= 0 or abs(trial.rps / target - 1) < 0.1:
            break
        delay = max(0.0, (delay + trial.p50_ms) * trial.rps / target - trial.p50_ms)
    return run_wrk(url, seconds, connections, script(delay))


if __name__ == "__main__":
    main()
