"""One-click unsubscribe (RFC 8058): the link in a notification names the person and the kind, signed,
so following it (or a mail client's POST to it) turns that kind off without logging in. It never
expires (an old mail's link keeps working) and does nothing but turn one notice off."""

from __future__ import annotations

import base64
import hashlib
import hmac

from server.core import clock, db
from server.mail import kinds
from server.mail.outbox import config
from server.mail.tables import MailPreference


def _signature(user_id: int, kind_name: str) -> str:
    key = hmac.new(config().secret_key.encode(), b"affnet-unsubscribe", hashlib.sha256).digest()
    mac = hmac.new(key, f"{user_id}:{kind_name}".encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def token(user_id: int, kind_name: str) -> str:
    return f"{user_id}.{kind_name}.{_signature(user_id, kind_name)}"


def read(value: str) -> tuple[int, str] | None:
    """The (user id, kind) a token stands for, or None when it is not one of ours."""
    parts = (value or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in kinds.KINDS:
        return None
    user_id, kind_name = int(parts[0]), parts[1]
    if not kinds.kind(kind_name).optional:
        return None
    if not hmac.compare_digest(parts[2], _signature(user_id, kind_name)):
        return None
    return user_id, kind_name


async def set_preference(user_id: int, kind_name: str, enabled: bool) -> None:
    """Turn one kind on or off for a person (the settings page, the unsubscribe link)."""
    now = clock.now()
    async with db.transaction():
        updated = (
            await MailPreference.update({MailPreference.enabled: enabled, MailPreference.updated_at: now})
            .where(MailPreference.user == user_id, MailPreference.kind == kind_name)
            .returning(MailPreference.id)
        )
        if not updated:
            await MailPreference.insert(MailPreference(user=user_id, kind=kind_name, enabled=enabled, updated_at=now))


async def preferences(user_id: int, role: str) -> list[tuple[kinds.Kind, bool]]:
    """Each notification this person's role may receive, and whether they do."""
    rows = await MailPreference.select(MailPreference.kind, MailPreference.enabled).where(
        MailPreference.user == user_id
    )
    chosen = {r["kind"]: bool(r["enabled"]) for r in rows}
    return [(k, chosen.get(k.name, True)) for k in kinds.for_role(role)]
