"""Recording and reading audit events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from server.audit.tables import AuditEvent
from server.core import clock, db


async def record(action: str, *, actor_id: int | None, object_type: str, object_id: int | None, **detail: Any) -> None:
    await AuditEvent.insert(
        AuditEvent(
            actor=actor_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            detail=json.dumps(detail, sort_keys=True, default=str),
            created_at=clock.now(),
        )
    )


async def record_many(
    action: str, *, actor_id: int | None, object_type: str, items: Sequence[tuple[int | None, dict[str, Any]]]
) -> None:
    """One event per (object id, detail), in one statement: a payout batch settles lines by the hundred."""
    now = clock.now()
    async with db.transaction():
        await db.insert_rows(
            AuditEvent,
            ("actor", "action", "object_type", "object_id", "detail", "created_at"),
            [
                (actor_id, action, object_type, object_id, json.dumps(detail, sort_keys=True, default=str), now)
                for object_id, detail in items
            ],
        )


async def recent(limit: int = 100) -> list[dict[str, Any]]:
    return await (
        AuditEvent.select(AuditEvent.all_columns(), AuditEvent.actor.email.as_alias("actor_email"))
        .order_by(AuditEvent.id, ascending=False)
        .limit(limit)
    )
