"""The arq worker, on a real Redis, charges closed hours of CPC clicks on its schedule, with its clock."""

from __future__ import annotations

from datetime import timedelta

from server.earnings.tables import ClickEarning
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from tests.earnings.factories import NOW, clicks, cpc_campaign, fund, spread
from tests.worker_burst import run_burst
from workers import settings as worker_settings


async def run_job(settings, clock) -> dict:
    """Enqueue the job and let a burst worker with the real job functions run it."""
    [result] = await run_burst(settings, {"clock": clock}, "settle_click_earnings")
    return result


async def test_the_worker_charges_closed_hours_by_its_clock_and_releases_after_the_hold(clean, settings):
    setup = await cpc_campaign(settings, price="0.50", payout="0.40", hold_days=1)
    await fund(setup, 10_000)
    await clicks(setup, spread(10, 4) + spread(12, 1))  # 12:00 is still open at NOW

    first = await run_job(settings, lambda: NOW)
    assert (first["priced"], first["charged"], first["released"], first["waiting"]) == (1, 1, 0, 0)
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 10_000 - 200
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 160

    # The same moment again changes nothing.
    again = await run_job(settings, lambda: NOW)
    assert (again["priced"], again["charged"], again["released"]) == (0, 0, 0)
    assert await ClickEarning.count() == 1

    # A day and a bit later: the noon hour is charged, hour 10's hold has ended.
    later = await run_job(settings, lambda: NOW + timedelta(days=1))
    assert (later["priced"], later["charged"], later["released"]) == (1, 1, 1)
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 160
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 40
    assert await ledger.check() == []


def test_the_job_runs_every_five_minutes_and_at_startup():
    job = next(j for j in worker_settings.WorkerSettings.cron_jobs if j.name == "cron:settle_click_earnings")
    assert job.run_at_startup and job.unique and job.minute == set(range(0, 60, 5))
