"""Raw events' lifecycle: day partitions made ahead on PostgreSQL (idempotent, safe with two
workers at once, rows moved out of DEFAULT), events stored exactly once in them, and retention
that drops raw clicks and impressions past its floor while the rollups and reports stay."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from server.campaigns.tables import Campaign
from server.conversions.tables import Conversion
from server.core import db, partitions
from server.earnings import cpm
from server.reports import publisher as publisher_report
from server.reports import retention, rollup
from server.reports.period import Period
from server.reports.tables import ConversionHour, ConvertedClick, RollupCursor, TrafficHour
from server.tracking import service as tracking
from server.tracking.tables import Click
from tests.reports.world import BASE, Event, build
from tests.worker_burst import run_burst

NOW = BASE + timedelta(days=100)  # 2027-02-09: 90 days of retention keep 2026-11-11 on


async def _partition_of(table: str, key: str, value: str) -> str:
    rows = await Click.raw(f"SELECT tableoid::regclass::text AS part FROM {table} WHERE {key} = {{}}", value)  # noqa: S608
    return rows[0]["part"]


async def _days(table: str) -> set[date]:
    async with db.transaction() as txn:
        return set(await partitions.days_of(txn.connection, table))


def _pg_only() -> None:
    if db.is_sqlite():
        pytest.skip("SQLite keeps one plain table per event")


async def test_partitions_are_made_ahead_once_even_by_two_workers_at_once(clean):
    _pg_only()
    today = date(2027, 3, 1)
    first, second = await asyncio.gather(partitions.create_ahead(today), partitions.create_ahead(today))
    wanted = {today + timedelta(days=n) for n in range(-1, partitions.AHEAD_DAYS + 1)}
    made = sorted(first.created + second.created)
    assert made == sorted(f"{t}_p{d:%Y%m%d}" for t in partitions.PARTITIONED for d in wanted)
    for table in partitions.PARTITIONED:
        assert wanted <= await _days(table)
    again = await partitions.create_ahead(today)
    assert again.created == [] and again.moved == 0


async def test_a_run_that_finds_the_lock_busy_gives_up_at_once_and_the_next_one_does_the_work(
    clean, settings, monkeypatch
):
    _pg_only()
    import asyncpg

    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    other = await asyncpg.connect(settings.database_url)
    try:
        await other.execute("SELECT pg_advisory_lock($1)", partitions._LOCK)  # another worker's run
        busy = await partitions.create_ahead(date(2028, 6, 1))
        assert busy.skipped and busy.created == []
        assert date(2028, 6, 1) not in await _days("click")
    finally:
        await other.close()
    done = await partitions.create_ahead(date(2028, 6, 1))
    assert not done.skipped and "click_p20280601" in done.created


async def test_a_click_lands_in_its_days_partition_and_a_replayed_batch_is_stored_once(clean, settings):
    world = await build(settings)
    pub = world.publishers[0]
    today = NOW.date()
    await partitions.create_ahead(today)
    await world.add([Event("click", pub, world.cpa_campaign, NOW + timedelta(hours=3))])
    click_id = world.events[-1].__dict__["click_id"]
    [row] = await Click.select().where(Click.click_id == click_id)
    # The writer's replay of the very batch (a retry after an unclear failure) adds nothing.
    replay = tuple(row[c] for c in tracking.CLICK_COLUMNS)
    await tracking.write_clicks([replay, replay])
    assert await Click.count().where(Click.click_id == click_id) == 1
    if not db.is_sqlite():
        assert await _partition_of("click", "click_id", click_id) == f"click_p{today:%Y%m%d}"


async def test_a_second_view_of_one_offer_counts_once_whenever_it_comes(clean, settings):
    world = await build(settings)
    pub = world.publishers[0]
    await world.add([Event("impression", pub, world.cpm_campaign, NOW)])
    from server.ads.service import IMPRESSION_COLUMNS, write_impressions
    from server.ads.tables import Impression

    [row] = await Impression.select()
    later = {**row, "viewed_at": row["viewed_at"] + timedelta(minutes=20)}  # a second beacon, claims lost
    await write_impressions([tuple(later[c] for c in IMPRESSION_COLUMNS)])
    assert await Impression.count() == 1


async def test_rows_waiting_in_default_move_into_the_day_made_for_them(clean, settings):
    _pg_only()
    world = await build(settings)
    pub = world.publishers[0]
    day = date(2031, 1, 15)  # no partition: the click waits in DEFAULT, and is not refused
    at = BASE.replace(year=2031, month=1, day=15, hour=9)
    await world.add([Event("click", pub, world.cpa_campaign, at), Event("impression", pub, world.cpm_campaign, at)])
    click_id = world.events[0].__dict__["click_id"]
    assert await _partition_of("click", "click_id", click_id) == "click_default"
    changed = await partitions.create_ahead(NOW.date())
    assert changed.moved == 2 and {"click_p20310115", "impression_p20310115"} <= set(changed.created)
    assert await _partition_of("click", "click_id", click_id) == "click_p20310115"
    assert await Click.raw("SELECT COUNT(*) AS n FROM click_default") == [{"n": 0}]
    assert day in await _days("impression")
    # The moved day keeps its unique offer: a second view of the offer is still refused.
    assert (await Click.raw("SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname = 'impression_p20310115_offer'"))[0][
        "n"
    ] == 1


async def _rollups() -> tuple[list, list]:
    traffic = await TrafficHour.select()
    conversions = await ConversionHour.select()

    def key(rows: list) -> list:
        return sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "id")) for r in rows)

    return key(traffic), key(conversions)


async def _report(publisher_id: int) -> tuple:
    report = await publisher_report.report(publisher_id, Period(BASE.date(), NOW.date(), "UTC"))
    return report.figures, [(t.title, t.rows) for t in report.tables]


async def _world_with_history(settings):
    world = await build(settings)
    pub = world.publishers[0]
    await partitions.create_ahead(BASE.date())  # PostgreSQL: the old days have partitions of their own
    old, kept = BASE + timedelta(hours=10), BASE + timedelta(days=40, hours=10)
    await world.add(
        [Event("click", pub, world.cpa_campaign, old + timedelta(minutes=m), sub1="a") for m in range(4)]
        + [Event("impression", pub, world.cpm_campaign, old + timedelta(minutes=m)) for m in range(3)]
        + [Event("click", pub, world.cpa_campaign, kept + timedelta(minutes=m), sub1="b") for m in range(2)]
        + [
            Event("conversion", pub, world.cpa_campaign, old, sub1="s1", country="DE", status="approved", price=500),
        ]
    )
    await rollup.roll_up(NOW)
    return world, pub


async def test_retention_drops_old_raw_events_and_keeps_rollups_and_reports(clean, settings):
    world, pub = await _world_with_history(settings)
    rollups, report = await _rollups(), await _report(pub)

    # The CPM campaign's old hours are not priced yet: their day is held back, nothing goes.
    held = await retention.drop_raw_events(NOW, 90)
    assert held.floor == BASE and held.limits["earnings"] == BASE
    assert await Click.count() == 7 and held.deleted == 0
    assert all(name[-8:] < f"{BASE:%Y%m%d}" for name in held.dropped)  # only empty days before the floor

    await cpm.run(NOW)  # priced (paid or waiting for funds): the raw views are no longer needed
    done = await retention.drop_raw_events(NOW, 90)
    floor = BASE + timedelta(days=10)
    assert done.floor == floor and done.limits["retention"] == floor
    assert await Click.count() == 2  # the 5 clicks of 2026-11-01 went, the 2 of 2026-12-11 stay
    from server.ads.tables import Impression

    assert await Impression.count() == 0
    if db.is_sqlite():
        assert done.deleted == 8 and done.dropped == []
    else:  # whole days dropped, and only days before the floor
        assert {"click_p20261101", "impression_p20261101"} <= set(done.dropped) and done.deleted == 0
        assert all(name[-8:] < f"{floor:%Y%m%d}" for name in done.dropped)
    assert done.kept_conversions == 1
    assert await rollup.raw_floor() == floor

    # The rollups and the reports read from them are as they were, even rebuilt from the raw
    # events that are left: hours before the floor are never rebuilt.
    assert await _rollups() == rollups and await _report(pub) == report
    await rollup.rebuild_all()
    await rollup.rebuild_day(BASE)
    assert await _rollups() == rollups and await _report(pub) == report

    # An old conversion reversed later keeps its click's sub-ID and country in its rollup.
    await Conversion.update({Conversion.status: "reversed"}).where(Conversion.campaign == world.cpa_campaign)
    await rollup.roll_up(NOW + timedelta(minutes=5))
    [row] = await ConversionHour.select().where(ConversionHour.publisher == pub)
    assert (row["sub1"], row["country"], row["status"], row["conversions"]) == ("s1", "DE", "reversed", 1)
    assert await ConvertedClick.count() == 1


async def test_retention_waits_for_rollups_and_open_attribution_windows(clean, settings):
    world, pub = await _world_with_history(settings)
    await cpm.run(NOW)
    await RollupCursor.delete(force=True)  # never rolled up: nothing may go
    assert (await retention.drop_raw_events(NOW, 90)).floor is None
    await rollup.roll_up(NOW)
    # A live campaign that counts conversions 120 days after the click holds 121 days back.
    await Campaign.update({Campaign.attribution_window_days: 120}).where(Campaign.id == world.cpa_campaign)
    held = await retention.drop_raw_events(NOW, 90)
    assert held.limits["attribution"] == NOW - timedelta(days=121) and held.floor == NOW - timedelta(days=121)
    assert await Click.count() == 7
    await Campaign.update({Campaign.status: "ended"}).where(Campaign.id == world.cpa_campaign)
    assert (await retention.drop_raw_events(NOW, 90)).floor == BASE + timedelta(days=10)
    assert await Click.count() == 2
    assert (await retention.drop_raw_events(NOW, 0)).floor is None  # 0 keeps everything


async def test_sqlite_deletes_old_events_in_batches(clean, settings, monkeypatch):
    if not db.is_sqlite():
        pytest.skip("PostgreSQL drops whole day partitions")
    world, pub = await _world_with_history(settings)
    await cpm.run(NOW)
    statements: list[str] = []
    raw = RollupCursor.raw

    def counting(sql: str, *args):
        if sql.startswith("DELETE FROM click") or sql.startswith("DELETE FROM impression"):
            statements.append(sql.split()[2])
        return raw(sql, *args)

    monkeypatch.setattr(retention, "DELETE_BATCH", 2)
    monkeypatch.setattr(RollupCursor, "raw", counting)
    done = await retention.drop_raw_events(NOW, 90)
    # 5 clicks in batches of 2 (2, 2, 1) and 3 views (2, 1), each batch its own transaction.
    assert done.deleted == 8 and statements == ["click"] * 3 + ["impression"] * 2


async def test_the_worker_runs_the_partition_and_retention_jobs(clean, settings):
    world, pub = await _world_with_history(settings)
    await cpm.run(NOW)
    made, retained = await run_burst(
        settings, {"clock": lambda: NOW, "settings": settings}, "create_partitions_ahead", "drop_expired_raw_events"
    )
    assert retained["floor"] == BASE + timedelta(days=10) and await Click.count() == 2
    if not db.is_sqlite():
        assert NOW.date() + timedelta(days=partitions.AHEAD_DAYS) in await _days("click")
    else:
        assert made["created"] == []


def test_partitions_are_made_hourly_and_retention_runs_nightly():
    from workers import settings as worker_settings

    jobs = {j.name: j for j in worker_settings.WorkerSettings.cron_jobs}
    ahead, drop = jobs["cron:create_partitions_ahead"], jobs["cron:drop_expired_raw_events"]
    assert ahead.run_at_startup and ahead.unique and ahead.minute == {7}
    assert drop.unique and (drop.hour, drop.minute) == ({1}, {10})
