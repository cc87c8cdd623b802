"""One file of an event journal (server/tracking/journal.py): its format, writing it, reading it back.

A segment is a file of SEGMENT_SIZE bytes, reserved on disk when it is made (posix_fallocate, so
a full disk shows up then, as an error, never later while writing) and mapped into memory
(MAP_SHARED). Appending a record is a memory copy into the mapping: no system call, and the
event loop keeps the GIL (a write() per click would hand it to the SQLite writer's thread).
The mapped pages are the file's pages in the kernel's page cache, so a record is in the file the
moment it is copied: a process killed right after keeps it; only a machine crash before the
kernel writes the pages back (or before `sync`) can lose it.

Layout: MAGIC (16 bytes); the committed mark (u64 offset + its CRC-32: records before it are in
the database, so a replay starts there; a mark that does not check out means "replay from the
start", never "skip"); then from DATA_START records of <u32 length><u32 CRC-32> + marshal'ed
list of str/int/float/None, the event's moment (an aware datetime) stored as its timestamp.
The unused rest of the file reads as zeros, so a zero length ends the records; a record whose
CRC does not match (a process killed mid-copy, before it answered) ends them too, and is logged.
"""

from __future__ import annotations

import marshal
import mmap
import os
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

MAGIC = b"affnet-journal2\n"
SEGMENT_SIZE = 8 << 20  # ~45,000 clicks
_MARK = struct.Struct("<QI")  # committed offset, CRC-32 of its 8 bytes
_MARK_AT = len(MAGIC)
DATA_START = 32
_FRAME = struct.Struct("<II")  # payload length, CRC-32 of the payload
_SCALARS = (str, int, float, type(None))


def encode(row: tuple, moment_at: int) -> bytes:
    values = list(row)
    values[moment_at] = values[moment_at].timestamp()
    payload = marshal.dumps(values)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes, moment_at: int) -> tuple:
    # Only this service's own files (a 0700 directory) are read, and marshal never runs code; a
    # record holding anything but a flat list of scalars is refused rather than trusted.
    values = marshal.loads(payload)  # noqa: S302
    if type(values) is not list or len(values) <= moment_at or not all(type(v) in _SCALARS for v in values):
        raise ValueError("not a journaled row")
    values[moment_at] = datetime.fromtimestamp(values[moment_at], UTC)
    return tuple(values)


def _mark(offset: int) -> bytes:
    raw = offset.to_bytes(8, "little")
    return _MARK.pack(offset, zlib.crc32(raw))


class Segment:
    """A segment being written by this process."""

    __slots__ = ("path", "offset", "_map")

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, SEGMENT_SIZE)
            self._map = mmap.mmap(fd, SEGMENT_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)  # the mapping keeps the file
        self._map[:_MARK_AT] = MAGIC
        self._map[_MARK_AT : _MARK_AT + _MARK.size] = _mark(DATA_START)
        self.path = path
        self.offset = DATA_START

    def fits(self, frame: bytes) -> bool:
        return self.offset + len(frame) <= SEGMENT_SIZE

    def write(self, frame: bytes) -> None:
        end = self.offset + len(frame)
        self._map[self.offset : end] = frame
        self.offset = end

    def read(self, offset: int, limit: int, moment_at: int) -> tuple[list[tuple], int]:
        """Up to `limit` rows written from `offset` on (a record boundary), and the offset after
        them: how a buffer takes back rows it let go of from memory (its journal still has them)."""
        rows: list[tuple] = []
        data = self._map
        end = self.offset
        while offset < end and len(rows) < limit:
            length, crc = _FRAME.unpack_from(data, offset)
            start = offset + _FRAME.size
            payload = data[start : start + length]
            if zlib.crc32(payload) != crc:
                raise ValueError(f"event journal {self.path}: record at {offset} does not check out")
            rows.append(_decode(payload, moment_at))
            offset = start + length
        return rows, offset

    def mark_committed(self, offset: int) -> None:
        """Records before `offset` are in the database: a replay of this file starts there."""
        if not self._map.closed:
            self._map[_MARK_AT : _MARK_AT + _MARK.size] = _mark(offset)

    def sync(self) -> None:
        """Write the file's dirty pages to disk. Through a descriptor of its own, not the mapping:
        it runs in a thread, and the event loop may unmap a committed segment meanwhile (on
        Linux, fdatasync writes back pages dirtied through a shared mapping too)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return  # committed and removed meanwhile
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._map.close()


def read_range(path: str, start: int, end: int, limit: int, moment_at: int = 1) -> tuple[list[tuple], int]:
    """Up to `limit` rows of the records written between `start` and `end` (record boundaries another
    process gave: its records there are whole) of a segment file, and the offset after them. How a
    click writer process (server/tracking/writer_process.py) reads what the serving process journaled,
    from the page cache the two share: a record that does not check out is an error, never skipped."""
    rows: list[tuple] = []
    if start >= end:
        return rows, start
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    at, stop = 0, len(data)
    if stop != end - start:
        raise ValueError(f"event journal {path}: ends at {start + stop}, before {end}")
    while at < stop and len(rows) < limit:
        length, crc = _FRAME.unpack_from(data, at)
        payload = data[at + _FRAME.size : at + _FRAME.size + length]
        if length == 0 or len(payload) != length or zlib.crc32(payload) != crc:
            raise ValueError(f"event journal {path}: record at {start + at} does not check out")
        rows.append(_decode(payload, moment_at))
        at += _FRAME.size + length
    return rows, start + at


def read_segment(path: Path, moment_at: int = 1) -> tuple[list[tuple], int]:
    """The rows of one segment after its committed mark, and how many bytes after the last whole
    record are not zeros (0 unless a record was torn: a crash in the middle of writing it)."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return [], len(data)
    at = DATA_START
    offset, crc = _MARK.unpack_from(data, _MARK_AT)
    if crc == zlib.crc32(offset.to_bytes(8, "little")) and DATA_START <= offset <= len(data):
        at = offset
    rows: list[tuple] = []
    end = len(data)
    while at + _FRAME.size <= end:
        length, crc = _FRAME.unpack_from(data, at)
        if length == 0:
            break
        start = at + _FRAME.size
        payload = data[start : start + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break
        try:
            rows.append(_decode(payload, moment_at))
        except (ValueError, TypeError, EOFError, OverflowError):
            break
        at = start + length
    return rows, (end - at) - data.count(0, at)
