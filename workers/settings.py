"""arq WorkerSettings: the jobs, their cron schedule, and the worker's database lifecycle."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.connections import RedisSettings

from server import piccolo_app
from server.core import clock, db
from server.core.settings import load_settings
from server.invoicing import identity as invoicing_identity
from server.mail import outbox as mail_outbox
from server.webhooks import delivery as webhook_delivery
from workers import cron_lock
from workers.jobs.ads import settle_impression_earnings
from workers.jobs.billing import enforce_auto_pause, process_stripe_event, sweep_stripe_events
from workers.jobs.conversions import join_reconcile_conversions, reconcile_conversions
from workers.jobs.digests import send_conversions_digests, send_review_digests
from workers.jobs.documents import render_documents
from workers.jobs.earnings import settle_click_earnings
from workers.jobs.ledger import check_ledger
from workers.jobs.mail import deliver_mail
from workers.jobs.partitions import create_partitions_ahead, drop_expired_raw_events
from workers.jobs.payouts import execute_payout_batch, join_payout_batch, prepare_payouts, sweep_payout_batches
from workers.jobs.reports import rebuild_previous_day, roll_up_reports
from workers.jobs.sessions import purge_expired_sessions
from workers.jobs.statements import issue_batch_statements, issue_statements
from workers.jobs.webhooks import deliver_webhooks


async def startup(ctx: dict[str, Any]) -> None:
    settings = load_settings()
    ctx["settings"] = settings
    ctx.setdefault("clock", clock.now)
    mail_outbox.configure(settings)
    webhook_delivery.configure(settings)
    invoicing_identity.configure(settings)
    engine = piccolo_app.bind(db.engine_for(settings.database_url))
    await db.start(engine)
    ctx["engine"] = engine


async def shutdown(ctx: dict[str, Any]) -> None:
    if "engine" in ctx:
        await db.stop(ctx["engine"])


FUNCTIONS = [
    purge_expired_sessions,
    reconcile_conversions,
    settle_click_earnings,
    settle_impression_earnings,
    process_stripe_event,
    sweep_stripe_events,
    enforce_auto_pause,
    prepare_payouts,
    execute_payout_batch,
    sweep_payout_batches,
    roll_up_reports,
    rebuild_previous_day,
    check_ledger,
    create_partitions_ahead,
    drop_expired_raw_events,
    join_payout_batch,
    issue_statements,
    issue_batch_statements,
    join_reconcile_conversions,
    deliver_mail,
    deliver_webhooks,
    send_review_digests,
    send_conversions_digests,
    render_documents,
]
CRON_JOBS = [
    # Every ten seconds: the outbox's due messages go out (and failed tries are retried when due).
    cron(deliver_mail, second=set(range(0, 60, 10)), run_at_startup=True, unique=True),
    # Every ten seconds: webhooks and publisher postbacks due go out (server/webhooks/delivery.py).
    cron(deliver_webhooks, second=set(range(0, 60, 10)), run_at_startup=True, unique=True),
    # Every 10 minutes, and once when the worker starts.
    cron(purge_expired_sessions, minute=set(range(0, 60, 10)), run_at_startup=True, unique=True),
    # Every five minutes: conversions whose hold ended are approved, earnings released.
    cron(reconcile_conversions, minute=set(range(0, 60, 5)), run_at_startup=True, unique=True),
    # Every five minutes: closed hours of CPC clicks are charged, waiting ones retried, holds released.
    cron(settle_click_earnings, minute=set(range(0, 60, 5)), run_at_startup=True, unique=True),
    # Every five minutes: closed hours of CPM impressions are charged, waiting ones retried, holds released.
    cron(settle_impression_earnings, minute=set(range(0, 60, 5)), run_at_startup=True, unique=True),
    # Every minute: Stripe events whose job was lost or failed are processed (idempotent).
    cron(sweep_stripe_events, run_at_startup=True, unique=True),
    # Every minute: documents issued since get their PDF, rendered once and stored (server/invoicing/render.py).
    cron(render_documents, run_at_startup=True, unique=True),
    # Every five minutes: campaigns of advertisers below their auto-pause threshold are paused.
    cron(enforce_auto_pause, minute=set(range(0, 60, 5)), run_at_startup=True, unique=True),
    # Every quarter of an hour: a period whose cut-off passed gets its batches (once).
    cron(prepare_payouts, minute={1, 16, 31, 46}, run_at_startup=True, unique=True),
    # Every five minutes: approved batches whose job was lost, and batches a crash left executing, are paid.
    cron(sweep_payout_batches, minute=set(range(2, 60, 5)), run_at_startup=True, unique=True),
    # Every minute: paid payout lines get their statement and self-billed invoice (server/payouts/statements.py).
    cron(issue_statements, run_at_startup=True, unique=True),
    # Every five minutes: the reports' hourly rollups catch up with new and changed events.
    cron(roll_up_reports, minute=set(range(3, 60, 5)), run_at_startup=True, unique=True),
    # Nightly: yesterday (UTC) is rebuilt from the raw events, late events included.
    cron(rebuild_previous_day, hour={0}, minute={20}, unique=True),
    # Nightly: every ledger invariant is checked and the result recorded for the finance dashboard.
    cron(check_ledger, hour={2}, minute={40}, unique=True),
    # Hourly, and at start: click and impression partitions for the days ahead (PostgreSQL).
    cron(create_partitions_ahead, minute={7}, run_at_startup=True, unique=True),
    # Nightly, after the rebuild of yesterday: raw events past retention go, rollups stay.
    cron(drop_expired_raw_events, hour={1}, minute={10}, unique=True),
    # Daily, in the European morning: advertisers' review digest, then publishers' conversions digest
    # (each person at most one of each a UTC day, only when there is something to tell).
    cron(send_review_digests, hour={7}, minute={5}, unique=True),
    cron(send_conversions_digests, hour={7}, minute={10}, unique=True),
]
# Each cron job runs under a Redis lock, so two workers never run it at once (workers/cron_lock.py).
CRON_JOBS = [cron_lock.locked(job) for job in CRON_JOBS]


def redis_settings() -> RedisSettings:
    return RedisSettings.from_dsn(load_settings().redis_url)


class WorkerSettings:
    functions = FUNCTIONS
    cron_jobs = CRON_JOBS
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = redis_settings()
    # /healthz reports the worker as seen while this key is fresh.
    health_check_interval = 30
    max_jobs = 10
    job_timeout = 300
