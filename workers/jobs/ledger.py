"""The nightly ledger check: a thin call into server/reports/finance.py, which records the result
as an audit event the finance dashboard shows, and mails finance when it found a problem (once a
UTC day). Read-only on the ledger, so running it twice does no harm."""

from __future__ import annotations

import logging
from typing import Any

from server.reports import finance

log = logging.getLogger("affnet.ledger")


async def check_ledger(ctx: dict[str, Any]) -> dict[str, Any]:
    """Check every ledger invariant and record what was found (actor: none, the scheduled job)."""
    now = ctx["clock"]() if "clock" in ctx else None
    result = await finance.check_ledger(None, now=now)
    if not result["ok"]:
        log.error("ledger check found %d problem(s): %s", result["problem_count"], result["problems"][:5])
    return {"ok": result["ok"], "problem_count": result["problem_count"]}
