"""What the advertiser API's routes share: the caller, typed ids and amounts, the page size, date
filters, and the translation of the pages' form fields back to the JSON fields a client sent."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, TypeVar

import msgspec
from litestar import Request
from litestar.params import Parameter

from server.accounts.identity import CurrentUser
from server.core import db
from server.core.errors import Conflict, Invalid
from server.core.i18n import _
from server.http.apikit import Cursor, CursorQuery, LimitQuery
from server.http.web import POSTGRES_MAX_ID, SQLITE_MAX_ID, current_user

T = TypeVar("T")

# An id a row can have on either engine (PostgreSQL's SERIAL is the smaller).
Id = Annotated[int, msgspec.Meta(ge=1, le=POSTGRES_MAX_ID)]
# Amounts in minor units of the campaign's currency, and shares of a sale in basis points (100 % = 10,000).
Minor = Annotated[int, msgspec.Meta(gt=-1, le=10**15)]
BasisPoints = Annotated[int, msgspec.Meta(gt=-1, le=10_000)]

Limit = LimitQuery
CursorParam = CursorQuery
_INSTANT = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
Since = Annotated[
    str | None,
    Parameter(
        description="From this date (YYYY-MM-DD, 00:00 UTC) or instant (ISO 8601; UTC without an offset), included",
        pattern=_INSTANT,
    ),
]
Until = Annotated[
    str | None,
    Parameter(
        description="Up to this date (YYYY-MM-DD: the whole day, UTC, included) or instant (ISO 8601), excluded",
        pattern=_INSTANT,
    ),
]


# Every POST and PATCH: the Idempotency-Key middleware (server/http/apikit.py) answers 409 for a key
# sent before with another request, or whose first request is still running.
REUSED_KEY = (Conflict, "The Idempotency-Key was sent before with another request, or its request is still running.")


def before_id(cursor: str | None) -> int | None:
    """The id a page continues below; None (no bound) for the first page, or for a cursor past any
    id the engine can hold (PostgreSQL refuses to compare a SERIAL with a larger number)."""
    value = Cursor.decode(cursor)
    highest = SQLITE_MAX_ID if db.is_sqlite() else POSTGRES_MAX_ID
    return None if value is None or value > highest else value


def advertiser(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted an advertiser


def instant(raw: str | None, field: str, *, end: bool = False) -> datetime | None:
    """A filter's date or datetime as an aware instant; a date ending a period (`end`) is the next
    day's midnight, so the whole day is in. Invalid names the parameter."""
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            value = datetime.combine(day + timedelta(days=1) if end else day, time(), UTC)
        else:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            value = value if value.tzinfo else value.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise Invalid(
            _("%(name)s must be a date such as 2026-12-01 or an instant such as 2026-12-01T08:00:00Z.", name=field),
            field=field,
        ) from None
    return value


def period(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, stop = instant(since, "since"), instant(until, "until", end=True)
    if start is not None and stop is not None and start >= stop:
        raise Invalid(_("“since” must be before “until”."), field="since")
    return start, stop


async def as_sent(call: Awaitable[T], fields: Mapping[str, str]) -> T:
    """Run a service that validates the pages' form fields, naming the JSON field a client sent
    (`fields`: form field -> JSON field) in any refusal."""
    try:
        return await call
    except Invalid as exc:
        if exc.field in fields:
            raise Invalid(exc.message, field=fields[exc.field], code=exc.code) from None
        raise


def no_control_characters(value: str, field: str) -> str:
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise Invalid(_("“%(name)s” contains control characters.", name=field), field=field)
    return value
