"""Failures logged once per interval with a count: one traceback, then "N more failures of KIND in the last
Xs", never a line per failed request (an outage once wrote 100 MB of tracebacks in 30 s)."""

from __future__ import annotations

import logging

import httpx

from server.core.errors import ServiceUnavailable
from server.core.logthrottle import LogThrottle
from server.http.web import FastPath, FastPaths, respond

log = logging.getLogger("affnet.test.throttle")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle: LogThrottle, n: int) -> int:
    written = 0
    for i in range(n):
        try:
            raise ConnectionRefusedError(f"attempt {i}")
        except ConnectionRefusedError:
            written += throttle.failed("loading %s failed", "abc")
    return written


def test_one_traceback_then_a_count_per_interval(caplog):
    clock = Clock()
    throttle = LogThrottle(log, "link loads", interval=10.0, clock=clock)
    with caplog.at_level(logging.ERROR, logger=log.name):
        assert _fail(throttle, 1000) == 1
        clock.now += 10.0
        assert _fail(throttle, 1) == 1
        clock.now += 3.0
        _fail(throttle, 4)
        throttle.flush()  # the failures stopped: the rest of the count is said
        throttle.flush()  # and only once
    first, second, third = [r for r in caplog.records if r.name == log.name]
    assert first.getMessage() == "loading abc failed" and "attempt 0" in str(first.exc_info[1])
    assert second.getMessage() == "999 more failures of link loads in the last 10s; the latest: loading abc failed"
    assert "attempt 0" in str(second.exc_info[1])  # the latest of them, with its traceback
    assert third.getMessage() == "4 more failures of link loads in the last 3s" and third.exc_info is None
    assert throttle.total == 1005


class Broken(FastPath):
    prefix = "/x/"
    log = log
    what = "thing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def handle(self, state, scope, send) -> None:
        raise self.error

    async def fail(self, send) -> None:
        await respond(send, 500, [(b"content-type", b"text/plain")], b"sorry")


class Litestar:
    state = None  # what the fast paths are handed; these need none


async def _get(app, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return [await client.get(f"/x/{i}") for i in range(n)]


async def test_a_fast_path_failing_every_request_logs_one_traceback_then_counts(caplog):
    clock = Clock()
    app = FastPaths(Litestar(), Broken(RuntimeError("database is down")))
    app.failures["/x/"] = LogThrottle(log, "thing", clock=clock)
    with caplog.at_level(logging.ERROR, logger=log.name):
        answers = await _get(app, 200)
        clock.now += 11
        answers += await _get(app, 1)
    assert {r.status_code for r in answers} == {500}
    first, second = [r for r in caplog.records if r.name == log.name]
    assert first.getMessage() == "thing failed for /x/0" and first.exc_info is not None
    assert second.getMessage().startswith("199 more failures of thing in the last 11s; the latest: thing failed for")


async def test_a_fast_path_whose_needs_are_away_answers_503_with_retry_after_and_logs_nothing(caplog):
    app = FastPaths(Litestar(), Broken(ServiceUnavailable("Links cannot be looked up right now.", retry_after=5)))
    with caplog.at_level(logging.DEBUG, logger=log.name):
        [answer] = await _get(app, 1)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert "Try again in a moment" in answer.text and "Links cannot be looked up right now." in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert [r for r in caplog.records if r.name == log.name] == []
