"""The link cache through a database outage: expired terms are served stale while their reload fails, the
database is asked again at most every RETRY_INTERVAL per code, a code with no terms in memory gets a 503
(ServiceUnavailable) rather than an error, and a campaign's change is never undone by stale terms."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from server.core.errors import ServiceUnavailable
from server.tracking import cache
from server.tracking.cache import RETRY_INTERVAL, TTL, LinkCache


@dataclass(frozen=True)
class Terms:
    campaign_id: int
    landing_url: str


class Database:
    """A loader that can be told to refuse (connection refused) or to hang."""

    def __init__(self) -> None:
        self.terms = {"abc": Terms(1, "https://shop.example.com/v1"), "xyz": Terms(2, "https://other.example/")}
        self.calls: list[str] = []
        self.down = False
        self.hang: asyncio.Event | None = None

    async def load(self, code: str) -> Terms | None:
        self.calls.append(code)
        if self.hang is not None:
            await self.hang.wait()
        if self.down:
            raise ConnectionRefusedError("connection refused")
        return self.terms.get(code)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts():
    database, clock = Database(), Clock()
    return database, clock, LinkCache(database.load, clock=clock)


async def test_expired_terms_are_served_stale_while_the_database_is_down_and_reloaded_when_it_returns(parts):
    database, clock, links = parts
    assert (await links.get("abc")).landing_url.endswith("/v1")
    database.down = True
    clock.now += TTL + 1
    for _ in range(50):
        assert (await links.get("abc")).landing_url.endswith("/v1")
    assert database.calls == ["abc", "abc"]  # one failed reload for 50 requests
    assert links.stale() == (1, 0.0) and links.failed_loads == 1

    clock.now += RETRY_INTERVAL + 0.1  # the next attempt, still down
    assert (await links.get("abc")).landing_url.endswith("/v1")
    assert database.calls == ["abc"] * 3
    assert links.stale() == (1, pytest.approx(RETRY_INTERVAL + 0.1))

    database.down = False  # --- back, with new terms ---
    database.terms["abc"] = Terms(1, "https://shop.example.com/v2")
    clock.now += RETRY_INTERVAL + 0.1
    assert (await links.get("abc")).landing_url.endswith("/v2")
    assert links.stale() == (0, 0.0)


async def test_a_code_never_loaded_gets_a_503_and_the_database_is_not_asked_per_request(parts):
    database, clock, links = parts
    database.down = True
    for _ in range(20):
        with pytest.raises(ServiceUnavailable) as caught:
            await links.get("xyz")
    assert caught.value.status_code == 503 and caught.value.retry_after >= 1
    assert "try again in a moment" in caught.value.message
    assert database.calls == ["xyz"]
    clock.now += RETRY_INTERVAL + 0.1
    with pytest.raises(ServiceUnavailable):
        await links.get("xyz")
    assert database.calls == ["xyz", "xyz"]
    database.down = False
    clock.now += RETRY_INTERVAL + 0.1
    assert (await links.get("xyz")).campaign_id == 2


async def test_an_unknown_code_is_not_a_404_while_the_database_is_down(parts):
    database, clock, links = parts
    assert await links.get("nope") is None  # known missing, for MISSING_TTL
    database.down = True
    clock.now += cache.MISSING_TTL + 1
    with pytest.raises(ServiceUnavailable):
        await links.get("nope")  # it may have been created since: not "does not exist"


async def test_a_campaign_dropped_by_a_change_is_never_served_from_stale_terms(parts):
    database, clock, links = parts
    await links.get("abc")
    database.down = True
    links.drop_campaign(1)  # paused, say: the news arrived, the database then went away
    with pytest.raises(ServiceUnavailable):
        await links.get("abc")
    clock.now += RETRY_INTERVAL + 0.1
    with pytest.raises(ServiceUnavailable):
        await links.get("abc")
    assert database.calls == ["abc"] * 3


async def test_a_hanging_database_costs_one_request_a_short_wait_and_the_others_none(parts, monkeypatch):
    monkeypatch.setattr(cache, "STALE_WAIT", 0.05)
    database, clock, links = parts
    await links.get("abc")
    database.hang = asyncio.Event()
    clock.now += TTL + 1
    first = asyncio.create_task(links.get("abc"))
    await asyncio.sleep(0)
    # Others asking meanwhile get the stale terms at once, and start no load of their own.
    assert (await links.get("abc")).landing_url.endswith("/v1")
    assert (await first).landing_url.endswith("/v1")  # after STALE_WAIT, not after the hang
    assert database.calls == ["abc", "abc"]
    database.down = True
    database.hang.set()  # the load finally fails
    await asyncio.sleep(0.01)
    assert links.stale()[0] == 1 and links.failed_loads == 1


async def test_load_failures_are_logged_once_per_interval_with_a_count(parts, caplog):
    database, clock, links = parts
    await links.get("abc")
    database.down = True
    with caplog.at_level("ERROR", logger="affnet.tracking"):
        for _ in range(10):
            clock.now += TTL + 1
            await links.get("abc")
    lines = [r for r in caplog.records if r.name == "affnet.tracking"]
    assert len(lines) == 1 and lines[0].exc_info is not None
    assert links.failed_loads == 10
