"""GET /healthz: does the database answer, does Redis answer, has the worker been seen; what is degraded.

The status code is for load balancers and orchestrators, which take a 503 instance out of rotation (or
restart it). Only a database that does not answer makes this process useless, so only that is 503. Redis
away, or no worker seen, is the same for every instance: answering 503 would take all of them out and
turn a partial outage (logins paused, background work waiting) into a total one, while clicks, ads,
conversions, webhooks and every logged-in page still work. Those are 200 with `status: degraded` and a
line per degradation saying what it means, for people and monitoring to read.
"""

from __future__ import annotations

import asyncio

from arq.constants import default_queue_name, health_check_key_suffix
from litestar import Request, Response, get

from server.core import db, jobs
from server.http.web import PUBLIC

CHECK_TIMEOUT = 2.0

REDIS_DOWN = (
    "redis: logins are paused (503) and new background jobs wait; clicks, ads, conversions, "
    "Stripe webhooks and logged-in pages keep working, and the worker catches up when Redis returns"
)
WORKER_NOT_SEEN = (
    "worker: no arq worker has reported in the last 30 seconds; approvals, Stripe events, "
    "payouts and reports wait until one runs"
)


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
    description="503 when the database does not answer (this instance cannot serve). 200 otherwise, with "
    "`status` `ok`, or `degraded` and a `degraded` list when Redis does not answer or no worker "
    "has been seen recently: every instance shares those, and the product keeps serving.",
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
    degraded = ([REDIS_DOWN] if redis_status != "ok" else []) + ([WORKER_NOT_SEEN] if worker == "not seen" else [])
    if database != "ok":
        status = "unavailable"
    else:
        status = "degraded" if degraded else "ok"
    return Response(
        {
            "status": status,
            "database": database,
            "redis": redis_status,
            "worker": worker,
            "jobs_waiting_for_redis": len(jobs.waiting()),
            "degraded": degraded,
        },
        status_code=503 if database != "ok" else 200,
    )
