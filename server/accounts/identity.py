"""Who is making a request: set by the auth middleware, read by guards and services."""

from __future__ import annotations

from dataclasses import dataclass

from server.accounts.tables import Role


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: int
    email: str
    role: Role
    via: str  # "session" or "api_key"
    session_hash: str | None = None
    api_key_id: int | None = None
    api_scope: str = ""  # an API key's: "read" (GET only) or "full"
    api_requests_per_minute: int = 0  # an API key's rate limit
    language: str = ""  # "" follows the browser (server/core/locale.py)
    time_zone: str = ""  # "" shows times in UTC
    email_verified: bool = True  # False: the owner has not opened the link sent to the address yet

    @property
    def home(self) -> str:
        return f"/{self.role.value}"
