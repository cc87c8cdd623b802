"""`affnet serve` under each HTTP server it offers (uvicorn, granian), started as production runs it:
SIGTERM under load loses no answered click, view or postback; every worker runs the lifespan's
startup and shutdown; X-Forwarded-For is believed from TRUSTED_PROXIES only; the access-log switch."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from dev.services import free_port, wait_for_port
from server.ads.tables import Impression
from server.cli import SERVERS
from server.conversions.tables import Conversion
from server.core.settings import ROOT, Settings
from server.tracking.counting import PREFIX
from server.tracking.tables import Click
from tests.ads.factories import PAGE, ad_campaign, join, publisher, slot
from tests.conftest import TEST_SECRET
from tests.conversions.factories import secrets_of
from tests.tracking.factories import campaign_with_link, cookieless

pytestmark = pytest.mark.slow
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


class Serve:
    """One `affnet serve` process (and the workers it starts), its output in a log file."""

    def __init__(self, settings: Settings, tmp: Path, server: str, *args: str, proxies: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.journal = tmp / "journal"
        self.log = tmp / f"serve-{server}.log"
        env = {
            **os.environ,
            "AFFNET_ENV": "test",
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "SECRET_KEY": TEST_SECRET,
            "BASE_URL": self.url,
            "MEDIA_DIR": settings.media_dir,
            "JOURNAL_DIR": str(self.journal),
            "TRUSTED_PROXIES": proxies,
            "STRIPE_SECRET_KEY": settings.stripe_secret_key,
            "STRIPE_API_BASE": settings.stripe_api_base,
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port), "--server", server, *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, timeout=60, proc=self.proc)
        except BaseException:
            self.kill()
            raise

    def terminate(self, timeout: float = 60) -> bool:
        """SIGTERM, as systemd or a container runtime stops it: whether it exited cleanly. One uvicorn
        process, once shut down gracefully, dies of the signal it caught (re-raised: exit status
        -15, which systemd counts as clean); granian, and uvicorn's supervisor of several, exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout) in (0, -signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in [*_children(self.proc.pid), self.proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)  # noqa: S603, S607
    return [int(p) for p in out.stdout.split()]


async def _ready(url: str) -> None:
    """Until a worker answers (granian listens in its main process before its workers' startup)."""
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(300):
            try:
                if (await http.get(f"{url}/healthz")).status_code in (200, 503):
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"{url} never answered")


def _network(n: int) -> str:
    """An address of a /24 of its own: no per-network limit is reached, every visitor is new."""
    return f"10.{(n // 250) % 250}.{n % 250}.7"


@pytest.mark.parametrize("server", SERVERS)
async def test_sigterm_under_load_stores_every_answered_click_view_and_postback(
    clean, settings: Settings, tmp_path: Path, server: str
):
    """Two workers under clicks, ad decisions with their view beacons, and postbacks; SIGTERM while
    requests are in flight. Every click id a visitor was sent with, every view answered 202 and
    every postback answered `accepted` is in the database afterwards; every worker took requests
    (its lifespan's startup ran) and left no journal behind (its shutdown ran: the flush)."""
    click_setup = await campaign_with_link(settings)
    token = (await secrets_of(click_setup.campaign_id))["postback_secret"]
    ads = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, ads)
    key = (await slot(pub))["public_key"]

    serve = Serve(settings, tmp_path, server, "--workers", "2")
    clicks: set[str] = set()
    views: list[str] = []
    accepted: list[str] = []
    counter = itertools.count()
    try:
        await _ready(serve.url)
        # New connections for every request: each worker gets its share of them from the kernel.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=serve.url, timeout=30, limits=limits) as http:

            async def clicking() -> None:
                while True:
                    n = next(counter)
                    headers = {"user-agent": BROWSER, "x-forwarded-for": _network(n)}
                    try:
                        answer = await http.get(f"/c/{click_setup.code}", headers=headers)
                    except httpx.TransportError:
                        return  # the server stopped taking requests: this one was never answered
                    assert answer.status_code == 302, answer.text
                    click_id = parse_qs(urlsplit(answer.headers["location"]).query)["click_id"][0]
                    clicks.add(click_id)
                    if n % 3 == 0:  # a sale for every third click
                        try:
                            report = await http.get(
                                "/postback", params={"click_id": click_id, "txn_id": f"order-{n}", "token": token}
                            )
                        except httpx.TransportError:
                            return
                        assert report.status_code == 200, report.text
                        assert report.json()["status"] == "accepted", report.text
                        accepted.append(f"order-{n}")

            async def viewing() -> None:
                while True:
                    headers = {"user-agent": BROWSER, "origin": "https://blog.example.org", "referer": PAGE}
                    headers["x-forwarded-for"] = _network(next(counter))
                    try:
                        decision = await http.get("/ads/decide", params={"slot": key}, headers=headers)
                        assert decision.status_code == 200, decision.text
                        view_url = decision.json()["view_url"]
                        beacon = await http.post(httpx.URL(view_url).raw_path.decode(), headers=headers)
                    except httpx.TransportError:
                        return
                    assert beacon.status_code == 202, beacon.text
                    views.append(view_url)

            loads = [asyncio.create_task(clicking()) for _ in range(6)]
            loads += [asyncio.create_task(viewing()) for _ in range(4)]
            while len(clicks) < 300 or len(views) < 60 or len(accepted) < 60:
                await asyncio.sleep(0.05)
                if any(task.done() for task in loads):
                    break
            processes = await _classifying_processes(settings)
            stopped = await asyncio.to_thread(serve.terminate)  # mid-load: requests in flight
            for done in await asyncio.gather(*loads, return_exceptions=True):
                if isinstance(done, BaseException):
                    raise done
    finally:
        serve.kill()
        log = serve.output()

    assert stopped, log
    assert "Traceback" not in log, log
    # Both workers took clicks: each one's startup ran (a worker without it answers nothing).
    assert len(processes) == 2, processes
    stored_clicks = {r["click_id"] for r in await Click.select(Click.click_id)}
    assert clicks - stored_clicks == set(), f"{len(clicks - stored_clicks)} answered clicks lost"
    assert len(stored_clicks) >= len(clicks) >= 300
    stored_views = await Impression.count()
    assert stored_views >= len(views) >= 60  # a beacon in flight at the stop may be stored unanswered
    stored_txn = Counter(r["txn_id"] for r in await Conversion.select(Conversion.txn_id))
    assert set(accepted) - set(stored_txn) == set() and len(accepted) >= 60
    assert max(stored_txn.values()) == 1
    # Every worker's shutdown ran: it stored what it held and removed its journal (a process
    # stopped without it leaves its segment and lock files for the next start to replay).
    assert sorted(p.name for p in serve.journal.rglob("*") if p.is_file()) == []


