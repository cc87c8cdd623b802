"""The click writer process: stores the clicks a serving process journaled (server/tracking/writer_process.py).

Started by the serving process (`python -m workers.click_writer`), never by hand. It reads its
configuration, then requests, from stdin, and answers on stdout (logs go to stderr). Each request
names journal records by (segment file, start, end); the child reads them, classifies them in
Redis and stores them as `Redirector.store` does in the serving process (server/tracking/service.py:
store_clicks), and answers how many it stored, where it stopped, and the news of campaigns its
counters found full (also told to every other process on the Redis channel, as any flush does).
It exits when its input closes, after answering what it holds (SIGINT and SIGTERM are ignored:
the serving process stops it once everything is stored).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from redis.asyncio import Redis

from server import piccolo_app
from server.core import changes, db
from server.reports import traffic
from server.tracking import counting
from server.tracking import service as tracking
from server.tracking.counting import ClickCounter
from server.tracking.segment import read_range
from server.tracking.writer_process import frame, read_frame

log = logging.getLogger("affnet.tracking")


class _TellingCounter(ClickCounter):
    """A click counter that also keeps what it told the other processes, for the serving process."""

    told: list[dict]

    async def _tell(self, news: list[dict]) -> None:
        self.told.extend(news)
        await super()._tell(news)


def _rows_of(ranges: list[tuple[str, int, int]], limit: int) -> tuple[list[tuple], str, int]:
    rows: list[tuple] = []
    path, offset = ranges[0][0], ranges[0][1]
    for path, start, end in ranges:  # noqa: B007 - the last range read names where the batch ends
        got, offset = read_range(path, start, end, limit - len(rows))
        rows += got
        if len(rows) >= limit:
            break
    return rows, path, offset


async def serve(config: dict[str, Any], reader: asyncio.StreamReader, write: Any) -> None:
    engine = piccolo_app.bind(db.engine_for(config["database_url"]))
    await db.start(engine)
    redis = Redis.from_url(config["redis_url"], socket_timeout=2, socket_connect_timeout=2)
    listener = Redis.from_url(config["redis_url"], socket_connect_timeout=2)
    counter = tracking.click_counter(
        redis,
        traffic.valid_clicks_ever,
        _TellingCounter,
        rate=config["rate"],
        window_ms=config["window_ms"],
        dedup_seconds=config["dedup_seconds"],
        near_seconds=config["near_seconds"],
    )
    counter.told = []
    counter.process = config["process"]
    # Campaigns' changes (their caps and budgets) and other processes' news reach this counter too.
    listening = [
        asyncio.create_task(changes.listen(listener, counter)),
        asyncio.create_task(counting.listen(listener, counter)),
    ]
    try:
        while True:
            try:
                request = await read_frame(reader)
            except EOFError:
                return  # the serving process stopped (or died): nothing is held
            if request[0] != "store":
                write(frame(("error", f"unknown request {request[0]!r}")))
                continue
            _, ranges, limit = request
            try:
                rows, path, offset = _rows_of(ranges, limit)
                counter.told = []
                await tracking.store_clicks(counter, rows)
            except Exception as exc:  # noqa: BLE001 - the serving process retries; said here once per try
                log.warning("storing %d journaled clicks failed: %s", limit, exc)
                write(frame(("error", f"{type(exc).__name__}: {exc}")))
                continue
            write(frame(("ok", len(rows), path, offset, counter.told)))
    finally:
        for task in listening:
            task.cancel()
        await asyncio.gather(*listening, return_exceptions=True)
        await redis.aclose()
        await listener.aclose()
        await db.stop(engine)


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    try:
        config = await read_frame(reader)
    except EOFError:
        return
    await serve(config, reader, write)


if __name__ == "__main__":
    # The serving process says when to stop, by closing this one's input once its last batch is
    # stored: a Ctrl-C to the terminal's process group or a service manager's SIGTERM to every
    # process of the unit must not end this one first, with the batches still to come.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("AFFNET_LOG_LEVEL", "WARNING"),
        format="%(asctime)s click-writer %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(main())
