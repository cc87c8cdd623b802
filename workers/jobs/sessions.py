"""Session housekeeping."""

from __future__ import annotations

from typing import Any

from server.accounts import service as accounts


async def purge_expired_sessions(ctx: dict[str, Any]) -> int:
    """Delete expired login sessions. Idempotent: a second run finds nothing to delete."""
    return await accounts.purge_expired_sessions(now=ctx["clock"]())
