"""Real parts for every test: a real Redis, real SQLite and (whenever it can be started) real
PostgreSQL, the real app over HTTP. Database tests run once per engine through `database_url`."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from dev.mailcatcher import MailServer
from dev.services import Service, find_postgres_bindir, find_redis_server, free_port, start_postgres, start_redis
from server import piccolo_app
from server.app import create_app
from server.core import db
from server.core.settings import ROOT, Settings
from server.ledger import schema as ledger_schema
from server.tracking import click_rules

# Registered for assertion rewriting before it is imported below (pytest would warn otherwise).
pytest.register_assert_rewrite("tests.stripe_fixtures")
from tests.stripe_fixtures import StripeLocal  # noqa: E402

pytest_plugins = ["tests.stripe_fixtures"]
CI = os.environ.get("CI") == "true"
TEST_SECRET = "test-secret-key-that-is-long-enough-for-production-0123456789"
BASE_URL = "http://testserver.local"


def _unavailable(what: str) -> None:
    """Outside CI a missing server skips its tests; in CI it fails them, so nothing is silently untested."""
    if CI:
        pytest.fail(f"{what} is required in CI (scripts/test-prereqs.sh installs it)")
    pytest.skip(f"{what} is not available on this machine")


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    if find_redis_server() is None:
        _unavailable("redis-server")
    service = start_redis(tmp_path_factory.mktemp("redis"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def mail_server() -> Iterator[MailServer]:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it is sent: where the app's mail goes."""
    server = MailServer(port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(mail_server: MailServer) -> Iterator[MailServer]:
    """The SMTP server, empty and listening, for one test (a test that stopped it gets it back after)."""
    mail_server.start()
    mail_server.catcher.clear()
    mail_server.catcher.refuse_with = None
    yield mail_server
    mail_server.start()
    mail_server.catcher.refuse_with = None


@pytest.fixture(scope="session")
def postgres_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    if find_postgres_bindir() is None:
        _unavailable("PostgreSQL")
    service = start_postgres(tmp_path_factory.mktemp("pg"))
    yield service
    service.stop()


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": TEST_SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


_DB_SEQ = itertools.count(1)


def _create_pg_database(service: Service, name: str) -> str:
    bindir = find_postgres_bindir()
    host_port = ["-h", "127.0.0.1", "-p", str(service.port), "-U", "affnet"]
    subprocess.run([str(bindir / "createdb"), *host_port, name], check=True, capture_output=True)
    return service.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A freshly migrated database of each engine (the engine is part of every DB test's id)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'affnet.sqlite3'}"
    else:
        # A new name each time: a database an earlier instance left connections to is never reused.
        name = f"affnet_test_{os.getpid()}_{next(_DB_SEQ)}"
        url = _create_pg_database(request.getfixturevalue("postgres_service"), name)
    migrate(url)
    return url


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    redis_service: Service,
    tmp_path_factory: pytest.TempPathFactory,
    stripe_local: StripeLocal,
    mail_server: MailServer,
) -> Settings:
    # Stripe is the local stand-in: the same SDK calls and signed webhooks as Stripe in test mode.
    return Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_service.url,
        secret_key=TEST_SECRET,
        base_url=BASE_URL,
        media_dir=str(tmp_path_factory.mktemp("media")),
        journal_dir=str(tmp_path_factory.mktemp("journal")),
        stripe_secret_key=stripe_local.secret_key,
        stripe_publishable_key="pk_test_local",
        stripe_webhook_secret=stripe_local.webhook_secret,
        stripe_connect_webhook_secret=stripe_local.connect_webhook_secret,
        stripe_api_base=stripe_local.base_url,
        geo_country_header="CF-IPCountry",
        smtp_url=mail_server.url,
        mail_from="affnet <no-reply@affnet.test>",
        webhooks_allow_loopback=True,  # the webhook tests' receiver listens on 127.0.0.1
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator:
    application = create_app(settings)
    # Startup binds the engine and opens pools in the tests' own event loop (AsyncTestClient's
    # lifespan would run them in a thread of its own, where asyncpg's pool could not be shared).
    # (Its lifespan context cannot be used either: pytest-asyncio ends a fixture in another task.)
    for hook in application.on_startup:
        await hook(application)
    yield application
    for hook in application.on_shutdown:
        await hook(application)


# Reference data the migrations seed, which no test changes: kept (the EU's VAT rates).
SEEDED = frozenset({"vat_rate"})


async def wipe() -> None:
    """Empty every table (the schema stays, and the seeded reference data), so each test starts from nothing."""
    tables = [t for t in piccolo_app.all_tables() if t._meta.tablename not in SEEDED]
    if db.is_sqlite():
        # The ledger's append-only triggers refuse DELETE: lift them for the wipe only.
        async with db.transaction():
            for ddl in ledger_schema.drop_append_only_ddl(sqlite=True):
                await tables[0].raw(ddl)
            for table in reversed(tables):
                await table.delete(force=True)
            for ddl in ledger_schema.append_only_ddl(sqlite=True):
                await tables[0].raw(ddl)
    else:
        names = ", ".join(f'"{t._meta.tablename}"' for t in tables)
        await tables[0].raw(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
async def clean(app, settings: Settings) -> AsyncIterator[None]:
    await app.state.click_buffer.flush()  # clicks of the previous test land before their links go
    await app.state.ads.buffer.flush()  # and its counted views before their slots go
    await wipe()
    # Ids restart in an emptied database: in-process state keyed by them must start afresh too.
    app.state.redirector.reset()
    app.state.link_cache.clear()
    app.state.terms_cache.clear()
    app.state.conversion_rules.clear()
    app.state.sightings.clear()
    click_rules.forget()
    redis = Redis.from_url(settings.redis_url)
    await redis.flushdb()
    await redis.aclose()
    yield


@pytest.fixture
async def new_client(app, clean) -> AsyncIterator:
    """A factory of independent browsers-over-HTTP (each with its own cookies) on the shared app."""
    clients: list[httpx.AsyncClient] = []

    def make(base_url: str = BASE_URL) -> httpx.AsyncClient:
        # httpx's ASGI transport calls the app in this event loop, as a server would.
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)), base_url=base_url
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def client(new_client) -> httpx.AsyncClient:
    return new_client()


@pytest.fixture
def https_settings(settings: Settings) -> Settings:
    return replace(settings, base_url="https://affnet.example")


def _engine_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("database_url") if callspec else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Engine by engine (each database is set up once), browser journeys last within each.

    A browser journey runs on one engine: its pages' markup does not depend on it, and every route it
    drives is tested over HTTP on both. PostgreSQL (production's) unless the journey is marked
    `browser_engine("sqlite")` (what `make run` shows, on its SQLite). Running each twice cost the
    suite three minutes."""
    engines = {"sqlite": 0, "postgres": 1}
    once, twice = [], []
    for item in items:
        only = item.get_closest_marker("engine")  # any test that needs one engine only says which
        marker = only or item.get_closest_marker("browser_engine")
        wanted = marker.args[0] if marker else "postgres"
        engine = _engine_of(item)
        one_engine = only is not None or item.get_closest_marker("browser") is not None
        (twice if one_engine and engine not in (None, wanted) else once).append(item)
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = once

    def key(item: pytest.Item) -> tuple[int, int]:
        callspec = getattr(item, "callspec", None)
        engine = engines.get(callspec.params.get("database_url"), -1) if callspec else -1
        return engine, 1 if item.get_closest_marker("browser") else 0

    items.sort(key=key)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"affnet tests: CI={CI} redis-server={find_redis_server()} postgres={find_postgres_bindir()}",
        f"root: {Path(ROOT)}",
    ]
