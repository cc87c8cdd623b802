"""Four server processes, one truth: two hosts' worth of `affnet serve --workers 2` (two servers on
different ports) over one database and one Redis, with clicks spread over all four processes.

Duplicates, the per-network rate limit, daily click caps and CPC budgets are counted in Redis when
each process flushes its batch (server/tracking/counting.py), so the answers are the ones a single
process gives: exact, whichever process took each click. A paused campaign reaches every process
over the campaign-changed channel. On SQLite the four processes share one file on one host (the
embedded default); on PostgreSQL they stand for two hosts."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from dev.services import free_port, stop_all, wait_for_port
from server.campaigns import service as campaigns
from server.conversions.tables import Conversion
from server.core import clock
from server.core.settings import ROOT, Settings
from server.earnings import cpc
from server.earnings.tables import ClickEarning
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.tracking.counting import NETWORK_CLICKS_PER_MINUTE, PREFIX
from server.tracking.tables import Click
from tests.conftest import TEST_SECRET
from tests.conversions.factories import secrets_of
from tests.earnings.factories import fund
from tests.tracking.factories import campaign_with_link, cookieless

pytestmark = pytest.mark.slow
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
FALLBACK = "https://fallback.example.org/"


class Servers:
    """Two `affnet serve --workers 2`, as two hosts would run them."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.ports = [free_port(), free_port()]
        self.tmp = tmp
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": TEST_SECRET,
            "BASE_URL": f"http://127.0.0.1:{self.ports[0]}",
            "MEDIA_DIR": str(tmp / "media"),
            "TRUSTED_PROXIES": "127.0.0.1",  # the tests say which visitor they are with X-Forwarded-For
            "STRIPE_SECRET_KEY": settings.stripe_secret_key,
            "STRIPE_API_BASE": settings.stripe_api_base,
        }
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        for n, port in enumerate(self.ports):
            log = open(self.tmp / f"web{n}.log", "wb")  # noqa: SIM115 - closed with the process
            env = {**self.env, "JOURNAL_DIR": str(self.tmp / f"journal{n}")}  # each host its own disk
            self.procs.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--workers", "2"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for port, proc in zip(self.ports, self.procs, strict=True):
            wait_for_port(port, timeout=60, proc=proc)

    def stop(self) -> None:
        stop_all(self.procs)  # graceful: every process stores its buffered clicks before it exits

    async def spread(self, path: str, requests: list[dict], concurrency: int = 8) -> list[httpx.Response]:
        """GET `path` once per request (httpx keyword arguments: params, headers), alternating between
        the servers, each on a new connection, so each server's two processes share the load as the
        kernel hands the connections out."""
        ports = itertools.cycle(self.ports)
        gate = asyncio.Semaphore(concurrency)
        # No cookie kept: each request is a new reader (or a tool), as far as the visitor cookie goes.
        async with httpx.AsyncClient(
            limits=httpx.Limits(max_keepalive_connections=0), timeout=30, cookies=cookieless()
        ) as http:

            async def one(port: int, request: dict) -> httpx.Response:
                async with gate:
                    return await http.get(f"http://127.0.0.1:{port}{path}", **request)

            return list(await asyncio.gather(*(one(next(ports), request) for request in requests)))

    async def postbacks(self, reports: list[dict[str, str]]) -> list[httpx.Response]:
        return await self.spread("/postback", [{"params": report} for report in reports])

    async def clicks(self, code: str, visitors: list[tuple[str, str]]) -> list[str]:
        """One GET /c/{code} per (ip, user agent): where each visitor was sent."""
        answers = await self.spread(
            f"/c/{code}", [{"headers": {"user-agent": ua, "x-forwarded-for": ip}} for ip, ua in visitors]
        )
        assert {a.status_code for a in answers} == {302}, [a.text for a in answers if a.status_code != 302]
        return [a.headers["location"] for a in answers]


