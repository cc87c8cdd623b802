"""GET /healthz: the database or Redis away, or no worker, is 200 "degraded", saying what that means
(every instance shares them, and tracked links keep serving: a 503 would take every instance out)."""

from __future__ import annotations

from dataclasses import replace

import httpx

from dev.services import free_port
from server import piccolo_app
from server.app import create_app
from server.core import db


async def test_healthz_is_200_when_database_and_redis_answer(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok" and body["redis"] == "ok"
    assert body["worker"] in {"ok", "not seen"}
    if body["worker"] == "not seen":  # no worker runs beside this test's app
        assert body["status"] == "degraded" and body["degraded"][0].startswith("worker:")
    else:
        assert body["status"] == "ok" and body["degraded"] == []


async def test_healthz_is_200_degraded_when_redis_does_not_answer(app, settings):
    broken = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=broken), base_url="http://t") as c:
            response = await c.get("/healthz")
    finally:
        await broken.state.redis.aclose()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["redis"].startswith("error") and body["database"] == "ok"
    assert any(line.startswith("redis: logins are paused") for line in body["degraded"])


async def test_healthz_is_200_degraded_when_the_database_does_not_answer(app, settings, tmp_path):
    # A database the app cannot open: a SQLite file inside a directory that does not exist, or a
    # PostgreSQL port nothing listens on.
    if settings.is_sqlite:
        url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.sqlite3'}"
    else:
        url = f"postgres://affnet@127.0.0.1:{free_port()}/affnet"
    broken = create_app(replace(settings, database_url=url))
    good_engine = db.engine()
    piccolo_app.bind(db.engine_for(url))  # what the broken app's startup would do, without its pool
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=broken), base_url="http://t") as c:
            response = await c.get("/healthz")
    finally:
        piccolo_app.bind(good_engine)
        await broken.state.redis.aclose()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["database"].startswith("error") and body["redis"] == "ok"
    assert body["degraded"][0].startswith("database: pages, logins, postbacks and the API fail")
