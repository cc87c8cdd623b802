"""Benchmark conversion intake: postbacks per second, with dedup by txn id.

    .venv/bin/python bench/postback_ingest.py [--seconds 10] [--connections 32] [--workers 1]
                                              [--postgres | --database-url URL]

Starts affnet (`affnet serve --workers N`, one worker by default) on 127.0.0.1 with a fresh
database (SQLite, or a throwaway PostgreSQL with --postgres), makes a campaign and a real click
through /c/{code}, then loads GET /postback with wrk: every request carries a new txn id on a
click of its own, except every tenth, which repeats an earlier one (a retried postback). A goal
takes one conversion per click, as real sales come, so the click ids beyond the real one are
signed here with the server's key the way the redirect signs them (intake needs no click row: the
signed id is the proof). It then counts the stored conversions: each distinct txn id answered must
be stored exactly once. It prints the CPU a postback cost the server's processes, its PostgreSQL
(every postgres process of the throwaway cluster; SQLite's work is inside the server) and the load
generator, which shares the cores. Loopback only, bounded in time. Needs wrk (Debian package; installed if root).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BROWSER_UA,
    ROOT,
    _ms,
    approved_publisher,
    bench_database,
    children_cpu_seconds,
    database_cpu_seconds,
    durability,
    ensure_tools,
    load_average,
    machine,
    start_server,
)

sys.path.insert(0, str(ROOT))

# Every request a new txn id on its own click; every tenth repeats the one sent five requests
# earlier (same click, same txn id). CLICKS is the file of signed click ids, one a line (read
# once: a table literal that large would pass LuaJIT's limit on constants per function).
LUA = """
local clicks = {}
for line in io.lines("{CLICKS}") do clicks[#clicks + 1] = line end
counter = 0
request = function()
  counter = counter + 1
  local n = counter
  if counter % 10 == 0 then n = counter - 5 end
  local click = clicks[(n - 1) % #clicks + 1]
  return wrk.format("GET", wrk.path .. "&click_id=" .. click .. "&txn_id=bench-" .. n)
end
"""
CLICKS_PER_SECOND = 12_000  # signed click ids per second of load: more than the intake answers here


def signed_click_ids(first: str, count: int) -> list[str]:
    """`first` (a real click's id) and count - 1 more for the same link, signed as the redirect does."""
    import hashlib
    import hmac
    import time

    from common import SECRET

    from server.tracking.tokens import issue_click_id, read_click_id

    key = hmac.new(SECRET.encode(), b"click-token", hashlib.sha256).hexdigest().encode()  # server/app.py
    ref = read_click_id(key, first)
    if ref is None:
        raise RuntimeError("the bench's key does not open the server's click ids (server/app.py changed?)")
    clicked_at = int(time.time()) - 60
    return [first] + [issue_click_id(key, ref.link_id, clicked_at) for _ in range(count - 1)]


async def seed(database_url: str, fraud_rules: bool = False) -> tuple[str, str]:
    """A campaign (CPA, no caps) with a joined publisher; returns (link code, postback token).

    Every postback is the one publisher's, so past 50 in a day the `rate_anomaly` rule would hold
    them (one more row each): off for the campaign unless `fraud_rules`, so the figures measure
    the same path as before the rules existed."""
    from server import piccolo_app
    from server.accounts import service as accounts
    from server.accounts.identity import CurrentUser
    from server.accounts.tables import Role
    from server.campaigns import service as campaigns
    from server.campaigns.tables import Campaign, Link
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
        if not fraud_rules:
            from server.conversions.tables import ConversionRuleSetting

            await ConversionRuleSetting.insert(
                ConversionRuleSetting(
                    campaign=campaign, name="rate_anomaly.enabled", value=0, updated_at=datetime.now(UTC)
                )
            )
        code = (await Link.select(Link.code).first())["code"]
        token = (await Campaign.select(Campaign.postback_secret).first())["postback_secret"]
        return code, token
    finally:
        await db.stop(engine)


def click_id_of(base_url: str, code: str) -> str:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(f"{base_url}/c/{code}", headers={"User-Agent": BROWSER_UA})  # noqa: S310
    try:
        opener.open(request, timeout=10)  # noqa: S310 - loopback, our own server
    except urllib.error.HTTPError as answer:
        if answer.code == 302:
            return parse_qs(urlsplit(answer.headers["location"]).query)["click_id"][0]
        raise
    raise RuntimeError("the tracked link did not redirect")


async def count_conversions(database_url: str) -> int:
    return (await stored_txn_ids(database_url))[0]


async def stored_txn_ids(database_url: str) -> tuple[int, int]:
    """(conversions stored, distinct txn ids among them): equal when none is stored twice."""
    from server import piccolo_app
    from server.conversions.tables import Conversion
    from server.core import db

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        row = (await Conversion.raw("SELECT COUNT(*) AS n, COUNT(DISTINCT txn_id) AS txn_ids FROM conversion"))[0]
        return int(row["n"]), int(row["txn_ids"])
    finally:
        await db.stop(engine)


@dataclass
class Load:
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    client_cpu: float = 0.0


def wrk(url: str, seconds: int, connections: int, script: str) -> Load:
    """Closed-loop load at the maximum rate, each request built by the Lua script."""
    cpu_before = children_cpu_seconds()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],  # noqa: S603, S607
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        errors=int(errors.group(1)) if errors else 0,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        p99_ms=_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        client_cpu=children_cpu_seconds() - cpu_before,
    )


def unique_txn_ids(requests: int) -> int:
    return requests - requests // 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of the load phase (max 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="server processes (affnet serve --workers N)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL on loopback")
    parser.add_argument(
        "--fraud-rules", action="store_true", help="keep the conversion rules on (rate_anomaly holds past 50 a day)"
    )
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2), 60)
    ensure_tools("wrk")

    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp:
        workdir = Path(tmp)
        with bench_database(workdir, args) as database_url:
            server = start_server(workdir, database_url, workers=min(max(args.workers, 1), 8))
            database_url = server.env["DATABASE_URL"]
            settings = durability(database_url)
            load_before = load_average()
            try:
                code, token = asyncio.run(seed(database_url, args.fraud_rules))
                clicks = signed_click_ids(click_id_of(server.url, code), CLICKS_PER_SECOND * seconds)
                (workdir / "clicks.txt").write_text("\n".join(clicks) + "\n")
                script = workdir / "postback.lua"
                script.write_text(LUA.replace("{CLICKS}", str(workdir / "clicks.txt")))
                url = f"{server.url}/postback?{urlencode({'token': token})}"
                cpu_before, db_before = server.cpu_seconds(), database_cpu_seconds(database_url)
                load = wrk(url, seconds, args.connections, script=str(script))
                cpu, db_after = server.cpu_seconds() - cpu_before, database_cpu_seconds(database_url)
                load_after = load_average()
            finally:
                exit_code = server.stop()
            stored, distinct = asyncio.run(stored_txn_ids(database_url))

    expected = unique_txn_ids(load.requests)
    per = max(load.requests, 1)
    database = "in the server (SQLite) or unmeasured"
    if db_before is not None and db_after is not None:
        database = f"{(db_after - db_before) * 1e6 / per:.0f} µs ({(db_after - db_before) / seconds:.2f} cores)"
    print(f"machine:  {machine()}")
    print(f"load average: {load_before} before, {load_after} after")
    print(f"database: {settings} (as the database reports them)")
    print(
        f"settings: uvicorn, {server.workers} worker(s), wrk -t1 -c{args.connections} on the same cores, {seconds}s, "
        "loopback only; one txn id in ten repeated"
    )
    print(
        f"postbacks: {load.rps:.0f} req/s (p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms), "
        f"{load.requests} answered, {load.errors} not 2xx"
    )
    print(
        f"CPU per postback: server {cpu * 1e6 / per:.0f} µs ({cpu / seconds:.2f} cores, user+system of its "
        f"processes), database {database}, wrk {load.client_cpu * 1e6 / per:.0f} µs "
        f"({load.client_cpu / seconds:.2f} cores)"
    )
    print(
        f"conversions stored: {stored}, {distinct} distinct txn ids among them; distinct txn ids answered: "
        f"{expected} (a request in flight at the end may add one per connection) — server exit code {exit_code}"
    )
    if load.errors or distinct != stored or not expected <= stored <= expected + args.connections:
        sys.exit("FAILED: errors, a txn id stored twice, or stored conversions do not match the distinct txn ids")


if __name__ == "__main__":
    main()
