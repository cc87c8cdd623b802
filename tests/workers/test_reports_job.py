"""The arq worker, on a real Redis, keeps the reports' rollups up to date on its schedule."""

from __future__ import annotations

from datetime import timedelta

from server.reports.tables import TrafficHour
from tests.reports.world import BASE, Event, build
from tests.worker_burst import run_burst
from workers import settings as worker_settings


async def _clicks(publisher: int) -> int:
    rows = await TrafficHour.select(TrafficHour.clicks).where(TrafficHour.publisher == publisher)
    return sum(r["clicks"] for r in rows)


async def test_the_worker_rolls_up_new_clicks_and_rebuilds_yesterday(clean, settings):
    world = await build(settings)
    pub = world.publishers[0]
    await world.add([Event("click", pub, world.cpa_campaign, BASE + timedelta(minutes=m)) for m in range(5)])
    [first] = await run_burst(settings, {"clock": lambda: BASE + timedelta(minutes=7)}, "roll_up_reports")
    assert first["traffic_hours"] >= 1 and await _clicks(pub) == 5
    [again] = await run_burst(settings, {"clock": lambda: BASE + timedelta(minutes=12)}, "roll_up_reports")
    assert again["traffic_hours"] >= 1 and await _clicks(pub) == 5  # the same hour rebuilt: no double count

    # Clicks written a day late (a buffer that could not reach the database) into an hour the
    # incremental runs have passed: the nightly rebuild of that day counts them.
    await run_burst(settings, {"clock": lambda: BASE + timedelta(hours=30)}, "roll_up_reports")
    await world.add([Event("click", pub, world.cpa_campaign, BASE + timedelta(hours=20, minutes=m)) for m in range(3)])
    await run_burst(settings, {"clock": lambda: BASE + timedelta(hours=30, minutes=5)}, "roll_up_reports")
    assert await _clicks(pub) == 5
    [nightly] = await run_burst(
        settings, {"clock": lambda: BASE + timedelta(days=1, minutes=20)}, "rebuild_previous_day"
    )
    assert nightly["traffic_hours"] == 24 and await _clicks(pub) == 8


def test_the_rollups_run_every_five_minutes_and_yesterday_is_rebuilt_nightly():
    jobs = {j.name: j for j in worker_settings.WorkerSettings.cron_jobs}
    incremental, nightly = jobs["cron:roll_up_reports"], jobs["cron:rebuild_previous_day"]
    assert incremental.run_at_startup and incremental.unique and incremental.minute == set(range(3, 60, 5))
    assert nightly.unique and (nightly.hour, nightly.minute) == ({0}, {20})
