"""Two server processes (two AdServers sharing one Redis and one database, as two processes on two
hosts would) give the answers one would: an offer's view counts once whichever process the beacon
reaches, the frequency cap and the views-per-network limit hold exactly, a batch classified again
(retried, or replayed from a dead process's journal) counts nothing twice, an offer's click counts
once, and what one process counted reaches the other's decisions within a sync."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from server.ads import offers
from server.ads.counting import PREFIX, NetworkWindows, impressions_key
from server.ads.decision import FREQUENCY_CAP_DAILY
from server.ads.process import AdServer
from server.ads.service import write_impressions
from server.ads.tables import Impression
from server.tracking.classify import Reason
from server.tracking.journal import Journal
from tests.ads.factories import BROWSER, ad_campaign, join, publisher, slot
from tests.conftest import BASE_URL

ORIGIN = "https://blog.example.org"


class Processes:
    """Two ad servers built as create_app builds one, not started: the tests flush and sync them."""

    def __init__(self, app, redis_url: str, journals: tuple[Journal | None, Journal | None] = (None, None)) -> None:
        ads = app.state.ads
        self.clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
        self.writes = 0
        self.fail_next_write = False

        async def writer(rows: list[tuple]) -> None:
            if self.fail_next_write:
                self.fail_next_write = False
                raise ConnectionError("the database went away")  # after the batch was classified
            self.writes += 1
            await write_impressions(rows)

        self.servers = [
            AdServer(
                base_url=BASE_URL,
                redis=client,
                offer_key=ads.offer_key,
                visitor_key=ads.decider.visitor_key,
                writer=writer,
                spend=ads.inventory.spend,
                journal=journal,
            )
            for client, journal in zip(self.clients, journals, strict=True)
        ]
        self.redis = self.clients[0]

    async def flush(self) -> None:
        await asyncio.gather(*(server.buffer.flush() for server in self.servers))

    async def close(self) -> None:
        for server in self.servers:
            await server.buffer.flush()
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def two(app, settings, clean) -> AsyncIterator[Processes]:
    processes = Processes(app, settings.redis_url)
    yield processes
    await processes.close()


async def shown(settings, **terms):
    """A publisher's slot with one campaign: (campaign, publisher, slot, link id)."""
    camp = await ad_campaign(settings, **terms)
    pub = await publisher(settings)
    link_id, _ = await join(pub, camp)
    return camp, pub, await slot(pub), link_id


def offer_for(app, camp, pub, s, link_id) -> tuple[str, str]:
    """A new offer of the campaign in the slot, as any process's decision makes one: (token, offer id)."""
    return offers.issue(
        app.state.ads.offer_key,
        slot_id=s["id"],
        creative_id=camp.creatives["300x250"],
        campaign_id=camp.campaign_id,
        link_id=link_id,
        publisher_id=pub.id,
        expires_at=int(time.time()) + 600,
    )


async def reasons() -> list[str]:
    return [r["reason"] for r in await Impression.select(Impression.reason).order_by(Impression.id)]


async def test_an_offers_view_counts_once_when_the_beacon_reaches_both_processes(app, settings, two):
    camp, pub, s, link_id = await shown(settings)
    tokens = [offer_for(app, camp, pub, s, link_id) for _ in range(3)]
    for token, _ in tokens:
        answers = await asyncio.gather(
            *(two.servers[i % 2].views.record(token, ip="198.51.100.7", user_agent=BROWSER) for i in range(20))
        )
        # Each process refuses its own replays at once, and cannot know of the other's view yet.
        assert sorted(a.status for a in answers) == [202, 202] + [409] * 18
    await two.flush()
    stored = await Impression.select(Impression.offer, Impression.reason).order_by(Impression.id)
    assert sorted(r["offer"] for r in stored) == sorted(offer_id for _, offer_id in tokens)
    assert {r["reason"] for r in stored} == {"valid"}
    # Counted once in the shared counters too: three valid views, not six.
    day = datetime.now(UTC).date().isoformat()
    assert int(await two.redis.get(impressions_key(camp.campaign_id, day))) == 3


