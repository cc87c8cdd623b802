"""The one clock. Code that decides with time (holds, hours, payout periods, expiries) takes `now`
from its caller: a worker job from `ctx["clock"]` (workers/settings.py), a request from the moment
it arrived. `now()` is where a caller with no moment of its own reads the time; tests fix time by
passing `now`, not by patching this."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def now() -> datetime:
    """The current instant, timezone-aware, in UTC."""
    return datetime.now(UTC)
