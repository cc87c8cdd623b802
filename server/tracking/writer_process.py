"""The click buffer's writer in a process of its own: the serving process only journals its clicks.

Storing a batch of clicks (the Redis classification's payload and answers, the INSERT or COPY)
costs the serving process's event loop 10-12 µs per click in a loaded server, as much as a third
of what it spends answering it (bench/click_flush_cost.py). With `click_writer = "process"` the
serving process hands that work to a child (`python -m workers.click_writer`) and never touches a
click again after journaling it: the click buffer (server/tracking/buffer.py) tells the child
which journal records to store, as (segment file, start, end) ranges of its own journal
(server/tracking/journal.py); the child reads them from the page cache the two share, classifies
and stores them exactly as `Redirector.store` would, and answers how far it got and what its
counters showed (campaigns now full, so that this process's redirects send their visitors to the
fallback URL at once). Only then does the buffer move the journal's committed mark.

Failure keeps the journal's promises: a child that dies, or answers an error, is a failed write
(the buffer retries with backoff, and a new child is started for the next try); a serving process
that dies leaves its journal to be replayed by the next one, while its child finishes the batch
it holds and exits when its input closes. A batch stored by both is stored once (click ids are
unique, and a batch classified again answers as counted).

Messages on the child's stdin and stdout: a 4-byte little-endian length, then a `marshal`'ed value.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import struct
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("affnet.tracking")

_LENGTH = struct.Struct("<I")
STOP_TIMEOUT = 30.0  # how long stop() waits for the child to finish what it holds


class WriterProcessError(RuntimeError):
    """The writer process failed the batch (its message says why) or is gone."""


def frame(value: Any) -> bytes:
    payload = marshal.dumps(value)
    return _LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message, or EOFError when the other side closed."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(head)
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise EOFError from exc
    return marshal.loads(payload)  # noqa: S302 - our own child's answers, marshal runs no code


class ProcessWriter:
    """The serving process's end of one click writer process (started again by the next batch
    after it died)."""

    def __init__(self, config: dict[str, Any], on_news: Callable[[dict], Any] | None = None) -> None:
        # `config`: what the child needs to open the same database and Redis and count as this
        # process would (workers/click_writer.py reads it).
        self.config = config
        self.on_news = on_news
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self.started = 0  # children started (a second one means the first died or failed)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _child(self) -> asyncio.subprocess.Process:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            return proc
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.click_writer",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "AFFNET_WRITER_PARENT": str(os.getpid())},
        )
        assert proc.stdin is not None
        proc.stdin.write(frame(self.config))
        self._proc = proc
        self.started += 1
        return proc

    async def start(self) -> None:
        """Start the child now rather than with the first batch."""
        async with self._lock:
            await self._child()

    async def store(self, ranges: list[tuple[str, int, int]], limit: int) -> tuple[int, str, int]:
        """Have the child store up to `limit` records of `ranges`: how many it stored, and the
        segment file and offset after the last of them."""
        async with self._lock:
            proc = await self._child()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(frame(("store", ranges, limit)))
                await proc.stdin.drain()
                answer = await read_frame(proc.stdout)
            except (EOFError, ConnectionError, BrokenPipeError) as exc:
                await self._reap()
                raise WriterProcessError("the click writer process stopped; a new one takes the batch") from exc
            except BaseException:
                # Cancelled mid-answer: the next message would be this one's answer. Start afresh.
                await self._reap()
                raise
        if answer[0] != "ok":
            raise WriterProcessError(f"the click writer process could not store the batch: {answer[1]}")
        _, done, path, offset, news = answer
        if self.on_news is not None:
            for item in news:
                self.on_news(item)
        return done, path, offset

    async def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

    async def stop(self) -> None:
        """Close the child's input (it exits once it has answered what it holds) and wait for it."""
        async with self._lock:
            proc, self._proc = self._proc, None
            if proc is None or proc.returncode is not None:
                return
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error(
                    "the click writer process did not exit within %.0f s of its input closing; killed", STOP_TIMEOUT
                )
                proc.kill()
                await proc.wait()
