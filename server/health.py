"""GET /healthz: does the database answer, does Redis answer, has the worker been seen."""

from __future__ import annotations

import asyncio

from arq.constants import default_queue_name, health_check_key_suffix
from litestar import Request, Response, get

from server import db
from server.web import PUBLIC

CHECK_TIMEOUT = 2.0


async def _check(coro) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return f"error: {type(exc).__name__}"
    return "ok"


@get("/healthz", opt=PUBLIC, summary="Health of the database and Redis",
     description="200 when the database and Redis both answer, 503 otherwise. `worker` reports whether an "
                 "arq worker has written its health check recently; it does not change the status.")
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
    healthy = database == "ok" and redis_status == "ok"
    return Response({"status": "ok" if healthy else "unavailable", "database": database, "redis": redis_status,
                     "worker": worker}, status_code=200 if healthy else 503)
