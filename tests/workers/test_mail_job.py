"""The arq worker delivers the outbox on its schedule: two workers running the job at once send each
message once (each claims different rows), over a real SMTP server."""

from __future__ import annotations

import asyncio

from server.core import clock, db
from server.mail import outbox
from server.mail.tables import MailOutbox, OutboxStatus
from tests.worker_burst import run_burst
from workers import settings as worker_settings
from workers.jobs.mail import deliver_mail


def test_the_delivery_job_is_scheduled_every_ten_seconds():
    [job] = [c for c in worker_settings.CRON_JOBS if c.name.endswith("deliver_mail")]
    assert job.second == set(range(0, 60, 10)) and job.unique and job.run_at_startup


async def _write(count: int) -> list[int]:
    ids = []
    async with db.transaction():
        for n in range(count):
            ids.append(
                await outbox.enqueue(
                    "verify_email", outbox.Recipient(email=f"reader{n}@example.com"), {"verify_url": f"http://x/{n}"}
                )
            )
    return ids


async def test_the_real_worker_delivers_what_is_due(clean, settings, mailbox):
    await _write(3)
    [sent] = await run_burst(settings, {"clock": clock.now}, "deliver_mail")
    assert sent == 3 and len(mailbox.messages) == 3
    assert await MailOutbox.count().where(MailOutbox.status == OutboxStatus.sent.value) == 3


async def test_two_runs_at_once_send_each_message_once(clean, mailbox):
    await _write(120)  # more than two batches
    results = await asyncio.gather(deliver_mail({"clock": clock.now}), deliver_mail({"clock": clock.now}))
    assert sum(results) == 120
    ids = [m.message_id for m in mailbox.messages]
    assert len(ids) == len(set(ids)) == 120
