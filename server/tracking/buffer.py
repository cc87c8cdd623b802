"""Event buffering: rows (clicks, impressions) gathered in memory and written in batches.

The click redirect must not wait on the database, so a request only appends a tuple here; a
background task hands the rows to a writer (executemany, COPY) every flush_interval seconds, or
as soon as a full batch is waiting. A failed write keeps its rows, in order, and is retried with
exponential backoff; stop() writes whatever is left, so a graceful shutdown loses nothing.

With a journal (server/tracking/journal.py) every row is also appended to a local file as it is
added, before the request is answered, and the file is dropped once the rows are committed: a
process killed with rows still buffered loses none of them, the next process replays them.

Memory is bounded: past max_rows rows waiting (the database away for a while), a row goes to the
journal only, and so does every row after it until the buffer has caught up: once writes succeed,
the rows are read back from the journal a batch at a time, in order, each written once (the
journal's commit mark moves past them as they are stored). Without a journal (tests, tools) there
is nowhere else to keep a row: the bound does not apply, and rows over it are said in the log
once per interval; dropping a click would lose money, a growing buffer only memory.

With a remote writer (`remote`: the click writer process, server/tracking/writer_process.py) rows
are kept in the journal only, from the start: the serving process never holds or reads them again,
and each write names the journal records to store (from the committed mark on) to the other
process, then moves the mark as far as it says it stored. A row the journal could not take (a full
disk) is kept in memory and written here by `writer`, as without one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from server.core.logthrottle import LogThrottle
from server.tracking.journal import Checkpoint, Journal, Mark

log = logging.getLogger("affnet.tracking")

Writer = Callable[[list[tuple]], Awaitable[None]]


class RemoteWriter(Protocol):
    """Stores journal records in another process (server/tracking/writer_process.py)."""

    async def start(self) -> None: ...

    async def store(self, ranges: list[tuple[str, int, int]], limit: int) -> tuple[int, str, int]: ...

    async def stop(self) -> None: ...


MAX_ROWS = 200_000  # rows held in memory at most (with a journal); ~200 MB of clicks


class EventBuffer:
    """Rows wait here until the background task writes them. One writer call at a time, in order."""

    def __init__(
        self,
        writer: Writer,
        flush_interval: float = 0.5,
        max_batch: int = 5000,
        max_backoff: float = 5.0,
        journal: Journal | None = None,
        max_rows: int = MAX_ROWS,
        remote: RemoteWriter | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if remote is not None and journal is None:
            raise ValueError("a remote writer reads the journal: give the buffer one")
        self._writer = writer
        self._remote = remote
        self.journal = journal
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_backoff = max(max_backoff, flush_interval)
        self._rows: list[tuple] = []
        self._in_flight = 0  # rows handed to the writer and not yet confirmed
        self._written = 0
        self._failures = 0  # consecutive failed flushes of the background task
        self._max_rows = max_rows
        # Rows past this many in memory take add's slow path: max_rows, or 0 while rows wait in the
        # journal only (from `_spill` on, `_spilled` of them), so that every later row joins them.
        self._room = max_rows
        self._spill: Mark | None = None
        self._spilled = 0
        self.last_write_at: float | None = None  # time.monotonic() of the last batch the writer took
        self.failures = LogThrottle(log, "buffered event writes")
        self._over_bound = LogThrottle(log, "rows over the buffer's bound with no journal")
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Rows not yet written: buffered (in memory or in the journal only), plus those in a write
        that has not finished."""
        return len(self._rows) + self._in_flight + self._spilled

    @property
    def spilled(self) -> int:
        """Rows waiting in the journal only because memory held max_rows already (with a remote
        writer every row waits there, by design: 0)."""
        return 0 if self._remote is not None else self._spilled

    @property
    def failing(self) -> int:
        """Consecutive failed writes of the background task (0: the last one succeeded)."""
        return self._failures

    @property
    def written(self) -> int:
        """Rows the writer has accepted since this buffer was made."""
        return self._written

    def add(self, row: tuple) -> None:
        """Queue one row. Called from the request path: O(1), never awaits; with a journal, one
        record copied into a mapped file (no system call, no disk flush), so the row outlives
        this process at once."""
        rows = self._rows
        if len(rows) >= self._room:
            self._add_beyond_bound(row)
            return
        if self.journal is not None:
            self.journal.append(row)
        rows.append(row)
        # A full batch is written at once rather than at the next tick, which also bounds memory
        # under bursts; while writes are failing, the backoff decides instead.
        if len(rows) >= self._max_batch and not self._failures:
            self._wake.set()

    def _add_beyond_bound(self, row: tuple) -> None:
        journal = self.journal
        if journal is not None:
            spill = self._spill
            mark = spill if spill is not None else journal.mark()  # where this row's record goes
            if journal.append(row):
                if mark is not None:
                    if spill is None:
                        self._spill, self._room = mark, 0
                        log.warning(
                            "%d events wait in memory; later ones wait in the journal %s only until "
                            "the database takes them again",
                            len(self._rows),
                            journal.path,
                        )
                    self._spilled += 1
                    return
            # Not journaled (a disk too full for a segment): memory is the only place left.
        else:
            self._over_bound.failed(
                "%d events wait in memory, over the bound of %d: with no journal they are kept there",
                len(self._rows) + 1,
                self._max_rows,
                exc_info=False,
            )
        self._rows.append(row)

    def _take_back(self) -> None:
        """Rows waiting in the journal only come back into memory, a batch at a time, in order."""
        journal, spill = self.journal, self._spill
        assert journal is not None and spill is not None
        rows, mark = journal.read(spill, self._max_batch)
        self._rows[:0] = rows
        self._spilled -= len(rows)
        if journal.at_end(mark):
            self._spill, self._room, self._spilled = None, self._max_rows, 0
            log.info("the events that waited in the journal only are back in memory")
        else:
            self._spill = mark

    def _checkpoint(self) -> Checkpoint | None:
        """Every journaled record before it is a row of the write taking it, or of an earlier one."""
        if self.journal is None:
            return None
        return self.journal.checkpoint() if self._spill is None else self.journal.checkpoint_at(self._spill)

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the event buffer is already running")
        self._stopping = False
        if self.journal is not None and not self.journal.is_open:
            # Rows journaled by processes that died before storing them go first, and now.
            self._spill, self._room, self._spilled = None, self._max_rows, 0
            recovered = self.journal.open()
            if self._remote is not None:
                # Every row goes to the journal only (`add` finds no room), from its first record on.
                self._spill, self._room, self._spilled = self.journal.oldest(), 0, len(recovered)
                if recovered:
                    self._wake.set()
            elif len(recovered) > self._max_rows:
                # They were copied into our journal first thing: they come back from there.
                self._spill, self._room, self._spilled = self.journal.oldest(), 0, len(recovered)
                self._wake.set()
            elif recovered:
                self._rows[:0] = recovered
                self._wake.set()
        if self._remote is not None:
            await self._remote.start()
        self._task = asyncio.create_task(self._run(), name="affnet-event-buffer")

    async def flush(self) -> int:
        """Write every row buffered now, max_batch at a time, and return how many were written.

        Rows added meanwhile wait for the next flush. If the writer raises, the rows it did not
        accept go back to the front of the buffer in their order and the error propagates. Rows
        waiting in the journal only are taken back and written a batch at a time.
        """
        async with self._lock:
            if self._remote is not None:
                return await self._flush_remote(self._remote)
            budget = self.pending
            total = 0
            while budget > 0:
                if not self._rows and self._spill is not None:
                    self._take_back()
                rows, self._rows = self._rows, []
                if not rows:
                    break
                checkpoint = self._checkpoint()
                done = await self._write(rows)
                if checkpoint is not None:
                    self.journal.committed(checkpoint)  # type: ignore[union-attr]
                total += done
                budget -= done
                if self._spill is None:
                    break  # rows added meanwhile wait for the next flush
            return total

    async def _flush_remote(self, remote: RemoteWriter) -> int:
        """flush() with a remote writer: the rows in memory (the journal could not take them) here,
        then the journal's records waiting now, by the other process, max_batch at a time."""
        total = 0
        if self._rows:
            rows, self._rows = self._rows, []
            total += await self._write(rows)
        journal = self.journal
        assert journal is not None
        budget = self._spilled
        while budget > 0 and self._spill is not None:
            end = journal.mark()
            if end is None:
                break  # no segment (a full disk): what was journaled before waits for one
            ranges = journal.ranges(self._spill, end)
            if not ranges:
                break
            try:
                done, path, offset = await remote.store(ranges, self._max_batch)
            except Exception:
                if journal.is_open:
                    await self._sync_journal()
                raise
            mark = journal.mark_at(path, offset)
            journal.committed(journal.checkpoint_at(mark))
            self._spill = mark
            self._spilled -= done
            self._written += done
            self.last_write_at = time.monotonic()
            total += done
            budget -= done
            if done == 0:
                break
        return total

    async def _write(self, rows: list[tuple]) -> int:
        self._in_flight = len(rows)
        done = 0
        try:
            while done < len(rows):
                batch = rows if len(rows) <= self._max_batch else rows[done : done + self._max_batch]
                await self._writer(batch)
                done += len(batch)
                self._written += len(batch)
                self._in_flight -= len(batch)
                self.last_write_at = time.monotonic()
        except BaseException as exc:
            # Also on cancellation: rows are never dropped, at worst written twice (the
            # writers ignore click ids they already hold).
            self._rows = rows[done:] + self._rows
            self._in_flight = 0  # back in the buffer: `pending` counts them once while the journal syncs
            if isinstance(exc, Exception) and self.journal is not None and self.journal.is_open:
                await self._sync_journal()
            raise
        finally:
            self._in_flight = 0
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
        try:
            await self._stop_writing(give_up_after)
        finally:
            if self._remote is not None:
                await self._remote.stop()

    async def _stop_writing(self, give_up_after: float) -> None:
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
                self.failures.failed(
                    "writing buffered events failed (%d in a row); %d rows kept, retrying in %.2g s",
                    self._failures,
                    self.pending,
                    delay,
                )
            else:
                if self._failures:
                    self.failures.flush()
                    log.info("buffered events written again after %d failed attempts", self._failures)
                self._failures = 0
                delay = self._flush_interval