async def test_the_frequency_cap_holds_exactly_across_processes(app, settings, two):
    camp, pub, s, link_id = await shown(settings)
    for round_ in range(3):  # views reach both processes, flushed in between, some at once
        for i in range(8):
            token, _ = offer_for(app, camp, pub, s, link_id)
            answer = await two.servers[i % 2].views.record(token, ip="198.51.100.7", user_agent=BROWSER)
            assert answer.status == 202
        if round_ < 2:
            await two.flush()
    await two.flush()
    stored = await reasons()
    assert len(stored) == 24
    assert stored.count("valid") == FREQUENCY_CAP_DAILY
    assert stored.count("frequency_capped") == 24 - FREQUENCY_CAP_DAILY
    # Each process learnt from its flushes: the visitor is over the cap for both, so neither
    # offers the campaign to them again.
    for server in two.servers:
        answer = await server.decider.decide(
            s["public_key"], origin=ORIGIN, referer=None, ip="198.51.100.7", user_agent=BROWSER
        )
        assert (answer.body["status"], answer.body["reason"]) == ("fallback", "no_ad")


async def test_views_per_network_are_limited_exactly_across_processes(app, settings, two):
    camp, pub, s, link_id = await shown(settings)
    for server in two.servers:
        server.views.network_rate = NetworkWindows(limit=7)
    # 20 visitors of one /24 (each under the frequency cap), half on each process: each process alone
    # sees 10 and would let 7 through; together they may let 7 through, and do.
    for i in range(20):
        token, _ = offer_for(app, camp, pub, s, link_id)
        answer = await two.servers[i % 2].views.record(token, ip=f"198.51.100.{i + 1}", user_agent=BROWSER)
        assert answer.status == 202
    await two.flush()
    stored = await reasons()
    assert (stored.count("valid"), stored.count("rate_limited")) == (7, 13)


async def test_a_batch_classified_again_counts_nothing_twice(app, settings, two):
    camp, pub, s, link_id = await shown(settings)
    first, second = two.servers
    for i in range(6):  # five views of one visitor, one of another
        token, _ = offer_for(app, camp, pub, s, link_id)
        await first.views.record(token, ip="198.51.100.7", user_agent=BROWSER + (" other" if i == 5 else ""))
    # The batch is classified, then the database refuses it: the buffer keeps the rows.
    two.fail_next_write = True
    with pytest.raises(ConnectionError):
        await first.buffer.flush()
    assert first.buffer.pending == 6 and await reasons() == []
    # Meanwhile the other process counts six views of the first visitor: five reach the cap.
    for _ in range(6):
        token, _ = offer_for(app, camp, pub, s, link_id)
        await second.views.record(token, ip="198.51.100.7", user_agent=BROWSER)
    await second.buffer.flush()
    assert await reasons() == ["valid"] * 5 + ["frequency_capped"]
    # Classified again, the first batch keeps its answers (it was counted first) and counts nothing twice.
    await first.buffer.flush()
    assert await reasons() == ["valid"] * 5 + ["frequency_capped"] + ["valid"] * 6
    day = datetime.now(UTC).date().isoformat()
    assert int(await two.redis.get(impressions_key(camp.campaign_id, day))) == FREQUENCY_CAP_DAILY + 1
    views = [int(await two.redis.get(k)) async for k in two.redis.scan_iter(f"{PREFIX}freq:{day}:*")]
    assert sorted(views) == [1, FREQUENCY_CAP_DAILY]


async def test_views_replayed_from_a_dead_processs_journal_keep_their_answers(app, settings, clean, tmp_path):
    """A process classified its batch (its claims are in Redis) and died before storing it: the
    process that replays its journal gets the same answers and counts nothing twice."""
    camp, pub, s, link_id = await shown(settings)
    live = Journal(tmp_path / "live")
    live.open()  # as the buffer's start opens it (no background flush here: the test flushes)
    dying = Processes(app, settings.redis_url, (live, None))
    first, other = dying.servers
    try:
        for _ in range(FREQUENCY_CAP_DAILY + 2):
            token, _ = offer_for(app, camp, pub, s, link_id)
            await first.views.record(token, ip="198.51.100.7", user_agent=BROWSER)
        dying.fail_next_write = True
        with pytest.raises(ConnectionError):
            await first.buffer.flush()
        dead = tmp_path / "dead"
        dead.mkdir()
        for n, segment in enumerate(live.segments(), start=1):
            shutil.copy(segment, dead / f"host.9.dead0001.{n:06d}.seg")
        # Meanwhile another process counts a view of the same visitor: the cap is already reached.
        token, _ = offer_for(app, camp, pub, s, link_id)
        await other.views.record(token, ip="198.51.100.7", user_agent=BROWSER)
        await other.buffer.flush()
        assert await reasons() == ["frequency_capped"]
        replaying = Processes(app, settings.redis_url, (Journal(dead), None))
        try:
            await replaying.servers[0].start()
            await replaying.servers[0].stop()
        finally:
            await replaying.close()
        assert list(dead.iterdir()) == []
        stored = await reasons()
        assert stored == ["frequency_capped"] + ["valid"] * FREQUENCY_CAP_DAILY + ["frequency_capped"] * 2
        day = datetime.now(UTC).date().isoformat()
        assert int(await dying.redis.get(impressions_key(camp.campaign_id, day))) == FREQUENCY_CAP_DAILY
        await first.buffer.flush()  # and the first process, had it lived, would store nothing more
        assert await reasons() == stored
        assert int(await dying.redis.get(impressions_key(camp.campaign_id, day))) == FREQUENCY_CAP_DAILY
    finally:
        live.close(committed=True)
        await dying.close()


