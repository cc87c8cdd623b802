"""The local journal that makes a buffered event (a click, an impression) durable as it is answered.

An EventBuffer hands each row it takes to this process's journal before the request is answered:
one framed record copied into a memory-mapped segment file (server/tracking/segment.py), no
system call. The rows reach the database in batches later; once a batch is committed, a mark in
the segment moves past it, and segments wholly committed are deleted. A process that dies in
between (kill -9, the OOM killer) leaves its segments behind, and the next process to start on
the journal's directory replays them through its own buffer; the writers insert each event at
most once (unique click id / offer), so a row replayed twice is stored once.

Durability: a record copied into the mapping is in the kernel's page cache, which outlives the
process: a killed process loses nothing. Only a machine crash can lose page-cache data, and
only rows the database has not committed yet: in normal operation that is the last flush
interval, which the database would not have had either. While database writes fail, the buffer
syncs the journal to disk after every failed attempt (msync, off the event loop), so a backlog
waiting for the database also survives a machine crash, but for its last few seconds. Syncing
every click would cost a disk flush per request (~0.5 ms measured here: most of a click's time).

Who replays what: each process owns its files through an exclusive flock on `<owner>.lock`, held
for its life and released by the kernel when it dies however it dies. A file whose lock can be
taken belongs to a dead process; pids are only part of the name (a pid can be reused, a lock
cannot be inherited). The owner name is `<host>.<pid>.<random>`, so processes of one host never
share a file, and the directory is per database (see `directory`), so rows are never replayed
into another database than the one they were meant for. The directory must be on a local disk of
the host: each host replays its own processes' journals.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from server.tracking.segment import DATA_START, Segment, encode, read_segment

log = logging.getLogger("affnet.tracking")

_ERROR_LOG_INTERVAL = 10.0
_RETRY_INTERVAL = 1.0  # after a segment could not be made (disk full), try again at most this often


def database_key(database_url: str) -> str:
    """A short stable name for the database rows are meant for: engine, host, port and database
    (or the SQLite file's absolute path), never the password, which may rotate."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        path = unquote(database_url.removeprefix("sqlite:///")) or "affnet.sqlite3"
        ident = f"sqlite:{Path(path).resolve()}"
    else:
        ident = f"postgres:{(parts.hostname or '127.0.0.1').lower()}:{parts.port or 5432}/{parts.path.lstrip('/')}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def directory(base: str | Path, kind: str, database_url: str) -> Path:
    """Where one kind of event ("clicks", "impressions") is journaled for one database."""
    return Path(base) / f"{kind}-{database_key(database_url)}"


def _owner_name() -> str:
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"
    return f"{host}.{os.getpid()}.{secrets.token_hex(4)}"


def _segment_owner(name: str) -> str | None:
    """`<owner>.<seq>.seg` -> owner; None for anything else."""
    if not name.endswith(".seg"):
        return None
    owner, _, seq = name[:-4].rpartition(".")
    return owner if owner and seq.isdigit() else None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where the journal stood when a buffer took its rows for a write: the segments before the
    current one, and how far the current one was written."""

    full: tuple[Segment, ...]
    current: Segment | None
    offset: int


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in the journal between two records: in `segment`, at `offset` (its end: the next
    record is the first of the following segment)."""

    segment: Segment
    offset: int


class Journal:
    """One process's append-only journal of one kind of event, in `path` (a directory)."""

    def __init__(self, path: str | Path, *, moment_at: int = 1) -> None:
        self.path = Path(path)
        self.moment_at = moment_at  # the row's aware datetime, stored as a timestamp
        self.owner = ""
        self.failed_appends = 0  # rows that could only be kept in memory (disk full, I/O error)
        self._lock_fd = -1
        self._seq = 0
        self._current: Segment | None = None
        self._full: list[Segment] = []  # segments written to the end, not yet wholly committed
        self._retry_at = 0.0
        self._last_error_log = 0.0

    @classmethod
    def of(cls, base: str | Path, kind: str, database_url: str) -> Journal:
        """The journal of one kind of event for one database, under the journal directory `base`."""
        return cls(directory(base, kind, database_url))

    @property
    def is_open(self) -> bool:
        return self._lock_fd >= 0

    def segments(self) -> list[Path]:
        """This process's segment files, oldest first: rows not known to be in the database yet."""
        return [s.path for s in self._all()]

    def _all(self) -> list[Segment]:
        return [*self._full, self._current] if self._current is not None else list(self._full)

    # --- life cycle ---------------------------------------------------------------------------------

    def open(self) -> list[tuple]:
        """Take a journal of our own, then replay every journal left by a process that is no longer
        running: their rows are returned and already copied into ours (synced to disk) before their
        files are removed, so a crash during recovery loses nothing either."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.owner = _owner_name()
        # The lock file appears under its final name already locked (rename is atomic), so a
        # recovering process can never take a live owner's lock in the moment before it is held.
        tmp = self.path / f".{self.owner}.lock.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"pid {os.getpid()} host {socket.gethostname()} since {time.time():.0f}\n".encode())
            os.rename(tmp, self.path / f"{self.owner}.lock")
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self._lock_fd = fd
        self._current = self._new_segment()  # a disk too full for one segment fails the start, loudly
        return self._recover()

    def close(self, *, committed: bool) -> None:
        """Stop journaling. `committed`: every row taken is in the database, so the files go;
        otherwise they stay for the next process to replay."""
        for segment in self._all():
            segment.close()
            if committed:
                segment.path.unlink(missing_ok=True)
        self._full, self._current = [], None
        if committed:
            (self.path / f"{self.owner}.lock").unlink(missing_ok=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the lock: the files, if any, are now a dead process's
            self._lock_fd = -1

    # --- the request path ---------------------------------------------------------------------------

    def append(self, row: tuple) -> bool:
        """Journal one row: one record copied into the mapped segment. False if it could not be
        (no segment: the disk was full); the row then lives in memory only, said in the log."""
        frame = encode(row, self.moment_at)
        current = self._current
        if current is None or not current.fits(frame):
            current = self._roll()
            if current is None:
                self.failed_appends += 1
                return False
        current.write(frame)
        return True

    def append_many(self, rows: Iterable[tuple]) -> None:
        for row in rows:
            self.append(row)

    # --- after the database has the rows ------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """Taken as the buffer takes its rows for a write: every record before it belongs to that
        write or to an earlier one."""
        current = self._current
        return Checkpoint(tuple(self._full), current, current.offset if current is not None else 0)

    def mark(self) -> Mark | None:
        """Where the next record will go (None while no segment could be made: disk full)."""
        current = self._current
        if current is not None:
            return Mark(current, current.offset)
        return Mark(self._full[-1], self._full[-1].offset) if self._full else None

    def oldest(self) -> Mark | None:
        """Where the first record not yet committed is, at the earliest (the start of the oldest segment)."""
        segments = self._all()
        return Mark(segments[0], DATA_START) if segments else None

    def read(self, since: Mark, limit: int) -> tuple[list[tuple], Mark]:
        """Up to `limit` rows journaled from `since` on, oldest first, and the mark after them. Rows a
        buffer let go of from memory (they are all here) come back this way. Synchronous: keep
        `limit` to a batch (a few ms of decoding) so the event loop is not held."""
        segments = self._all()
        at = next((i for i, s in enumerate(segments) if s is since.segment), None)
        if at is None:
            raise ValueError("the mark is not in this journal (committed and removed already?)")
        segment, offset = since.segment, since.offset
        rows: list[tuple] = []
        while True:
            while offset >= segment.offset and at + 1 < len(segments):
                at += 1  # the end of a full segment is the start of the next
                segment, offset = segments[at], DATA_START
            if len(rows) >= limit or offset >= segment.offset:
                return rows, Mark(segment, offset)
            got, offset = segment.read(offset, limit - len(rows), self.moment_at)
            rows.extend(got)

    def at_end(self, mark: Mark) -> bool:
        """Nothing has been journaled from `mark` (one `read` or `mark` returned) on."""
        end = self.mark()
        return end is not None and mark.segment is end.segment and mark.offset >= end.offset

    def ranges(self, since: Mark, until: Mark) -> list[tuple[str, int, int]]:
        """The records journaled from `since` up to `until`, as (segment file, start, end) per
        segment, oldest first: what another process reads to store them (read_range)."""
        out: list[tuple[str, int, int]] = []
        started = False
        for segment in self._all():
            if segment is since.segment:
                started = True
            if not started:
                continue
            start = since.offset if segment is since.segment else DATA_START
            end = until.offset if segment is until.segment else segment.offset
            if end > start:
                out.append((str(segment.path), start, end))
            if segment is until.segment:
                return out
        raise ValueError("the marks are not in this journal, in this order")

    def mark_at(self, path: str, offset: int) -> Mark:
        """The place `offset` in this journal's segment file `path` (one `ranges` named)."""
        for segment in self._all():
            if str(segment.path) == path:
                return Mark(segment, offset)
        raise ValueError(f"{path} is not a segment of this journal")

    def checkpoint_at(self, mark: Mark) -> Checkpoint:
        """A checkpoint at `mark` rather than at the end: what a buffer commits once the rows before
        it are written while rows after it wait in the journal only."""
        full: list[Segment] = []
        for segment in self._all():
            if segment is mark.segment:
                return Checkpoint(tuple(full), segment, mark.offset)
            full.append(segment)
        raise ValueError("the mark is not in this journal")

    def committed(self, checkpoint: Checkpoint) -> None:
        """The write taken at `checkpoint` (and every one before it) is in the database: segments
        full by then are deleted, and the one being written then is marked committed up to there."""
        for segment in checkpoint.full:
            segment.close()
            segment.path.unlink(missing_ok=True)
        done = set(map(id, checkpoint.full))
        self._full = [s for s in self._full if id(s) not in done]
        if checkpoint.current is not None:
            checkpoint.current.mark_committed(checkpoint.offset)

    def sync(self) -> None:
        """Put this journal's files on disk (blocking: run it in a thread)."""
        for segment in self._all():
            segment.sync()
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # new files' names are durable too
        finally:
            os.close(dir_fd)

    # --- internals ----------------------------------------------------------------------------------

    def _new_segment(self) -> Segment:
        self._seq += 1
        return Segment(self.path / f"{self.owner}.{self._seq:06d}.seg")

    def _roll(self) -> Segment | None:
        """The current segment is full (or none could be made): begin the next one."""
        if self._lock_fd < 0:
            return None  # not opened yet, or closed at shutdown: the row is in memory only
        if self._current is None and time.monotonic() < self._retry_at:
            return None
        try:
            segment = self._new_segment()
        except OSError as exc:
            if self._current is not None:
                self._full.append(self._current)
                self._current = None
            self._retry_at = time.monotonic() + _RETRY_INTERVAL
            self._log_failure(exc)
            return None
        if self._current is not None:
            self._full.append(self._current)
        self._current = segment
        return segment

    def _log_failure(self, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error(
                "cannot write the event journal in %s (%s): %d events so far are held in memory only "
                "until they are stored, and would be lost if this process were killed",
                self.path,
                error,
                self.failed_appends + 1,
            )

    def _recover(self) -> list[tuple]:
        owners: set[str] = set()
        for entry in self.path.iterdir():
            name = entry.name
            if name.endswith(".lock") and not name.startswith("."):
                owners.add(name[:-5])
            elif (owner := _segment_owner(name)) is not None:
                owners.add(owner)
            elif name.startswith(".") and name.endswith(".lock.tmp"):
                self._remove_stale_tmp(entry)
        owners.discard(self.owner)
        recovered: list[tuple] = []
        for owner in sorted(owners):
            recovered.extend(self._recover_owner(owner))
        return recovered

    def _recover_owner(self, owner: str) -> list[tuple]:
        lock_path = self.path / f"{owner}.lock"
        # A lock file missing while segments exist: its owner is long gone (owners lock before
        # writing); create one so two recovering processes still exclude each other.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []  # alive (or being recovered by another process right now)
            segments = sorted(p for p in self.path.iterdir() if _segment_owner(p.name) == owner)
            rows: list[tuple] = []
            for path in segments:
                try:
                    got, torn = read_segment(path, self.moment_at)
                except FileNotFoundError:
                    continue  # another process recovered it between our listing and our lock
                rows.extend(got)
                if torn:
                    log.warning(
                        "event journal %s: a record is torn (a crash while writing it, before its "
                        "answer); the %d records before it are replayed",
                        path,
                        len(got),
                    )
            if rows:
                self.append_many(rows)
                self.sync()  # ours holds them durably before theirs go
                log.warning(
                    "replayed %d events journaled by %s, a process that stopped before storing them", len(rows), owner
                )
            for path in segments:
                path.unlink(missing_ok=True)
            lock_path.unlink(missing_ok=True)
            return rows
        finally:
            os.close(fd)

    @staticmethod
    def _remove_stale_tmp(path: Path) -> None:
        """A lock file never renamed: its process died while starting. Only old ones: a young one
        may belong to a process between creating and locking it."""
        try:
            if time.time() - path.stat().st_mtime < 60:
                return
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a process starting right now
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
