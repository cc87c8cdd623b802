"""Mail to people by who they are: the address, language and time zone come from their account.

Every domain above accounts writes its messages through here, inside the transaction of the event
(server/mail/outbox.py: the message exists exactly when its event does). A disabled account gets
nothing; a notification its owner turned off is not written."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.accounts.tables import Role, User
from server.mail import outbox
from server.mail.outbox import Recipient


async def recipient(user_id: int) -> Recipient | None:
    row = (
        await User.select(User.id, User.email, User.role, User.language, User.time_zone, User.is_active)
        .where(User.id == user_id)
        .first()
    )
    if row is None or not row["is_active"]:
        return None
    return Recipient(
        email=row["email"],
        user_id=row["id"],
        role=row["role"],
        language=row["language"],
        time_zone=row["time_zone"],
    )


async def send(
    kind: str,
    user_id: int,
    context: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> int | None:
    """Write one message of `kind` to this user (None: not written, see outbox.enqueue)."""
    to = await recipient(user_id)
    if to is None:
        return None
    return await outbox.enqueue(kind, to, context, dedupe_key=dedupe_key, now=now)


async def send_to_role(
    kind: str,
    roles: tuple[Role, ...],
    context: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    now: datetime | None = None,
    skip: frozenset[int] | set[int] = frozenset(),
) -> list[int]:
    """Write the message to every active user of these roles (finance's notices) but those in `skip`.
    `dedupe_key`, when given, is made per person (`<key>:<user id>`)."""
    ids = await User.select(User.id).where(User.role.is_in([r.value for r in roles]), User.is_active.eq(True))
    written = []
    for row in sorted(ids, key=lambda r: r["id"]):
        if row["id"] in skip:
            continue
        key = f"{dedupe_key}:{row['id']}" if dedupe_key else None
        if (row_id := await send(kind, row["id"], context, dedupe_key=key, now=now)) is not None:
            written.append(row_id)
    return written
