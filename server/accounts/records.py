"""What the accounts domain hands to pages and the API: typed records built from Piccolo's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiKeyListing:
    """One of a user's API keys as their keys page lists it (never the secret)."""

    id: int
    name: str
    prefix: str
    scope: str  # "read" or "full"
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiKeyListing:
        return cls(**row)


@dataclass(frozen=True, slots=True)
class PublisherApplication:
    """A publisher as the admin's review list shows them."""

    id: int
    display_name: str
    blog_url: str
    audience: str
    status: str
    status_reason: str
    created_at: datetime
    reviewed_at: datetime | None
    email: str
    email_verified_at: datetime | None  # approval waits for it

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PublisherApplication:
        return cls(**row)


@dataclass(frozen=True, slots=True)
class PublicProfile:
    """How a publisher is shown to advertisers: their public name and site, never their e-mail
    address (personal data)."""

    name: str
    site: str
