"""Password policy and argon2id hashing (hashing runs in a thread: it is slow on purpose)."""

from __future__ import annotations

import anyio.to_thread
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from server.core.errors import Invalid
from server.core.i18n import _

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

# argon2id with the RFC 9106 second recommended ("low memory") profile, argon2-cffi's default.
_hasher = PasswordHasher(type=Type.ID)
# Verifying against this keeps the time of a login for an unknown email like that of a known one.
_DUMMY_HASH = _hasher.hash("affnet-timing-equaliser")


def check_policy(password: str, *, email: str = "", field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(_("Choose a password of at least %(num)s characters.", num=MIN_PASSWORD_LENGTH), field=field)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Invalid(_("Passwords are limited to %(num)s characters.", num=MAX_PASSWORD_LENGTH), field=field)
    if email and password.strip().lower() == email.strip().lower():
        raise Invalid(_("Your password must not be your email address."), field=field)


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def _verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(_verify)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
