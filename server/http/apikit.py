"""What every /api/v1 request shares: cursors over ids for lists (newest first), and the rules
every API key's request goes through (its scope, its rate limit, Idempotency-Key).

A list answers `{"items": [...], "next_cursor": "..."}`; the client passes `cursor=<next_cursor>`
for the next page and stops when it is null (handlers take `cursor: CursorQuery = None,
limit: LimitQuery = 50`). Keyset pagination (`id < last id seen`) keeps a page's cost flat
however deep the client reads, and rows written meanwhile never shift a page."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Annotated, Any, TypeVar

from litestar.exceptions import ClientException
from litestar.middleware import ASGIMiddleware
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import QueryParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.accounts import idempotency
from server.accounts.identity import CurrentUser
from server.core import db
from server.core.errors import Conflict, DomainError, Forbidden, Invalid, TooManyRequests
from server.core.i18n import _
from server.core.logthrottle import LogThrottle
from server.http.web import API_PREFIX, POSTGRES_MAX_ID, SQLITE_MAX_ID, header

T = TypeVar("T")

# A cursor is the id the next page continues below, in digits: every string the OpenAPI document
# admits (the pattern) is one this API could have given out, so a client (or a fuzzer) that keeps
# to the document is never refused.
CURSOR_PATTERN = r"^[1-9][0-9]{0,17}$"

CursorQuery = Annotated[
    str | None,
    QueryParameter(
        description="The `next_cursor` of the previous page; leave it out for the first page.",
        pattern=CURSOR_PATTERN,
    ),
]
LimitQuery = Annotated[int, QueryParameter(ge=1, le=200, description="Items per page, 1 to 200 (default 50).")]


class BadCursor(DomainError):
    status_code = 400
    code = "invalid_cursor"


class Cursor:
    @staticmethod
    def encode(last_id: int) -> str:
        return str(last_id)

    @staticmethod
    def decode(cursor: str | None) -> int | None:
        """The id to continue below, or None for the first page and for a cursor past every id the
        engine can hold (it bounds nothing; PostgreSQL refuses to compare a SERIAL with it)."""
        if cursor is None or cursor == "":
            return None
        if cursor.isascii() and cursor.isdigit() and len(cursor) <= 18 and not cursor.startswith("0"):
            value = int(cursor)
            return None if value > (SQLITE_MAX_ID if db.is_sqlite() else POSTGRES_MAX_ID) else value
        raise BadCursor(
            _("That cursor is not one this API gave out: pass the next_cursor of the previous page."),
            field="cursor",
        )


# Periods: `since` (included) and `until` (excluded), each a date or an RFC 3339 date-time.
_INSTANT = {
    "one_of": None,
    "type": None,
    "any_of": [
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
    ],
}
SinceQuery = Annotated[
    str | None,
    QueryParameter(
        description="From this instant on, included: a date (YYYY-MM-DD, from 00:00 UTC) or an RFC 3339 "
        "date-time (2026-12-01T08:00:00Z; without an offset, UTC)",
        schema_extra=_INSTANT,
    ),
]
UntilQuery = Annotated[
    str | None,
    QueryParameter(
        description="Up to this instant, excluded: a date (YYYY-MM-DD: that whole day, UTC, is included) or "
        "an RFC 3339 date-time",
        schema_extra=_INSTANT,
    ),
]


def instant(raw: str | None, field: str, *, end: bool = False) -> datetime | None:
    """A `since`/`until` value as a UTC instant. A date is its midnight UTC; as an `end`, the next
    midnight (so `until=2026-12-01` includes that day). Raises Invalid naming the field otherwise."""
    if raw is None:
        return None
    text = raw.strip().upper()  # RFC 3339 allows a lower-case t and z
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, clock_time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise Invalid(
            _(
                "%(field)s must be a date such as 2026-12-01 or a date-time such as 2026-12-01T08:00:00Z.",
                field=field,
            ),
            field=field,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def period(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """The period a list's `since` and `until` ask for (a `since` after `until` is an empty one)."""
    return instant(since, "since"), instant(until, "until", end=True)


