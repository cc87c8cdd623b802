"""What the advertiser API's routes share: the caller, typed ids and amounts, the page size, date
filters, and the translation of the pages' form fields back to the JSON fields a client sent."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Annotated, TypeVar

import msgspec
from litestar import Request

from server.accounts.identity import CurrentUser
from server.core.errors import Conflict, Invalid
from server.core.i18n import _
from server.http.web import POSTGRES_MAX_ID, current_user

T = TypeVar("T")

# An id a row can have on either engine (PostgreSQL's SERIAL is the smaller).
Id = Annotated[int, msgspec.Meta(ge=1, le=POSTGRES_MAX_ID)]
# Amounts in minor units of the campaign's currency, and shares of a sale in basis points (100 % = 10,000).
Minor = Annotated[int, msgspec.Meta(gt=-1, le=10**15)]
BasisPoints = Annotated[int, msgspec.Meta(gt=-1, le=10_000)]

# Every POST and PATCH: the Idempotency-Key middleware (server/http/apikit.py) answers 409 for a key
# sent before with another request, or whose first request is still running.
REUSED_KEY = (Conflict, "The Idempotency-Key was sent before with another request, or its request is still running.")


def advertiser(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the guard admitted an advertiser


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
