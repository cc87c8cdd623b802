"""What every /api/v1 list shares: opaque cursors over ids, newest first.

A list answers `{"items": [...], "next_cursor": "..."}`; the client passes `cursor=<next_cursor>` for
the next page and stops when it is null. Keyset pagination (`id < last id seen`) keeps a page's
cost flat however deep the client reads, and rows written meanwhile never shift a page."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, TypeVar

from server.core.errors import DomainError
from server.core.i18n import _

T = TypeVar("T")

_PREFIX = "id:"


class BadCursor(DomainError):
    status_code = 400
    code = "invalid_cursor"


class Cursor:
    @staticmethod
    def encode(last_id: int) -> str:
        return base64.urlsafe_b64encode(f"{_PREFIX}{last_id}".encode()).decode().rstrip("=")

    @staticmethod
    def decode(cursor: str | None) -> int | None:
        """The id to continue below, or None for the first page."""
        if cursor is None or cursor == "":
            return None
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            text = ""
        if text.startswith(_PREFIX) and text[len(_PREFIX) :].isdigit() and len(text) < 24:
            return int(text[len(_PREFIX) :])
        raise BadCursor(
            _("That cursor is not one this API gave out: pass the next_cursor of the previous page."),
            field="cursor",
        )


def page(rows: Sequence[T], limit: int, *, key: str = "id") -> tuple[list[T], str | None]:
    """The first `limit` of `limit + 1` fetched rows, and the cursor of the next page (None when none)."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    last: Any = items[-1]
    last_id = last[key] if isinstance(last, dict) else getattr(last, key)
    return items, Cursor.encode(int(last_id))