async def _classifying_processes(settings: Settings) -> set[str]:
    """The processes (host:pid) that have flushed clicks, as Redis tallies them."""
    redis = Redis.from_url(settings.redis_url)
    try:
        for _ in range(50):
            tally = {k.decode() for k in await redis.hkeys(PREFIX + "processes")}
            if len(tally) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    host = socket.gethostname()
    return {p for p in tally if p.startswith(f"{host}:")}


async def _reasons(campaign_id: int, expected: int) -> list[str]:
    for _ in range(100):
        rows = await Click.select(Click.reason, Click.visitor_hash).where(Click.campaign == campaign_id)
        if len(rows) >= expected:
            return [r["reason"] for r in sorted(rows, key=lambda r: r["reason"])]
        await asyncio.sleep(0.1)
    pytest.fail(f"{expected} clicks never stored")


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "no-proxy"])
async def test_the_client_address_is_the_proxys_word_only_when_trusted(
    clean, settings: Settings, tmp_path: Path, server: str, trusted: bool
):
    """Three clicks on one link, from a client that keeps no cookie (so the address tells visitors
    apart, server/tracking/visitor.py): two say they come through the proxy from one visitor
    (the second with an address it made up in front: a client can send X-Forwarded-For itself, the
    proxy appends the address it saw), one from another network. Behind a trusted proxy (the
    rightmost address not the proxy's own is the visitor): two visitors, one duplicate. With no
    TRUSTED_PROXIES the header is ignored: all three are 127.0.0.1, one visitor."""
    setup = await campaign_with_link(settings)
    serve = Serve(settings, tmp_path, server, proxies="127.0.0.1" if trusted else "")
    try:
        await _ready(serve.url)
        async with httpx.AsyncClient(base_url=serve.url, timeout=30, cookies=cookieless()) as http:
            for forwarded in ("198.51.100.7", "203.0.113.99, 198.51.100.7", "192.0.2.10"):
                headers = {"user-agent": BROWSER, "x-forwarded-for": forwarded}
                answer = await http.get(f"/c/{setup.code}", headers=headers)
                assert answer.status_code == 302, answer.text
        reasons = await _reasons(setup.campaign_id, 3)
    finally:
        assert serve.terminate()
        serve.kill()
    assert reasons == (["duplicate", "valid", "valid"] if trusted else ["duplicate", "duplicate", "valid"])


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("access_log", [True, False], ids=["access-log", "no-access-log"])
async def test_the_access_log_switch(clean, settings: Settings, tmp_path: Path, server: str, access_log: bool):
    """A request is logged with --access-log, and not without it (the default: a line per click costs)."""
    serve = Serve(settings, tmp_path, server, *(["--access-log"] if access_log else []))
    try:
        await _ready(serve.url)
        async with httpx.AsyncClient(base_url=serve.url, timeout=30) as http:
            assert (await http.get("/login", params={"next": "/logged-request"})).status_code == 200
    finally:
        assert serve.terminate()
        serve.kill()
    assert ("/login" in serve.output()) is access_log, serve.output()
