"""The date range a report covers, in the reader's time zone, and its UTC hours.

Rollups are kept per UTC hour, so a local day is the UTC hours that start within it: exact for
every zone whose offset is a whole number of hours (nearly all of them, summer time included);
in the few zones on a half or quarter hour (India, Nepal, parts of Australia) a day's edges fall
on the UTC hour just before local midnight."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.core import clock, hours
from server.core.errors import Invalid
from server.core.hours import utc
from server.core.i18n import _

DEFAULT_DAYS = 30
MAX_DAYS = 366


class BadPeriod(Invalid):
    """Dates or a zone that cannot be read: a 400, as the request itself is malformed."""

    status_code = 400


def zone(name: str) -> ZoneInfo:
    """A known IANA time zone (server/core/hours.py); BadPeriod otherwise: in a report's query it
    makes the request itself malformed."""
    try:
        return hours.zone(name)
    except Invalid as exc:
        raise BadPeriod(exc.message, field="tz") from None


@dataclass(frozen=True)
class Period:
    start: date  # the first local day
    end: date  # the last local day, included
    tz_name: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz_name)

    @property
    def start_utc(self) -> datetime:
        return _hour_at_or_before(datetime.combine(self.start, datetime.min.time(), self.tz))

    @property
    def end_utc(self) -> datetime:
        """The end of the last day (excluded)."""
        return _hour_at_or_before(datetime.combine(self.end + timedelta(days=1), datetime.min.time(), self.tz))

    def day_of(self, hour: datetime) -> date:
        """The local day a UTC hour starts in."""
        return utc(hour).astimezone(self.tz).date()

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def local(self, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        return utc(moment).astimezone(self.tz)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "tz": self.tz_name,
            "start_utc": self.start_utc.isoformat(),
            "end_utc": self.end_utc.isoformat(),
        }


def _hour_at_or_before(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _date(params: Mapping[str, Any], key: str, message: str) -> date | None:
    raw = params.get(key)
    raw = raw.strip() if isinstance(raw, str) else ""
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadPeriod(message, field=key) from None


def parse(params: Mapping[str, Any], *, saved_tz: str = "", now: datetime | None = None) -> Period:
    """The period asked for in `from`, `to` and `tz` (all optional): by default the last 30 days,
    today included, in the reader's saved time zone (or UTC)."""
    raw_tz = params.get("tz")
    tz_name = (raw_tz.strip() if isinstance(raw_tz, str) and raw_tz.strip() else "") or saved_tz or "UTC"
    tz = zone(tz_name)
    today = (now or clock.now()).astimezone(tz).date()
    end = _date(params, "to", _("The end date must look like 2026-11-23.")) or today
    start = _date(params, "from", _("The start date must look like 2026-11-23.")) or end - timedelta(
        days=DEFAULT_DAYS - 1
    )
    if start > end:
        raise BadPeriod(_("The start date is after the end date."), field="from")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadPeriod(_("A report covers at most %(days)s days: narrow the dates.", days=MAX_DAYS), field="from")
    return Period(start=start, end=end, tz_name=tz_name)