def page(rows: Sequence[T], limit: int, *, key: str = "id") -> tuple[list[T], str | None]:
    """The first `limit` of `limit + 1` fetched rows, and the cursor of the next page (None when none)."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    last: Any = items[-1]
    last_id = last[key] if isinstance(last, dict) else getattr(last, key)
    return items, Cursor.encode(int(last_id))


# --- what every API key's request goes through -------------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WINDOW_SECONDS = 60
MAX_IDEMPOTENCY_KEY = 255

_log = logging.getLogger("affnet.api")
_rate_unavailable = LogThrottle(_log, "API rate limit (Redis unreachable: requests let through)")


class ApiKeyPolicyMiddleware(ASGIMiddleware):
    """For a request authenticated by an API key: a read-only key may not change anything, each key
    has its rate limit (counted in Redis, so every process and host shares it), and a POST, PUT,
    PATCH or DELETE with an Idempotency-Key is run once and answered the same when retried."""

    should_bypass_for_scope = staticmethod(lambda scope: not scope["path"].startswith(API_PREFIX))

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        user: CurrentUser | None = scope.get("user")
        if user is None or user.api_key_id is None:
            await next_app(scope, receive, send)
            return
        method: str = scope["method"]
        if user.api_scope == "read" and method not in SAFE_METHODS:
            raise Forbidden(
                _("This API key is read-only: create a key with read and write access to change anything."),
                code="read_only_key",
            )
        send = await _rate_limited(scope, user, send)
        key = header(scope, b"idempotency-key")
        if key is None or method in SAFE_METHODS:
            await next_app(scope, receive, send)
            return
        await _idempotent(scope, receive, send, next_app, user.api_key_id, _checked_key(key))


async def _rate_limited(scope: Scope, user: CurrentUser, send: Send) -> Send:
    """Count the request in its key's minute (or refuse it: 429 with Retry-After); the answer then
    carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset."""
    limit = user.api_requests_per_minute
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    reset = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    redis = scope["litestar_app"].state.redis
    name = f"api:rate:{user.api_key_id}:{window}"
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(name)
            pipe.expire(name, WINDOW_SECONDS + 5)
            used, _expiry = await pipe.execute()
    except Exception:  # noqa: BLE001 - Redis away: the API keeps answering, the limit waits for it
        _rate_unavailable.failed("could not count an API request")
        return send
    if used > limit:
        raise TooManyRequests(
            _(
                "This API key has sent %(num)s requests this minute, its limit. Try again in %(seconds)s seconds.",
                num=limit,
                seconds=reset,
            ),
            retry_after=reset,
            code="rate_limited",
        )
    extra = [
        (b"ratelimit-limit", str(limit).encode()),
        (b"ratelimit-remaining", str(limit - used).encode()),
        (b"ratelimit-reset", str(reset).encode()),
    ]

    async def send_with_limits(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return send_with_limits


def _checked_key(key: str) -> str:
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise BadIdempotencyKey(
            _("An Idempotency-Key is 1 to %(num)s printable ASCII characters, e.g. a UUID.", num=MAX_IDEMPOTENCY_KEY),
            field="Idempotency-Key",
        )
    return key


class BadIdempotencyKey(DomainError):
    status_code = 400
    code = "invalid_idempotency_key"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientException("The request body did not arrive whole.")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _idempotent(scope: Scope, receive: Receive, send: Send, next_app: ASGIApp, api_key_id: int, key: str) -> None:
    body = await _read_body(receive)
    hashed = idempotency.request_hash(scope["method"], scope["path"], scope.get("query_string", b""), body)
    claim = await idempotency.claim(api_key_id, key, hashed)
    if isinstance(claim, idempotency.Mismatch):
        raise Conflict(
            _(
                "This Idempotency-Key was already used for another request. Use a new key for a new request; "
                "a retry must send exactly the same request."
            ),
            code="idempotency_key_reused",
        )
    if isinstance(claim, idempotency.Running):
        raise Conflict(
            _("A request with this Idempotency-Key is still running. Try again in a moment for its answer."),
            code="idempotency_key_in_use",
        )
    if isinstance(claim, idempotency.Replay):
        headers = [(b"content-length", str(len(claim.body)).encode()), (b"idempotent-replayed", b"true")]
        if claim.content_type:
            headers.append((b"content-type", claim.content_type.encode("latin-1")))
        await send({"type": "http.response.start", "status": claim.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": claim.body})
        return

    delivered = False

    async def replay_body() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()  # after the body: the client's disconnect, if it comes
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 0
    content_type = ""
    answer: list[bytes] = []

    async def recording_send(message: Message) -> None:
        nonlocal status, content_type
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    content_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            answer.append(message.get("body", b""))
        await send(message)

    try:
        await next_app(scope, replay_body, recording_send)
    except BaseException:
        await idempotency.release(claim)
        raise
    if status == 0:
        await idempotency.release(claim)
    else:
        await idempotency.finish(claim, status, content_type, b"".join(answer))
