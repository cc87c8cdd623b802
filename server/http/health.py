"""GET /healthz: does the database answer, does Redis answer, has the worker been seen; what is degraded.

The status code is for load balancers and orchestrators, which take a 503 instance out of rotation (or
restart it). Nothing this checks is this process's own: the database, Redis and the worker are shared by
every instance, so a 503 for any of them would take all instances out at once and turn a partial outage
into a total one. With the database away the pages, logins and postbacks fail, but tracked links keep
redirecting (the revenue of every publisher and advertiser) and clicks are journaled; with Redis away,
logins pause and background work waits. So every answer is 200, with `status: degraded` and a line per
degradation saying what it means, for people and monitoring to read; 503 only while this process is
starting or stopping (the server's own answer).

The click path rides out a database outage on its own (server/tracking/cache.py, buffer.py): links
redirect from the terms in memory and clicks wait in the buffer and its journal. Both are said here
with their figures while they last, and for a while after (a click backlog until it is stored).
"""

from __future__ import annotations

import asyncio
import time

from arq.constants import default_queue_name, health_check_key_suffix
from litestar import Request, Response, get

from server.core import db, jobs
from server.http.web import PUBLIC
from server.mail import outbox

CHECK_TIMEOUT = 2.0

REDIS_DOWN = (
    "redis: logins are paused (503) and new background jobs wait; clicks, ads, conversions, "
    "Stripe webhooks and logged-in pages keep working, and the worker catches up when Redis returns"
)
DATABASE_DOWN = (
    "database: pages, logins, postbacks and the API fail until it answers; tracked links keep redirecting "
    "from the terms in memory and answered clicks are journaled and stored when it returns"
)
WORKER_NOT_SEEN = (
    "worker: no arq worker has reported in the last 30 seconds; approvals, Stripe events, "
    "payouts and reports wait until one runs"
)


# A backlog this large is "degraded" even while writes succeed: the database is not keeping up.
BACKLOG_DEGRADED = 50_000


def _links(link_cache) -> tuple[dict, list[str]]:
    stale, stale_for = link_cache.stale()
    figures = {"served_stale": stale, "stale_for_s": round(stale_for, 1), "failed_loads": link_cache.failed_loads}
    if not stale:
        return figures, []
    return figures, [
        f"links: {stale} links redirect from the terms this process last loaded, for up to "
        f"{stale_for:.0f} s, because reloading them failed; links not in memory answer 503 until the "
        "database answers"
    ]


def _events(kind: str, buffer) -> tuple[dict, list[str]]:
    last = buffer.last_write_at
    age = None if last is None else round(time.monotonic() - last, 1)
    figures = {
        "pending": buffer.pending,
        "journal_only": buffer.spilled,
        "failed_writes_in_a_row": buffer.failing,
        "last_write_age_s": age,
    }
    if not (buffer.failing or buffer.spilled or buffer.pending >= BACKLOG_DEGRADED):
        return figures, []
    since = "never since this process started" if age is None else f"{age:.0f} s ago"
    return figures, [
        f"{kind}: {buffer.pending} answered {kind} wait to be stored ({buffer.spilled} of them in the local "
        f"journal only); the last write succeeded {since}; they are stored once the database takes them, "
        "and survive a restart of this process"
    ]


async def _mail() -> tuple[dict, list[str]]:
    waiting = await asyncio.wait_for(outbox.backlog(), CHECK_TIMEOUT)
    figures = {"pending": waiting.pending, "oldest_pending_age_s": waiting.oldest_age_s, "failed": waiting.failed}
    if not waiting.late:
        return figures, []
    minutes = (waiting.oldest_age_s or 0) // 60
    return figures, [
        f"mail: {waiting.pending} message(s) wait to be sent, the oldest for {minutes} min "
        f"({waiting.last_error or 'not tried yet: is a worker running?'}); they are sent, once each, "
        "when the SMTP server takes them"
    ]


async def _check(coro) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return f"error: {type(exc).__name__}"
    return "ok"


@get(
    "/healthz",
    opt=PUBLIC,
    summary="Health of the database, Redis and the worker",
    description="200 with `status` `ok`, or `degraded` and a `degraded` list when the database or Redis "
    "does not answer, no worker has been seen recently, links redirect from stale terms, or answered "
    "clicks or views wait to be stored, or mail has waited over ten minutes: what is shared by every "
    "instance never takes one out of rotation, and tracked links keep redirecting. `links`, `clicks`, "
    "`views` and `mail` give the figures.",
)
async def healthz(request: Request) -> Response:
    redis = request.app.state.redis
    database = await _check(db.ping())
    redis_status = await _check(redis.ping())
    worker = "unknown"
    if redis_status == "ok":
        try:
            seen = await asyncio.wait_for(redis.exists(default_queue_name + health_check_key_suffix), CHECK_TIMEOUT)
            worker = "ok" if seen else "not seen"
        except Exception:  # noqa: BLE001
            worker = "unknown"
    degraded = (
        ([DATABASE_DOWN] if database != "ok" else [])
        + ([REDIS_DOWN] if redis_status != "ok" else [])
        + ([WORKER_NOT_SEEN] if worker == "not seen" else [])
    )
    state = request.app.state
    links, said = _links(state.link_cache)
    degraded += said
    clicks, said = _events("clicks", state.click_buffer)
    degraded += said
    views, said = _events("views", state.ads.buffer)
    degraded += said
    mail: dict = {}
    if database == "ok":
        try:
            mail, said = await _mail()
            degraded += said
        except Exception:  # noqa: BLE001 - the database check above speaks for the database
            mail = {}
    status = "degraded" if degraded else "ok"
    return Response(
        {
            "status": status,
            "database": database,
            "redis": redis_status,
            "worker": worker,
            "jobs_waiting_for_redis": len(jobs.waiting()),
            "links": links,
            "clicks": clicks,
            "views": views,
            "mail": mail,
            "degraded": degraded,
        },
        status_code=200,
    )
