"""Single-use, expiring secrets for the links account mail carries (verify an address, reset a
password, confirm a new address, unlock an account). The link holds 256 random bits; only their
SHA-256 is stored, so a copy of the database opens nothing. Using one marks it used in the same
transaction as the change it allows: a second use, or a use after expiry, changes nothing."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.core import clock, hours
from server.mail.tables import MailToken, TokenPurpose

LIFETIME = {
    TokenPurpose.verify_email: timedelta(days=7),
    TokenPurpose.reset_password: timedelta(hours=1),
    TokenPurpose.change_email: timedelta(days=1),
    TokenPurpose.unlock: timedelta(hours=1),
}


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Used:
    user_id: int
    email: str


class TokenProblem(Exception):
    """Why a link does not work: unknown, expired or used (the page says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "unknown", "expired" or "used"


async def issue(purpose: TokenPurpose, user_id: int, email: str, now: datetime | None = None) -> str:
    """A new token (call inside the transaction that writes its mail); the secret goes in the link only."""
    now = now or clock.now()
    secret = secrets.token_urlsafe(32)
    await MailToken.insert(
        MailToken(
            token_hash=_sha256(secret),
            purpose=purpose.value,
            user=user_id,
            email=email,
            created_at=now,
            expires_at=now + LIFETIME[purpose],
        )
    )
    return secret


async def peek(purpose: TokenPurpose, secret: str, now: datetime | None = None) -> Used:
    """What a token would allow, without using it (the page showing the reset form); TokenProblem if nothing."""
    now = now or clock.now()
    row = (
        await MailToken.select(MailToken.id, MailToken.user, MailToken.email, MailToken.expires_at, MailToken.used_at)
        .where(MailToken.token_hash == _sha256(secret or ""), MailToken.purpose == purpose.value)
        .first()
    )
    if row is None:
        raise TokenProblem("unknown")
    if row["used_at"] is not None:
        raise TokenProblem("used")
    if hours.utc(row["expires_at"]) <= now:
        raise TokenProblem("expired")
    return Used(user_id=row["user"], email=row["email"])


async def use(purpose: TokenPurpose, secret: str, now: datetime | None = None) -> Used:
    """Mark the token used (call inside the transaction of the change it allows) and say for whom.
    Of two uses at once, one wins: the other finds it used."""
    now = now or clock.now()
    found = await peek(purpose, secret, now)
    taken = (
        await MailToken.update({MailToken.used_at: now})
        .where(MailToken.token_hash == _sha256(secret), MailToken.used_at.is_null())
        .returning(MailToken.id)
    )
    if not taken:
        raise TokenProblem("used")
    return found


async def retire(purpose: TokenPurpose, user_id: int, now: datetime | None = None) -> None:
    """Mark every open token of this purpose for the user used (a newer one replaces them, or the
    password they would reset was just changed)."""
    await MailToken.update({MailToken.used_at: now or clock.now()}).where(
        MailToken.user == user_id, MailToken.purpose == purpose.value, MailToken.used_at.is_null()
    )
