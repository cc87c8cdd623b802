"""Failures logged once per interval with a count, not once each: an outage that fails every
request must not write a traceback per request (a dead database once wrote 100 MB in 30 s).

The first failure of a kind is logged whole, with its traceback; later ones within the interval
are only counted, and the next failure after the interval logs "N more failures of KIND in the
last Xs" with the latest traceback, then counting starts again. A count still unsaid when the
failures stop is said by `flush()` (or with the next failure, however late)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL = 10.0


class LogThrottle:
    """One kind of failure ("click redirect", "click flush"), logged at most once per `interval`."""

    __slots__ = ("log", "kind", "interval", "_clock", "_next_at", "_unsaid", "_since", "total")

    def __init__(
        self,
        log: logging.Logger,
        kind: str,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.kind = kind
        self.interval = interval
        self._clock = clock
        self._next_at = 0.0  # no line before this moment
        self._unsaid = 0  # failures counted since the last line
        self._since = 0.0  # when the last line was written
        self.total = 0  # every failure of this kind, for health figures and tests

    def failed(self, message: str, *args: object, exc_info: bool | BaseException = True) -> bool:
        """Note one failure (call it from an except block: the traceback is the current one). It is
        logged, with `message % args`, if it is the first since an interval passed; otherwise only
        counted. Returns whether a line was written."""
        self.total += 1
        now = self._clock()
        if now < self._next_at:
            self._unsaid += 1
            return False
        if self._unsaid:
            self.log.error(
                "%d more failures of %s in the last %.0fs; the latest: " + message,
                self._unsaid,
                self.kind,
                now - self._since,
                *args,
                exc_info=exc_info,
            )
        else:
            self.log.error(message, *args, exc_info=exc_info)
        self._unsaid = 0
        self._since = now
        self._next_at = now + self.interval
        return True

    def flush(self) -> None:
        """Say the count of failures not yet logged (once they stop: a recovery, a shutdown)."""
        if self._unsaid:
            now = self._clock()
            self.log.error("%d more failures of %s in the last %.0fs", self._unsaid, self.kind, now - self._since)
            self._unsaid = 0
            self._since = now
