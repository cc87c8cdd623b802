"""Browser journeys: the real server in a subprocess (`affnet serve`) on the test database and Redis,
driven by Debian's headless Chromium through Playwright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dev.services import free_port, wait_for_port
from server.core.settings import ROOT, Settings
from tests.conftest import _unavailable
from tests.webhooks.conftest import _receiver_server, receiver, webhook_endpoint  # noqa: F401 - the API journey's receiver

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every wait in a journey gives up after this long (ms): a broken page fails fast, not after 30 s.
TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class LiveServer:
    url: str
    port: int
    log: Path
    proc: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def live_server(settings: Settings, clean, tmp_path: Path) -> Iterator[LiveServer]:
    """`affnet serve` on a free loopback port, on the same (emptied) database and Redis as `settings`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AFFNET_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "MEDIA_DIR": settings.media_dir,
        "BASE_URL": url,
        "SMTP_URL": settings.smtp_url,  # the tests' SMTP server (the tests deliver the outbox themselves)
        "MAIL_FROM": settings.mail_from,
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(url=url, port=port, log=log, proc=proc)
    try:
        wait_for_port(port, timeout=30, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        _stop(proc)
        pytest.fail(f"affnet serve did not start: {exc}\n--- server log ---\n{server.log_text()}")
    try:
        yield server
    finally:
        _stop(proc)
        # Shown by pytest only when the test failed: what the server said meanwhile.
        print(f"--- server log ({url}) ---\n{server.log_text()}")


@pytest.fixture
def live_server_uses_the_stand_in(monkeypatch, stripe_local) -> None:
    """`affnet serve` reads Stripe's settings from its environment: the stand-in's, set before the
    live server starts (a journey that pays or is paid uses it with pytest.mark.usefixtures)."""
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_local.secret_key)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", stripe_local.webhook_secret)
    monkeypatch.setenv("STRIPE_CONNECT_WEBHOOK_SECRET", stripe_local.connect_webhook_secret)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_local.base_url)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        _unavailable("Chromium")
    return CHROMIUM


@asynccontextmanager
async def headless_chromium(chromium_path: str, *extra_args: str) -> AsyncIterator:
    """Debian's Chromium driven by Playwright, with the flags this machine's closed network needs."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright")
    pw = await async_playwright().start()
    try:
        chromium = await pw.chromium.launch(
            executable_path=chromium_path, headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
    except BaseException:
        await pw.stop()
        raise
    try:
        yield chromium
    finally:
        await chromium.close()
        await pw.stop()


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator:
    """One headless Chromium for the whole session; each journey opens its own contexts."""
    async with headless_chromium(chromium_path) as chromium:
        yield chromium


@pytest.fixture
async def new_page(browser, live_server: LiveServer) -> AsyncIterator[Callable[[], Awaitable]]:
    """A factory of pages, each in a fresh browser context (its own cookies: a separate person)."""
    contexts = []

    async def make():
        context = await browser.new_context(base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        contexts.append(context)
        return await context.new_page()

    yield make
    for context in contexts:
        await context.close()