async def test_an_offers_click_counts_once_across_processes(app, settings, two):
    camp, pub, s, link_id = await shown(settings)
    first, second = two.servers
    seen, _ = offer_for(app, camp, pub, s, link_id)
    unseen, _ = offer_for(app, camp, pub, s, link_id)
    assert (await first.views.record(seen, ip="198.51.100.7", user_agent=BROWSER)).status == 202
    await first.buffer.flush()
    # The click reaches the other process, which never saw the view: the view was counted all the same.
    assert await second.clicks.check(seen, link_id) == (None, s["id"])
    # A second click on the offer, on the process that saw the view: a replay.
    assert await first.clicks.check(seen, link_id) == (Reason.offer_replayed, s["id"])
    assert await second.clicks.check(seen, link_id) == (Reason.offer_replayed, s["id"])
    # An offer whose view no process counted.
    assert await first.clicks.check(unseen, link_id) == (Reason.not_viewed, s["id"])
    assert await second.clicks.check(unseen, link_id) == (Reason.offer_replayed, s["id"])


async def test_decisions_per_network_are_shared_within_a_sync(app, settings, two):
    camp, pub, s, link_id = await shown(settings)
    first, second = two.servers
    for server in two.servers:
        server.decider.network_rate = NetworkWindows(limit=5, shared=True)

    async def decide(server: AdServer, n: int) -> list[str]:
        answers = [
            await server.decider.decide(
                s["public_key"], origin=ORIGIN, referer=None, ip=f"198.51.100.{i + 1}", user_agent=BROWSER
            )
            for i in range(n)
        ]
        return [a.body.get("reason", a.body["status"]) for a in answers]

    assert await decide(first, 3) == ["ad"] * 3
    await first.sync()
    # The second process shares its first request of the network at its next sync, and learns the
    # first's three: one more, and the network is over its limit for both.
    assert await decide(second, 1) == ["ad"]
    await second.sync()
    assert await decide(second, 2) == ["ad", "rate_limited"]
    await second.sync()
    await first.sync()  # the network is past half its limit here: watched, read back
    assert await decide(first, 1) == ["rate_limited"]
    assert await decide(second, 1) == ["rate_limited"]


async def test_impressions_counted_by_one_process_stop_the_other_within_a_sync(app, settings, two):
    # 10.00 per thousand: one cent per impression; a total budget of three cents takes three.
    camp, pub, s, link_id = await shown(settings, cpm="10.00", cpm_publisher="8.00", total_budget="0.03")
    first, second = two.servers

    async def decide(server: AdServer) -> str:
        answer = await server.decider.decide(
            s["public_key"], origin=ORIGIN, referer=None, ip="203.0.113.50", user_agent=BROWSER
        )
        return answer.body["status"]

    assert await decide(second) == "ad"  # the second process has loaded the campaign: nothing spent
    for i in range(3):
        token, _ = offer_for(app, camp, pub, s, link_id)
        await first.views.record(token, ip=f"198.51.100.{i + 1}", user_agent=BROWSER)
    assert await decide(first) == "fallback"  # its own views: at once
    await first.buffer.flush()
    assert await decide(second) == "ad"  # stale until its next sync (every SYNC_INTERVAL)
    await second.sync()
    assert await decide(second) == "fallback"