@pytest.fixture
def servers(clean, settings: Settings, tmp_path: Path) -> Iterator[Servers]:
    running = Servers(settings, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def reasons(campaign_id: int, expected: int) -> Counter:
    """The stored clicks of a campaign by reason, once all `expected` are stored (every process
    flushes every half second; polled, never timed)."""
    deadline = time.monotonic() + 30
    while True:
        rows = await Click.select(Click.reason).where(Click.campaign == campaign_id)
        if len(rows) >= expected or time.monotonic() > deadline:
            return Counter(r["reason"] for r in rows)
        await asyncio.sleep(0.2)


def networks(n: int) -> list[str]:
    """n addresses, each in its own /24: the rate limit never sees two of them together."""
    return [f"10.{i // 250}.{i % 250}.7" for i in range(n)]


async def test_four_processes_count_clicks_as_one(servers: Servers, settings: Settings):
    one_visitor = await campaign_with_link(settings)
    flood = await campaign_with_link(settings)
    capped = await campaign_with_link(settings, cap_clicks_daily=50)
    budget = await campaign_with_link(
        settings,
        goal_0_name="click",
        goal_0_model="cpc",
        goal_0_advertiser="1.00",
        goal_0_publisher="0.80",
        total_budget="30.00",
    )

    # One visitor clicking the same link 100 times: one valid click, 99 duplicates.
    await servers.clicks(one_visitor.code, [("198.51.100.7", BROWSER)] * 100)
    # 400 clicks from one /24 (other browsers and addresses, so not duplicates): the rate allows 120 a minute.
    await servers.clicks(flood.code, [(f"203.0.113.{i % 250}", f"{BROWSER} build/{i}") for i in range(400)])
    # 200 visitors on a campaign capped at 50 valid clicks a day.
    capped_locations = await servers.clicks(capped.code, [(ip, BROWSER) for ip in networks(200)])
    # A CPC campaign whose total budget pays for 30 clicks.
    await servers.clicks(budget.code, [(ip, BROWSER) for ip in networks(60)])

    assert await reasons(one_visitor.campaign_id, 100) == {"valid": 1, "duplicate": 99}
    flooded = await reasons(flood.campaign_id, 400)
    assert sum(flooded.values()) == 400 and flooded["valid"] <= NETWORK_CLICKS_PER_MINUTE, flooded
    span = await _span(flood.campaign_id)
    if span < timedelta(seconds=60):  # all within one window (it is, but for a machine slower than any)
        assert flooded == {"valid": 120, "rate_limited": 280}
    assert await reasons(capped.campaign_id, 200) == {"valid": 50, "over_cap": 150}
    await asyncio.sleep(0.5)  # a flush interval: the last batches' news reach every process
    # Once the clicks are counted, every process sends the campaign's visitors to its fallback URL
    # (the flush that found it full told the others).
    assert FALLBACK not in capped_locations[:50]
    assert await servers.clicks(capped.code, [(ip, BROWSER) for ip in networks(300)[200:]]) == [FALLBACK] * 100
    assert await reasons(capped.campaign_id, 300) == {"valid": 50, "over_cap": 250}
    assert await reasons(budget.campaign_id, 60) == {"valid": 30, "over_budget": 30}

    # The 30 valid clicks are charged, once the hour closes: exactly the budget.
    await fund(budget, 100_00)
    await cpc.run(now=clock.now() + timedelta(hours=2))
    charged = await ClickEarning.select(ClickEarning.paid_clicks, ClickEarning.price_minor).where(
        ClickEarning.campaign == budget.campaign_id
    )
    assert sum(r["paid_clicks"] for r in charged) == 30 and sum(r["price_minor"] for r in charged) == 30_00
    assert await ledger.balance(K.advertiser_balance, "EUR", budget.advertiser.id) == 70_00
    assert await ledger.check() == []

    # Every one of the four processes classified clicks (each names itself: host:pid).
    redis = Redis.from_url(settings.redis_url)
    try:
        tally = {k.decode(): int(v) for k, v in (await redis.hgetall(PREFIX + "processes")).items()}
    finally:
        await redis.aclose()
    host = socket.gethostname()
    for proc in servers.procs:
        workers = [f"{host}:{pid}" for pid in _children(proc.pid) if f"{host}:{pid}" in tally]
        assert len(workers) == 2, (tally, proc.pid)  # both of this server's processes took clicks
    assert sum(tally.values()) == 100 + 400 + 300 + 60  # and nobody else classified any


async def test_pausing_reaches_every_process_within_a_second(servers: Servers, settings: Settings):
    s = await campaign_with_link(settings)
    before = await servers.clicks(s.code, [(ip, BROWSER) for ip in networks(40)])
    assert FALLBACK not in before  # every process has the campaign cached as active

    await campaigns.change_status(s.advertiser, s.campaign_id, "pause")
    await asyncio.sleep(1.0)
    after = await servers.clicks(s.code, [(ip, BROWSER) for ip in networks(40)])
    assert after == [FALLBACK] * 40
    assert (await reasons(s.campaign_id, 80))["campaign_paused"] == 40


async def test_postbacks_count_once_and_caps_hold_across_processes(servers: Servers, settings: Settings):
    """Postbacks are counted in the database (unique indexes; caps checked under a row lock), so the
    same report sent to every process at once is one conversion, and a cap holds exactly."""
    once = await campaign_with_link(settings)
    capped = await campaign_with_link(settings, cap_conversions_daily="5")
    once_click = parse_qs(urlsplit((await servers.clicks(once.code, [("198.51.100.9", BROWSER)]))[0]).query)
    capped_clicks = [
        parse_qs(urlsplit(location).query)["click_id"][0]
        for location in await servers.clicks(capped.code, [(ip, BROWSER) for ip in networks(20)])
    ]
    once_token = (await secrets_of(once.campaign_id))["postback_secret"]
    capped_token = (await secrets_of(capped.campaign_id))["postback_secret"]

    repeated = await servers.postbacks(
        [{"click_id": once_click["click_id"][0], "txn_id": "order-1", "token": once_token}] * 20
    )
    assert {r.status_code for r in repeated} == {200}
    assert sorted(r.json()["duplicate"] for r in repeated) == [False] + [True] * 19
    assert len({r.json()["conversion_id"] for r in repeated}) == 1
    assert await Conversion.count().where(Conversion.campaign == once.campaign_id) == 1

    answers = await servers.postbacks(
        [{"click_id": c, "txn_id": f"order-{n}", "token": capped_token} for n, c in enumerate(capped_clicks)]
    )
    assert Counter(r.status_code for r in answers) == {200: 5, 409: 15}
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"cap_reached"}
    assert await Conversion.count().where(Conversion.campaign == capped.campaign_id) == 5


async def _span(campaign_id: int) -> timedelta:
    rows = await Click.select(Click.clicked_at).where(Click.campaign == campaign_id).order_by(Click.clicked_at)
    return rows[-1]["clicked_at"] - rows[0]["clicked_at"]


def _children(pid: int) -> list[int]:
    """The processes a server started (uvicorn's workers, and multiprocessing's helper)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=True)  # noqa: S603, S607
    return [int(p) for p in out.stdout.split()]
