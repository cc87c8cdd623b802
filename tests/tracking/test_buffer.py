"""The event buffer: rows are written in order, in bounded batches, exactly once, even across failures."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from server.tracking.buffer import EventBuffer


class Recorder:
    """A writer that records its batches and can be told to fail or to block."""

    def __init__(self, fail_times: int = 0, fail_on: tuple[int, ...] = ()) -> None:
        self.batches: list[list[tuple]] = []
        self.calls = 0
        self.fail_times = fail_times
        self.fail_on = fail_on  # call numbers (from 1) that fail
        self.call_times: list[float] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, rows: list[tuple]) -> None:
        self.calls += 1
        self.call_times.append(asyncio.get_running_loop().time())
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.calls in self.fail_on:
            raise ConnectionError("lost the connection")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("database unavailable")
        self.batches.append(list(rows))

    @property
    def rows(self) -> list[tuple]:
        return [row for batch in self.batches for row in batch]


async def _until(condition, within: float = 2.0) -> None:
    """Wait until condition() holds: the buffer signals nothing a test could await instead."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


def _rows(n: int, start: int = 0) -> list[tuple]:
    return [(i, f"click-{i}") for i in range(start, start + n)]


async def test_flush_writes_every_row_in_order_in_batches_of_at_most_max_batch():
    writer = Recorder()
    buffer = EventBuffer(writer, max_batch=5)
    for row in _rows(12):
        buffer.add(row)
    assert buffer.pending == 12
    assert await buffer.flush() == 12
    assert [len(b) for b in writer.batches] == [5, 5, 2]
    assert writer.rows == _rows(12)
    assert (buffer.pending, buffer.written) == (0, 12)


async def test_flush_on_an_empty_buffer_does_not_call_the_writer():
    writer = Recorder()
    buffer = EventBuffer(writer)
    assert await buffer.flush() == 0
    assert writer.calls == 0
    assert (buffer.pending, buffer.written) == (0, 0)


def test_add_is_a_plain_function_that_works_without_an_event_loop():
    assert not inspect.iscoroutinefunction(EventBuffer.add)
    buffer = EventBuffer(Recorder())
    buffer.add(("a",))
    assert buffer.pending == 1


async def test_the_background_task_writes_rows_every_interval():
    writer = Recorder()
    buffer = EventBuffer(writer, flush_interval=0.01)
    await buffer.start()
    try:
        for row in _rows(3):
            buffer.add(row)
        await _until(lambda: buffer.written == 3)
        buffer.add(_rows(1, start=3)[0])
        await _until(lambda: buffer.written == 4)
    finally:
        await buffer.stop()
    assert writer.rows == _rows(4)


async def test_a_full_batch_is_written_without_waiting_for_the_interval():
    writer = Recorder()
    buffer = EventBuffer(writer, flush_interval=60, max_batch=3)
    await buffer.start()
    try:
        for row in _rows(3):
            buffer.add(row)
        await _until(lambda: buffer.written == 3, within=1.0)
    finally:
        await buffer.stop()
    assert writer.batches == [_rows(3)]


async def test_stop_writes_everything_still_buffered():
    writer = Recorder()
    buffer = EventBuffer(writer, flush_interval=60, max_batch=4)
    await buffer.start()
    for row in _rows(10):
        buffer.add(row)
    await buffer.stop()
    assert writer.rows == _rows(10)
    assert all(len(batch) <= 4 for batch in writer.batches)
    assert (buffer.pending, buffer.written) == (0, 10)


async def test_stop_without_start_still_writes_everything():
    writer = Recorder()
    buffer = EventBuffer(writer)
    buffer.add(("only",))
    await buffer.stop()
    assert writer.rows == [("only",)]


async def test_stop_lets_a_write_in_progress_finish_instead_of_cancelling_it():
    writer = Recorder()
    writer.gate = asyncio.Event()
    buffer = EventBuffer(writer, flush_interval=0.01)
    await buffer.start()
    buffer.add(("first",))
    await _until(writer.entered.is_set)
    stopping = asyncio.create_task(buffer.stop())
    await asyncio.sleep(0.02)
    assert not stopping.done()
    buffer.add(("late",))
    writer.gate.set()
    await stopping
    assert writer.batches == [[("first",)], [("late",)]]


async def test_starting_twice_is_refused():
    buffer = EventBuffer(Recorder(), flush_interval=60)
    await buffer.start()
    try:
        with pytest.raises(RuntimeError):
            await buffer.start()
    finally:
        await buffer.stop()


@pytest.mark.parametrize(("kwargs"), [{"max_batch": 0}, {"flush_interval": 0}])
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        EventBuffer(Recorder(), **kwargs)


async def test_a_failed_flush_keeps_the_rows_in_order_and_raises():
    writer = Recorder(fail_times=1)
    buffer = EventBuffer(writer)
    for row in _rows(3):
        buffer.add(row)
    with pytest.raises(ConnectionError):
        await buffer.flush()
    assert (buffer.pending, buffer.written) == (3, 0)
    assert await buffer.flush() == 3
    assert writer.rows == _rows(3)


