"""A Redis outage under traffic, end to end: a live uvicorn server, a real `affnet worker` process and the
Stripe stand-in, all on a redis-server this test starts, stops and starts again. No request answers 500,
logins say they are paused (503), clicks and pages keep working, a top-up paid during the outage is
recorded, then credited exactly once when the worker, still the same process, has reconnected by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dev.services import Service, free_port, start_redis, stop_all, wait_for_port
from server.billing.tables import Funding
from server.core.settings import ROOT, Settings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.stripe_events.tables import StripeEvent
from tests.billing.test_with_stripe_local import start_funding
from tests.conftest import TEST_SECRET
from tests.factories import PASSWORD, login, post_form
from tests.tracking.factories import campaign_with_link

pytestmark = pytest.mark.slow
DEADLINE = 45.0  # seconds anything may take to recover on a loaded machine (polled, never asserted as timing)


class Stack:
    """Redis, the Stripe stand-in, the web server and the worker, as `make run` would start them."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.tmp = tmp
        self.redis_port = free_port()
        self.redis: Service | None = None
        self.web_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        stripe_port = free_port()
        self.stripe_url = f"http://127.0.0.1:{stripe_port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "SECRET_KEY": TEST_SECRET,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "BASE_URL": self.base_url,
            "STRIPE_SECRET_KEY": "sk_test_local" + secrets.token_hex(12),
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
            "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
            "STRIPE_PUBLISHABLE_KEY": "pk_test_local",
            "STRIPE_API_BASE": self.stripe_url,
            "MEDIA_DIR": str(tmp / "media"),
            "JOURNAL_DIR": str(tmp / "journal"),
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.stripe_port = stripe_port

    def start_redis(self) -> None:
        self.redis = start_redis(self.tmp / "redis", port=self.redis_port)

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()
        self.redis = None

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process at teardown
        proc = subprocess.Popen(
            [sys.executable, "-m", "dev.cli" if args[0] == "stripe-local" else "server.cli", *args],
            cwd=ROOT,
            env=self.env,  # noqa: S603
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        self.start_redis()
        stand_in = self.spawn(
            "stripe-local",
            "stripe-local",
            "--port",
            str(self.stripe_port),
            "--webhook-url",
            self.base_url + "/stripe/webhook",
            "--webhook-retry-delay",
            "0.2",
            "--webhook-attempts",
            "4",
        )
        wait_for_port(self.stripe_port, timeout=30, proc=stand_in)
        self.spawn("worker", "worker")
        wait_for_port(self.web_port, timeout=60, proc=self.spawn("web", "serve", "--port", str(self.web_port)))

    async def pay(self, session_id: str) -> None:
        """Pay a Checkout session at the stand-in, as the advertiser's browser would; its webhooks follow."""
        async with httpx.AsyncClient(base_url=self.stripe_url, timeout=20) as stand_in:
            (await stand_in.post(f"/_local/checkout/sessions/{session_id}/pay")).raise_for_status()

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_all(self.procs.values(), timeout=15)
        if self.redis is not None:
            self.redis.stop()


@pytest.fixture
def stack(clean, settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(settings, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def until(check, what: str, deadline: float = DEADLINE):
    """Poll `check()` (async) until it returns something truthy; fail with `what` after the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if value := await check():
            return value
        await asyncio.sleep(0.25)
    pytest.fail(f"not within {deadline:.0f} s: {what}")


async def health(http: httpx.AsyncClient) -> dict:
    response = await http.get("/healthz")
    assert response.status_code == 200, response.text  # Redis or the worker away is degraded, never 503
    return response.json()


async def test_everything_rides_out_a_redis_outage(stack: Stack, settings: Settings):
    setup = await campaign_with_link(settings)
    answers: list[tuple[str, str, int]] = []  # (phase, path, status)
    phase = ["before"]
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http,
        httpx.AsyncClient(base_url=stack.base_url, timeout=20) as advertiser,
    ):
        await until(lambda: _worker_seen(http), "the worker reported in")
        _, funding = await start_funding(advertiser, setup.advertiser.email)  # logged in before the outage

        async def traffic(stop: asyncio.Event) -> None:
            """Clicks, logins, a logged-in page and the health check, until told to stop."""
            n = 0
            while not stop.is_set():
                n += 1
                async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as visitor:
                    for method, path, data in (
                        ("GET", f"/c/{setup.code}?sub1=outage{n}", None),
                        ("POST", "/login", {"email": setup.publisher_email, "password": PASSWORD}),
                        ("GET", "/healthz", None),
                    ):
                        at = phase[0]  # when it was sent
                        if data is None:
                            response = await visitor.request(method, path)
                        else:
                            response = await post_form(visitor, path, data)
                        answers.append((at, "/c/" if path.startswith("/c/") else path, response.status_code))
                at = phase[0]
                page = await advertiser.get("/advertiser/billing")
                answers.append((at, "/advertiser/billing", page.status_code))
                await asyncio.sleep(0.05)

        stop_traffic = asyncio.Event()
        load = asyncio.create_task(traffic(stop_traffic))
        await asyncio.sleep(0.5)

        stack.stop_redis()  # --- the outage ---
        phase[0] = "outage"
        body = await until(lambda: _degraded(http), "/healthz reported Redis down")
        assert any(line.startswith("redis:") for line in body["degraded"])
        paused = await post_form(
            httpx.AsyncClient(base_url=stack.base_url, timeout=20),
            "/login",
            {"email": setup.publisher_email, "password": PASSWORD},
        )
        assert paused.status_code == 503 and "Logging in is paused" in paused.text
        await stack.pay(funding["checkout_session_id"])  # its webhooks arrive during the outage
        await until(lambda: _recorded(funding["checkout_session_id"]), "the paid session's webhook was recorded")
        assert (await health(http))["jobs_waiting_for_redis"] >= 1  # its job waits in the web process
        assert (await Funding.select(Funding.status).where(Funding.id == funding["id"]).first())[
            "status"
        ] != "credited"  # nobody processed it: Redis is down
        await asyncio.sleep(2.0)  # more traffic during the outage

        stack.start_redis()  # --- Redis is back ---
        phase[0] = "after"
        await until(lambda: _credited(funding["id"]), "the top-up was credited after Redis came back")
        await until(lambda: _worker_seen(http), "the worker reported in again")
        stop_traffic.set()
        await load

        # Logins work again, and the worker that resumed is the one started before the outage.
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as person:
            await login(person, setup.publisher_email)
    assert stack.procs["worker"].poll() is None and stack.procs["web"].poll() is None
    assert "worker lost Redis" in stack.log("worker")

    seen = Counter(answers)
    assert not [a for a in answers if a[2] >= 500 and a[1:] != ("/login", 503)], seen
    # Traffic met the outage, and got what it should: clicks redirected, logged-in pages served, the
    # health check said "degraded" (200), logins were paused with a 503 and a message.
    for path, status in (("/c/", 302), ("/advertiser/billing", 200), ("/healthz", 200), ("/login", 503)):
        assert seen[("outage", path, status)] >= 1, seen
    assert {status for _, path, status in answers if path == "/c/"} == {302}, seen
    assert {status for _, path, status in answers if path == "/advertiser/billing"} == {200}, seen
    assert {status for _, path, status in answers if path == "/login"} <= {303, 503}, seen
    # Credited exactly once, and the books balance.
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 50_000
    assert await StripeEvent.count().where(StripeEvent.processed_at.is_null()) == 0
    assert await ledger.check() == []


async def _worker_seen(http: httpx.AsyncClient) -> bool:
    return (await health(http))["worker"] == "ok"


async def _degraded(http: httpx.AsyncClient) -> dict | None:
    body = await health(http)
    return body if body["redis"] != "ok" and body["status"] == "degraded" else None


async def _recorded(session_id: str) -> bool:
    rows = await StripeEvent.select(StripeEvent.payload).where(StripeEvent.processed_at.is_null())
    return any(session_id in str(row["payload"]) for row in rows)


async def _credited(funding_id: int) -> bool:
    with contextlib.suppress(Exception):  # SQLite busy while the worker writes: poll again
        row = await Funding.select(Funding.status).where(Funding.id == funding_id).first()
        return row["status"] == "credited"
    return False
