"""The flush's classification in Redis (server/tracking/counting.py): counters seeded from the stored
clicks when Redis has none, and a batch classified again (a retried write, a replayed journal)
counted once."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from redis.asyncio import Redis

from server.campaigns import service as campaigns
from server.core import batch_counts, clock
from server.reports import rollup
from server.tracking import service
from server.tracking.counting import PREFIX
from server.tracking.tables import Click
from tests.tracking.factories import campaign_form, campaign_with_link
from tests.tracking.test_redirect import click


async def _reasons() -> list[str]:
    return [r["reason"] for r in await Click.select(Click.reason).order_by(Click.id)]


async def _visitors(new_client, code: str, first: int, n: int) -> None:
    for i in range(first, first + n):
        visitor = new_client()
        visitor._transport.client = (f"192.0.{i}.1", 1000)
        await click(visitor, code)


async def test_a_redis_that_lost_its_counters_is_seeded_from_the_stored_clicks(app, new_client, settings):
    s = await campaign_with_link(settings, cap_clicks_daily=3)
    await _visitors(new_client, s.code, 0, 2)
    await app.state.click_buffer.flush()
    redis: Redis = app.state.redis
    assert int(await redis.get(f"{PREFIX}{s.campaign_id}:total")) == 2
    await redis.flushdb()  # Redis restarted without its data
    app.state.redirector.reset()

    await _visitors(new_client, s.code, 2, 3)
    await app.state.click_buffer.flush()
    # Seeded with the 2 stored valid clicks, so only one more fits under the cap of 3.
    assert await _reasons() == ["valid", "valid", "valid", "over_cap", "over_cap"]
    assert int(await redis.get(f"{PREFIX}{s.campaign_id}:total")) == 3


async def test_a_batch_classified_twice_is_counted_once(app, new_client, settings):
    s = await campaign_with_link(settings, cap_clicks_daily=2)
    await _visitors(new_client, s.code, 0, 3)
    buffer, counter = app.state.click_buffer, app.state.redirector.counter
    rows = list(buffer._rows)  # what the next flush will classify
    first = await counter.classify(rows)
    again = await counter.classify(rows)  # as after a failed database write, or a journal replay
    assert [row[-3] for row in first] == [row[-3] for row in again] == ["valid", "valid", "over_cap"]
    await buffer.flush()  # and a third time, by the writer itself
    assert await _reasons() == ["valid", "valid", "over_cap"]
    assert int(await app.state.redis.get(f"{PREFIX}{s.campaign_id}:total")) == 2


async def test_a_total_budget_counter_is_seeded_from_the_rollups_once_raw_clicks_are_gone(app, new_client, settings):
    # 1.00 a click, a total budget of 3.00: two clicks counted long ago, only their rollup is left.
    s = await campaign_with_link(
        settings, goal_0_name="click", goal_0_model="cpc", goal_0_advertiser="1.00", total_budget="3.00"
    )
    await _visitors(new_client, s.code, 0, 2)
    await app.state.click_buffer.flush()
    await rollup.roll_up(clock.now() + timedelta(hours=2))
    await Click.delete().where(Click.campaign == s.campaign_id)  # as retention drops old raw clicks
    await app.state.redis.flushdb()  # and Redis lost its counters
    app.state.redirector.reset()

    await _visitors(new_client, s.code, 2, 3)
    await app.state.click_buffer.flush()
    assert await _reasons() == ["valid", "over_budget", "over_budget"]
    assert int(await app.state.redis.get(f"{PREFIX}{s.campaign_id}:total")) == 3


async def test_a_raised_cap_counts_from_the_next_flush(app, new_client, settings):
    """The flush reads a campaign's caps once, and again once the campaign changed."""
    s = await campaign_with_link(settings, cap_clicks_daily=1)
    await _visitors(new_client, s.code, 0, 2)
    await app.state.click_buffer.flush()
    assert await _reasons() == ["valid", "over_cap"]

    await campaigns.update_campaign(s.advertiser, s.campaign_id, campaign_form(cap_clicks_daily=3))
    await _visitors(new_client, s.code, 2, 3)
    await app.state.click_buffer.flush()
    assert await _reasons() == ["valid", "over_cap", "valid", "valid", "over_cap"]


async def test_a_batch_larger_than_one_redis_call_is_settled_in_order_and_once_when_retried(
    app, new_client, settings, monkeypatch
):
    """Redirector.store settles a batch ROWS_PER_CALL clicks per Redis call (3 here): a cap and a
    visitor's duplicates across the calls' borders come out as in one call; a database write that
    fails after the batch was settled is retried, and nothing is counted twice."""
    monkeypatch.setattr(batch_counts, "ROWS_PER_CALL", 3)
    s = await campaign_with_link(settings, cap_clicks_daily=4)
    repeat = new_client()
    repeat._transport.client = ("198.51.100.20", 1000)
    await click(repeat, s.code)
    await _visitors(new_client, s.code, 0, 2)
    await click(repeat, s.code)
    await click(repeat, s.code)
    await _visitors(new_client, s.code, 2, 3)
    failed = []
    write = service.write_clicks

    async def fails_once(rows: list[tuple]) -> None:
        if not failed:
            failed.append(len(rows))
            raise ConnectionError("the database went away")
        await write(rows)

    monkeypatch.setattr(service, "write_clicks", fails_once)
    buffer = app.state.click_buffer
    with contextlib.suppress(ConnectionError):
        await buffer.flush()
    await buffer.flush()
    assert failed == [8]
    assert await _reasons() == ["valid", "valid", "valid", "duplicate", "duplicate", "valid", "over_cap", "over_cap"]
    assert int(await app.state.redis.get(f"{PREFIX}{s.campaign_id}:total")) == 4