async def test_a_failure_in_a_later_batch_keeps_only_the_unwritten_rows():
    writer = Recorder(fail_on=(2,))
    buffer = EventBuffer(writer, max_batch=2)
    for row in _rows(5):
        buffer.add(row)
    with pytest.raises(ConnectionError):
        await buffer.flush()
    assert (buffer.pending, buffer.written) == (3, 2)
    await buffer.flush()
    assert writer.rows == _rows(5)  # each row once, in order
    assert [len(b) for b in writer.batches] == [2, 2, 1]


async def test_rows_added_during_a_failing_write_come_after_the_rows_put_back():
    writer = Recorder(fail_times=1)
    writer.gate = asyncio.Event()
    buffer = EventBuffer(writer)
    for row in _rows(2):
        buffer.add(row)
    flushing = asyncio.create_task(buffer.flush())
    await _until(writer.entered.is_set)
    buffer.add(_rows(1, start=2)[0])
    writer.gate.set()
    with pytest.raises(ConnectionError):
        await flushing
    await buffer.flush()
    assert writer.rows == _rows(3)


async def test_a_failing_writer_then_a_working_one_loses_and_duplicates_nothing(caplog):
    writer = Recorder(fail_times=3)
    buffer = EventBuffer(writer, flush_interval=0.005, max_batch=4, max_backoff=0.02)
    with caplog.at_level(logging.ERROR, logger="affnet.tracking"):
        await buffer.start()
        try:
            for row in _rows(10):
                buffer.add(row)
                await asyncio.sleep(0)
            await _until(lambda: buffer.written == 10)
        finally:
            await buffer.stop()
    assert writer.rows == _rows(10)
    assert writer.calls >= 3 + 3  # three failures, then at least three batches of at most four
    # Logged once per interval with a count (server/core/logthrottle.py), not once per failure:
    # the first with its traceback, the other two counted and said when writes succeed again.
    failures = [r for r in caplog.records if r.name == "affnet.tracking" and r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert "retrying" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert failures[1].getMessage().startswith("2 more failures of buffered event writes")
    assert buffer.failures.total == 3


async def test_retries_back_off_exponentially_up_to_the_cap():
    writer = Recorder(fail_times=6)
    buffer = EventBuffer(writer, flush_interval=0.02, max_backoff=0.16)
    buffer.add(("row",))
    await buffer.start()
    try:
        await _until(lambda: buffer.written == 1, within=5.0)
    finally:
        await buffer.stop()
    gaps = [b - a for a, b in zip(writer.call_times, writer.call_times[1:], strict=False)]
    # Waits after each failure: 0.04, 0.08, 0.16, then capped at 0.16 (uncapped: 0.32, 0.64, 1.28).
    assert len(gaps) == 6
    assert gaps[0] >= 0.039 and gaps[1] >= 0.079 and gaps[2] >= 0.159
    assert sum(gaps[3:]) < 1.2  # well under the 2.24 s that doubling without a cap would take


async def test_a_full_batch_does_not_cut_a_backoff_short():
    writer = Recorder(fail_times=1)
    buffer = EventBuffer(writer, flush_interval=0.1, max_batch=2, max_backoff=1.0)
    buffer.add(("a",))
    await buffer.start()
    try:
        await _until(lambda: writer.calls == 1)
        for row in _rows(4):  # two full batches
            buffer.add(row)
        await asyncio.sleep(0.1)
        assert writer.calls == 1  # the retry waits 0.2 s after the failure, full batches or not
    finally:
        await buffer.stop()
    assert writer.rows == [("a",), *_rows(4)]


async def test_concurrent_adds_during_a_slow_write_go_to_the_next_batch():
    writer = Recorder()
    writer.gate = asyncio.Event()
    buffer = EventBuffer(writer, flush_interval=60)
    for row in _rows(3):
        buffer.add(row)
    flushing = asyncio.create_task(buffer.flush())
    await _until(writer.entered.is_set)

    async def add_many(start: int) -> None:
        for row in _rows(50, start=start):
            buffer.add(row)
            await asyncio.sleep(0)

    await asyncio.gather(add_many(3), add_many(53))
    assert buffer.pending == 103  # 3 in the write, 100 waiting
    writer.gate.set()
    assert await flushing == 3
    assert writer.batches == [_rows(3)]
    assert await buffer.flush() == 100
    assert sorted(writer.rows) == _rows(103)
    assert len(writer.rows) == 103


async def test_a_cancelled_write_puts_its_rows_back():
    writer = Recorder()
    writer.gate = asyncio.Event()
    buffer = EventBuffer(writer)
    for row in _rows(3):
        buffer.add(row)
    flushing = asyncio.create_task(buffer.flush())
    await _until(writer.entered.is_set)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert buffer.pending == 3
    writer.gate.set()
    await buffer.flush()
    assert writer.rows == _rows(3)


async def test_stop_retries_a_transient_failure_before_giving_up():
    writer = Recorder(fail_times=2)
    buffer = EventBuffer(writer, flush_interval=0.01, max_backoff=0.02)
    buffer.add(("a",))
    await buffer.stop(give_up_after=2.0)
    assert writer.rows == [("a",)]


async def test_stop_raises_and_keeps_the_rows_when_the_writer_never_recovers():
    writer = Recorder(fail_times=10**6)
    buffer = EventBuffer(writer, flush_interval=0.01, max_backoff=0.02)
    buffer.add(("a",))
    buffer.add(("b",))
    with pytest.raises(ConnectionError):
        await buffer.stop(give_up_after=0.1)
    assert buffer.pending == 2
    assert writer.calls >= 2
