"""The click redirect through a database outage, on a database of its own that the test takes away and brings
back: PostgreSQL stopped with pg_ctl and started again; SQLite's directory moved away (a volume gone), so no
connection can open the file. Meanwhile a known link keeps answering 302 with its landing URL from the terms in
memory (past their TTL), a link never loaded answers 503 with Retry-After, /healthz says what is degraded, and
every click answered during the outage is stored once after the database returns, those the buffer's bound
sent to the journal only included."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from dev.services import find_postgres_bindir, start_postgres
from server import piccolo_app
from server.app import create_app
from server.core import db
from server.core.settings import Settings
from server.tracking import cache
from server.tracking.tables import Click
from tests.conftest import migrate
from tests.tracking.factories import campaign_with_link, cookieless

pytestmark = pytest.mark.slow
DEADLINE = 60.0  # polled, never asserted as a timing
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
REDIS_DB = 9  # its own Redis database: campaign ids restart in this test's own database


@dataclass
class Outage:
    """A database of its own, and a way to take it away and bring it back."""

    url: str
    down: object
    up: object


def _as_postgres_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture
def outage(settings: Settings, tmp_path: Path) -> Iterator[Outage]:
    if settings.is_sqlite:
        home = tmp_path / "volume"
        home.mkdir()
        away = tmp_path / "volume-away"
        url = f"sqlite:///{home / 'affnet.sqlite3'}"
        migrate(url)
        yield Outage(url, down=lambda: home.rename(away), up=lambda: away.rename(home))
        if away.exists():
            away.rename(home)
        return
    if find_postgres_bindir() is None:
        pytest.skip("PostgreSQL is not available on this machine")
    data = tmp_path / "pg"
    service = start_postgres(data)
    ctl = [str(find_postgres_bindir() / "pg_ctl"), "-D", str(data / "db"), "-w", "-t", "60"]
    opts = (
        f"-p {service.port} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=200 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )

    def stop() -> None:
        subprocess.run(_as_postgres_user([*ctl, "-m", "fast", "stop"]), check=True, capture_output=True)  # noqa: S603

    def start() -> None:
        log = str(data / "postgres.log")
        subprocess.run(_as_postgres_user([*ctl, "-o", opts, "-l", log, "start"]), check=True, capture_output=True)  # noqa: S603

    try:
        url = service.url.rsplit("/", 1)[0] + "/postgres"
        migrate(url)
        yield Outage(url, down=stop, up=start)
    finally:
        service.stop()


@pytest.fixture
async def outage_app(outage: Outage, settings: Settings, monkeypatch) -> AsyncIterator:
    # Terms expire within the test rather than after 30 s, and a dead database is retried every second.
    monkeypatch.setattr(cache, "TTL", 0.5)
    monkeypatch.setattr(cache, "RETRY_INTERVAL", 1.0)
    redis_url = settings.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    await redis.aclose()
    # A small bound, so the backlog of the outage also goes through the journal only (buffer.py).
    own = replace(settings, database_url=outage.url, redis_url=redis_url, click_buffer_max_rows=15)
    shared_engine = db._engine  # the session's app's, if it runs: startup of this one rebinds the tables
    app = create_app(own)
    for hook in app.on_startup:
        await hook(app)
    try:
        yield app, own
    finally:
        try:
            for hook in app.on_shutdown:
                await hook(app)
        finally:
            if shared_engine is not None:
                piccolo_app.bind(shared_engine)


async def _until(check, what: str):
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    pytest.fail(f"not within {DEADLINE:.0f} s: {what}")


async def _stored(click_ids: set[str]) -> set[str]:
    try:
        rows = await Click.select(Click.click_id, Click.reason)
    except Exception:  # noqa: BLE001 - the database is still coming back: poll again
        return set()
    return {r["click_id"] for r in rows}


async def test_links_keep_redirecting_while_the_database_is_down_and_every_click_is_stored_after(
    outage: Outage, outage_app
):
    app, own = outage_app
    known = await campaign_with_link(own)
    never_clicked = await campaign_with_link(own, name="Autumn Boots")
    answered: list[str] = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50000)),
        base_url="http://t",
        cookies=cookieless(),  # another reader each time
    ) as http:

        async def click(i: int) -> httpx.Response:
            # Another browser each time: none of them is a duplicate of another.
            response = await http.get(f"/c/{known.code}?sub1=n{i}", headers={"user-agent": f"{BROWSER} b/{i}"})
            if response.status_code == 302:
                location = urlsplit(response.headers["location"])
                assert (location.hostname, location.path) == ("shop.example.com", "/boots")
                answered.append(parse_qs(location.query)["click_id"][0])
            return response

        assert (await click(0)).status_code == 302  # the link's terms are now in memory
        await _until(lambda: _stored(set(answered)), "the first click was stored")

        outage.down()  # --- the database goes away ---
        await asyncio.sleep(cache.TTL + 0.1)  # the terms in memory are past their TTL now
        statuses = [(await click(i)).status_code for i in range(1, 41)]
        assert statuses == [302] * 40, statuses

        gone = await http.get(f"/c/{never_clicked.code}", headers={"user-agent": BROWSER})
        assert gone.status_code == 503 and int(gone.headers["retry-after"]) >= 1
        assert "Try again in a moment" in gone.text

        await _until(lambda: _failing(app), "a click write failed")
        health = await http.get("/healthz")
        body = health.json()
        assert health.status_code == 200 and body["status"] == "degraded" and body["database"].startswith("error")
        assert body["degraded"][0].startswith("database: pages, logins, postbacks and the API fail")
        assert body["links"]["served_stale"] == 1 and body["clicks"]["failed_writes_in_a_row"] >= 1
        assert body["clicks"]["pending"] == 40 and body["clicks"]["journal_only"] == 25  # 15 in memory
        assert any(line.startswith("links: 1 links redirect") for line in body["degraded"]), body
        assert any(line.startswith("clicks: 40 answered clicks wait") for line in body["degraded"]), body
        statuses = [(await click(i)).status_code for i in range(41, 51)]  # still, after the failed writes
        assert statuses == [302] * 10, statuses

        outage.up()  # --- it is back ---
        everything = set(answered)
        assert len(everything) == 51
        await _until(lambda: _all_stored(everything), "every click answered during the outage was stored")
        assert (await click(51)).status_code == 302  # reloads the terms from the database
        body = (await http.get("/healthz")).json()
        assert body["status"] in {"ok", "degraded"} and body["links"]["served_stale"] == 0
        assert body["clicks"]["failed_writes_in_a_row"] == 0
        assert not [line for line in body["degraded"] if line.startswith(("links:", "clicks:"))], body
        fresh = await http.get(f"/c/{never_clicked.code}", headers={"user-agent": BROWSER})
        assert fresh.status_code == 302 and fresh.headers["location"].startswith("https://shop.example.com/")

    await app.state.click_buffer.flush()
    rows = await Click.select(Click.click_id, Click.reason).where(Click.link == known.link_id)
    ids = [r["click_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 52  # each stored once
    assert set(ids) == set(answered)
    # Classified once each, however often the batch was tried: different browsers, no caps: all valid.
    assert {r["reason"] for r in rows} == {"valid"}, rows


async def _failing(app) -> bool:
    return app.state.click_buffer.failing >= 1


async def _all_stored(click_ids: set[str]) -> bool:
    return click_ids <= await _stored(click_ids)
