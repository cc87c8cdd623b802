"""The event journal: what a buffer took is on disk as it is answered, survives its process being
killed, is replayed once by the next process and never by a live one's neighbour, and is dropped
once the database has it."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from server.core.settings import ROOT
from server.tracking.buffer import EventBuffer
from server.tracking.journal import Journal, database_key, directory
from server.tracking.segment import SEGMENT_SIZE, read_segment
from tests.tracking.test_buffer import Recorder, _until


def _rows(n: int, start: int = 0) -> list[tuple]:
    moment = datetime(2026, 12, 4, 17, 0, 0, 123456, tzinfo=UTC)
    return [(f"click-{i}", moment, i, "sub é", None, 2.5) for i in range(start, start + n)]


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def _dead(path: Path, rows: list[tuple]) -> None:
    """What a killed process leaves: its journal with `rows`, its lock released by the kernel."""
    journal = Journal(path)
    journal.open()
    journal.append_many(rows)
    journal.close(committed=False)  # the lock goes as at a process's death; the files stay


def test_rows_read_back_exactly_as_written_with_the_moment_to_the_microsecond(tmp_path):
    rng = random.Random(14)
    rows = [
        (
            f"id-{i}",
            datetime.fromtimestamp(rng.uniform(0, 4_102_444_800), UTC).replace(microsecond=rng.randrange(1_000_000)),
            rng.randrange(1 << 40),
            "x" * rng.randrange(200),
            None,
            "",
        )
        for i in range(2000)
    ]
    journal = Journal(tmp_path)
    journal.open()
    journal.append_many(rows)
    [segment] = [p for p in tmp_path.iterdir() if p.suffix == ".seg"]
    assert read_segment(segment) == (rows, 0)


async def test_a_journal_left_by_a_dead_process_is_replayed_by_the_next_buffer_and_then_removed(tmp_path):
    _dead(tmp_path, _rows(5))
    writer = Recorder()
    buffer = EventBuffer(writer, flush_interval=0.01, journal=Journal(tmp_path))
    await buffer.start()
    try:
        await _until(lambda: writer.rows == _rows(5))
    finally:
        await buffer.stop()
    assert _files(tmp_path) == []  # all stored: nothing left to replay, nothing replayed twice


async def test_a_live_process_journal_is_never_replayed_by_another(tmp_path):
    live = Journal(tmp_path)
    live.open()
    live.append_many(_rows(3))
    writer = Recorder()
    other = EventBuffer(writer, journal=Journal(tmp_path))
    await other.start()
    await other.stop()
    assert writer.rows == []
    assert [read_segment(p)[0] for p in tmp_path.iterdir() if p.name.startswith(live.owner) and p.suffix == ".seg"] == [
        _rows(3)
    ]


def test_a_process_killed_with_sigkill_leaves_every_row_it_journaled(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from tests.tracking.test_journal import _rows
        from server.tracking.journal import Journal
        journal = Journal({str(tmp_path)!r})
        journal.open()
        for row in _rows(1000):
            journal.append(row)
        print("journaled", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert proc.stdout.readline().strip() == "journaled"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
    assert Journal(tmp_path).open() == _rows(1000)


async def test_committed_rows_are_never_replayed_and_a_failed_write_keeps_them_for_replay(tmp_path):
    writer = Recorder(fail_times=1)
    journal = Journal(tmp_path)
    buffer = EventBuffer(writer, journal=journal)
    await buffer.start()
    try:
        for row in _rows(4):
            buffer.add(row)
        try:
            await buffer.flush()
        except ConnectionError:
            pass
        assert read_segment(journal._current.path)[0] == _rows(4)  # the database refused them: still to replay
        buffer.add(_rows(1, start=4)[0])
        assert await buffer.flush() == 5
        assert read_segment(journal._current.path)[0] == []  # all in the database: nothing to replay
        buffer.add(_rows(1, start=5)[0])
        assert read_segment(journal._current.path)[0] == _rows(1, start=5)
    finally:
        await buffer.stop()
    assert writer.rows == _rows(6)
    assert _files(tmp_path) == []


async def test_full_segments_are_deleted_once_their_rows_are_committed(tmp_path):
    writer = Recorder()
    journal = Journal(tmp_path)
    buffer = EventBuffer(writer, journal=journal)
    await buffer.start()
    try:
        buffer.add(_rows(1)[0])
        journal._current.offset = SEGMENT_SIZE - 8  # as if full: the next row opens a second segment
        buffer.add(_rows(1, start=1)[0])
        assert len(journal.segments()) == 2
        await buffer.flush()
        assert [p.name for p in journal.segments()] == [journal._current.path.name]
        assert sorted(p.name for p in tmp_path.glob("*.seg")) == [journal._current.path.name]
    finally:
        await buffer.stop()


async def test_rows_still_unwritten_at_shutdown_stay_in_the_journal_for_the_next_start(tmp_path):
    failing = Recorder(fail_times=1000)
    buffer = EventBuffer(failing, flush_interval=0.01, journal=Journal(tmp_path))
    await buffer.start()
    for row in _rows(3):
        buffer.add(row)
    try:
        await buffer.stop(give_up_after=0.05)
    except ConnectionError:
        pass
    writer = Recorder()
    after = EventBuffer(writer, flush_interval=0.01, journal=Journal(tmp_path))
    await after.start()
    await after.stop()
    assert writer.rows == _rows(3)


def test_a_torn_last_record_is_skipped_and_the_whole_ones_before_it_replayed(tmp_path):
    journal = Journal(tmp_path)
    journal.open()
    journal.append_many(_rows(3))
    end = journal._current.offset
    journal.close(committed=False)
    [segment] = [p for p in tmp_path.iterdir() if p.suffix == ".seg"]
    with open(segment, "r+b") as f:
        f.seek(end)
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a record header whose payload never made it
    assert read_segment(segment) == (_rows(3), 3)  # the 3 non-zero bytes of the torn record
    assert Journal(tmp_path).open() == _rows(3)


def test_a_full_disk_keeps_the_row_in_memory_and_journaling_resumes_when_a_segment_can_be_made(tmp_path, caplog):
    writer = Recorder()
    journal = Journal(tmp_path)
    buffer = EventBuffer(writer, journal=journal)
    journal.open()
    journal._current.offset = SEGMENT_SIZE - 8  # the segment is full: the next row needs another
    blocker = tmp_path / f"{journal.owner}.000002.seg"
    blocker.mkdir()  # and it cannot be made (as with ENOSPC from posix_fallocate)
    buffer.add(_rows(1)[0])
    assert (buffer.pending, journal.failed_appends) == (1, 1)
    assert "cannot write the event journal" in caplog.text
    blocker.rmdir()
    journal._retry_at = 0  # (it retries at most once a second)
    buffer.add(_rows(1, start=1)[0])
    assert journal.failed_appends == 1
    assert read_segment(journal._current.path)[0] == _rows(1, start=1)
    asyncio.run(buffer.flush())
    assert writer.rows == _rows(2)


def test_each_process_and_each_database_has_its_own_files(tmp_path):
    first, second = Journal(tmp_path), Journal(tmp_path)
    first.open()
    second.open()
    first.append(_rows(1)[0])
    assert first.owner != second.owner and str(os.getpid()) in first.owner
    assert sum(1 for p in tmp_path.iterdir() if p.suffix == ".lock") == 2
    seconds = [p for p in tmp_path.iterdir() if p.name.startswith(second.owner + ".") and p.suffix == ".seg"]
    assert [read_segment(p) for p in seconds] == [([], 0)]  # the second process's file holds nothing of the first's
    # Rows are replayed only into the database they were answered for; a password change is the same one.
    assert database_key("postgresql://a:one@db:5432/affnet") == database_key("postgresql://a:two@db:5432/affnet")
    assert database_key("postgresql://a@db:5432/affnet") != database_key("postgresql://a@db:5432/other")
    assert directory(tmp_path, "clicks", "sqlite:///a.db") != directory(tmp_path, "impressions", "sqlite:///a.db")
