"""Event buffering: rows (clicks, impressions) gathered in memory and written in batches.

The click redirect must not wait on the database, so a request only appends a tuple here; a
background task hands the rows to a writer (executemany, COPY) every flush_interval seconds, or
as soon as a full batch is waiting. A failed write keeps its rows, in order, and is retried with
exponential backoff; stop() writes whatever is left, so a graceful shutdown loses nothing.

With a journal (server/tracking/journal.py) every row is also appended to a local file as it is
added, before the request is answered, and the file is dropped once the rows are committed: a
process killed with rows still buffered loses none of them, the next process replays them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from server.tracking.journal import Journal

log = logging.getLogger("affnet.tracking")

Writer = Callable[[list[tuple]], Awaitable[None]]


class EventBuffer:
    """Rows wait here until the background task writes them. One writer call at a time, in order."""

    def __init__(
        self,
        writer: Writer,
        flush_interval: float = 0.5,
        max_batch: int = 5000,
        max_backoff: float = 5.0,
        journal: Journal | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self._writer = writer
        self.journal = journal
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_backoff = max(max_backoff, flush_interval)
        self._rows: list[tuple] = []
        self._in_flight = 0  # rows handed to the writer and not yet confirmed
        self._written = 0
        self._failures = 0  # consecutive failed flushes of the background task
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Rows not yet written: buffered, plus those in a write that has not finished."""
        return len(self._rows) + self._in_flight

    @property
    def written(self) -> int:
        """Rows the writer has accepted since this buffer was made."""
        return self._written

    def add(self, row: tuple) -> None:
        """Queue one row. Called from the request path: O(1), never awaits; with a journal, one
        record copied into a mapped file (no system call, no disk flush), so the row outlives
        this process at once."""
        if self.journal is not None:
            self.journal.append(row)
        rows = self._rows
        rows.append(row)
        # A full batch is written at once rather than at the next tick, which also bounds memory
        # under bursts; while writes are failing, the backoff decides instead.
        if len(rows) >= self._max_batch and not self._failures:
            self._wake.set()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the event buffer is already running")
        self._stopping = False
        if self.journal is not None and not self.journal.is_open:
            # Rows journaled by processes that died before storing them go first, and now.
            recovered = self.journal.open()
            if recovered:
                self._rows[:0] = recovered
                self._wake.set()
        self._task = asyncio.create_task(self._run(), name="affnet-event-buffer")

    async def flush(self) -> int:
        """Write every row buffered now, max_batch at a time, and return how many were written.

        Rows added meanwhile wait for the next flush. If the writer raises, the rows it did not
        accept go back to the front of the buffer in their order and the error propagates.
        """
        async with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return 0
            # Every journaled record before this point is a row of this write or of an earlier one.
            checkpoint = self.journal.checkpoint() if self.journal is not None else None
            self._in_flight = len(rows)
            done = 0
            try:
                while done < len(rows):
                    batch = rows if len(rows) <= self._max_batch else rows[done : done + self._max_batch]
                    await self._writer(batch)
                    done += len(batch)
                    self._written += len(batch)
                    self._in_flight -= len(batch)
            except BaseException as exc:
                # Also on cancellation: rows are never dropped, at worst written twice (the
                # writers ignore click ids they already hold).
                self._rows = rows[done:] + self._rows
                if isinstance(exc, Exception) and self.journal is not None and self.journal.is_open:
                    await self._sync_journal()
                raise
            finally:
                self._in_flight = 0
            if checkpoint is not None:
                self.journal.committed(checkpoint)  # type: ignore[union-attr]
            return done

    async def _sync_journal(self) -> None:
        """The database is not taking rows: put the journal on disk, so the backlog also survives
        a machine crash (a killed process needs no sync: the page cache is the kernel's)."""
        try:
            await asyncio.to_thread(self.journal.sync)  # type: ignore[union-attr]
        except OSError:
            log.exception("syncing the event journal failed")

    async def stop(self, give_up_after: float = 10.0) -> None:
        """Stop the background task and write everything left, retrying failures for up to give_up_after seconds.

        Call it once the server no longer takes requests. If the rows still cannot be written by
        then, the last error is raised and the rows stay in `pending`.
        """
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            # Let a write in progress finish rather than cancel it: a cancelled write may have
            # been stored already, and would then be written again.
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("event buffer task had died", exc_info=task.exception())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        delay = self._flush_interval
        while True:
            try:
                await self.flush()
                if not self.pending:
                    if self.journal is not None and self.journal.is_open:
                        self.journal.close(committed=True)  # all stored: nothing to replay
                    return
                continue  # rows added while writing (none once requests have stopped)
            except Exception:
                if loop.time() + delay > deadline:
                    log.exception(
                        "event buffer stopping with %d rows unwritten%s",
                        self.pending,
                        "; they stay in the journal for the next start" if self.journal else "",
                    )
                    if self.journal is not None and self.journal.is_open:
                        self.journal.close(committed=False)
                    raise
                log.exception("writing %d rows at shutdown failed; retrying in %.2g s", self.pending, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _run(self) -> None:
        delay = self._flush_interval
        while not self._stopping:
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            if self._stopping:
                return  # stop() does the last flush itself
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                self._failures += 1
                delay = min(delay * 2, self._max_backoff)
                self._wake.clear()  # a batch that filled up during the failed write must not skip the backoff
                log.exception(
                    "writing buffered events failed (%d in a row); %d rows kept, retrying in %.2g s",
                    self._failures,
                    self.pending,
                    delay,
                )
            else:
                if self._failures:
                    log.info("buffered events written again after %d failed attempts", self._failures)
                self._failures = 0
                delay = self._flush_interval
