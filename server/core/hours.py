"""UTC hours, the unit CPC and CPM earnings are priced in and reports are rolled up by: turning
what a driver hands back into an aware UTC datetime, the hour a moment falls in, and the SQL for
that hour in a query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from server.core import db
from server.core.errors import Invalid

HOUR = timedelta(hours=1)


def utc(moment: datetime | str) -> datetime:
    """Stored times come back naive from some drivers, and as text from a SQLite expression: they
    are UTC."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hour_of(moment: datetime | str) -> datetime:
    """The start of the UTC hour a moment falls in."""
    return utc(moment).replace(minute=0, second=0, microsecond=0)


def hour_sql(column: str) -> str:
    """SQL for the start of the UTC hour a stored time falls in, typed as the engine stores times
    (read it back with `utc`). Callers pass their own column names only; values are bound."""
    if db.is_sqlite():
        # Piccolo stores a UTC datetime as text ("2026-11-23 17:05:03.5+00:00"): its first 13
        # characters name the hour.
        return f"(substr(replace({column}, 'T', ' '), 1, 13) || ':00:00+00:00')"
    return f"(date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


class UnknownZone(Invalid):
    """A time zone name that cannot be read: a 400, as the request itself is malformed."""

    status_code = 400


@lru_cache(maxsize=1)
def zones() -> tuple[str, ...]:
    """The IANA zone names a reader may pick, UTC first."""
    names = sorted(
        z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/", "right/"))
    )
    return ("UTC", *names)


def zone(name: str) -> ZoneInfo:
    """A known IANA time zone; Invalid otherwise."""
    if name == "UTC":
        return ZoneInfo("UTC")
    if name not in zones():
        raise UnknownZone(
            f"“{name[:64]}” is not a time zone we know: pick one from the list, like Europe/Berlin.", field="tz"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - listed but unreadable
        raise UnknownZone(f"The time zone {name} cannot be read on this server.", field="tz") from exc
