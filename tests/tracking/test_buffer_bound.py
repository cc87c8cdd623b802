"""The event buffer's bound: past max_rows waiting rows (the database away), rows wait in the journal only,
not in memory; once writes succeed they are all written, in order, each exactly once, and a process killed
meanwhile leaves every one of them to the next."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from server.tracking import segment
from server.tracking.buffer import EventBuffer
from server.tracking.journal import Journal
from tests.tracking.test_buffer import Recorder, _until
from tests.tracking.test_journal import _rows


@pytest.fixture(autouse=True)
def small_segments(monkeypatch):
    # ~300 rows a segment, so a backlog spans many segments (the journal's own size is 8 MB).
    monkeypatch.setattr(segment, "SEGMENT_SIZE", 16 << 10)


def _in_memory(buffer: EventBuffer) -> int:
    return buffer.pending - buffer.spilled


async def test_rows_beyond_the_bound_leave_memory_and_are_all_written_once_in_order_after_recovery(tmp_path):
    writer = Recorder(fail_times=10**9)
    journal = Journal(tmp_path)
    buffer = EventBuffer(writer, flush_interval=0.005, max_batch=40, max_backoff=0.01, max_rows=100, journal=journal)
    await buffer.start()
    rows = _rows(2000)
    try:
        for row in rows:
            buffer.add(row)
            assert _in_memory(buffer) <= 100
        await _until(lambda: writer.calls >= 3)  # the database refuses them meanwhile
        assert buffer.pending == 2000 and buffer.spilled == 1900 and buffer.written == 0
        assert len(journal.segments()) > 5  # the backlog is on disk

        writer.fail_times = 0  # --- the database is back ---
        await _until(lambda: buffer.written == 2000, within=10)
        assert buffer.pending == 0 and buffer.spilled == 0
        # Back to normal: new rows are held in memory again.
        buffer.add(_rows(1, start=2000)[0])
        assert _in_memory(buffer) == 1 and buffer.spilled == 0
    finally:
        await buffer.stop()
    assert writer.rows == _rows(2001)  # every row, once, in the order answered
    assert max(len(batch) for batch in writer.batches) <= 100
    assert list(tmp_path.glob("*.seg")) == []  # all committed: nothing left to replay


async def test_rows_added_while_the_backlog_is_taken_back_come_after_it_and_once(tmp_path):
    writer = Recorder(fail_times=1)
    buffer = EventBuffer(writer, max_batch=25, max_rows=50, journal=Journal(tmp_path))
    await buffer.start()
    try:
        for row in _rows(300):
            buffer.add(row)
        with pytest.raises(ConnectionError):
            await buffer.flush()
        assert buffer.spilled == 250
        writer.gate = asyncio.Event()
        flushing = asyncio.create_task(buffer.flush())
        await _until(lambda: writer.calls >= 2)
        for row in _rows(20, start=300):  # while a write is under way: still behind the backlog
            buffer.add(row)
        writer.gate.set()
        await flushing
        await buffer.flush()
    finally:
        await buffer.stop()
    assert writer.rows == _rows(320)


async def test_a_process_killed_with_rows_beyond_the_bound_leaves_every_one_to_the_next(tmp_path):
    first = Recorder(fail_on=(3,))  # two batches stored, then the database goes
    dead = EventBuffer(first, max_batch=50, max_rows=100, journal=Journal(tmp_path))
    await dead.start()
    for row in _rows(1000):
        dead.add(row)
    with pytest.raises(ConnectionError):
        await dead.flush()
    assert first.rows == _rows(100) and dead.pending == 900
    dead.journal.close(committed=False)  # the lock goes as at a kill -9; the files stay

    writer = Recorder()
    after = EventBuffer(writer, max_batch=50, max_rows=100, journal=Journal(tmp_path))
    await after.start()  # 900 rows to replay, more than max_rows: they wait in the journal only
    assert after.pending == 900 and _in_memory(after) == 0
    await after.stop()
    assert writer.rows == _rows(900, start=100)  # the stored ones are not replayed, the rest once each
    assert max(len(batch) for batch in writer.batches) <= 50
    assert not Counter(first.rows + writer.rows) - Counter(_rows(1000))


async def test_without_a_journal_rows_over_the_bound_stay_in_memory_and_are_said_once_per_interval(caplog):
    writer = Recorder(fail_times=1)
    buffer = EventBuffer(writer, max_rows=10)
    with caplog.at_level(logging.ERROR, logger="affnet.tracking"):
        for row in _rows(50):
            buffer.add(row)
    assert buffer.pending == 50 and buffer.spilled == 0
    said = [r for r in caplog.records if "over the bound" in r.getMessage()]
    assert len(said) == 1 and buffer._over_bound.total == 40
    with pytest.raises(ConnectionError):
        await buffer.flush()
    assert await buffer.flush() == 50
    assert writer.rows == _rows(50)
