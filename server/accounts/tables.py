"""Tables owned by the accounts domain; only server/accounts/service.py writes them."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import (
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class Role(StrEnum):
    publisher = "publisher"
    advertiser = "advertiser"
    finance = "finance"
    admin = "admin"


class PublisherStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class User(Table, tablename="app_user"):
    """Anyone who logs in. `email` is stored lower-cased; the password only as an argon2id hash."""

    email = Varchar(length=254, unique=True, index=True)
    password_hash = Varchar(length=255)
    role = Varchar(length=16, choices=Role)
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    password_changed_at = Timestamptz()
    time_zone = Varchar(length=64, default="")  # an IANA name; "" shows times in UTC
    language = Varchar(length=8, default="")  # en, fr or it; "" follows the browser's Accept-Language
    # When the owner of `email` opened the link sent to it (server/accounts/mailbox.py); None: not yet.
    email_verified_at = Timestamptz(null=True, default=None)


class Publisher(Table):
    """A blogger's profile: one per publisher user."""

    user = ForeignKey(User, unique=True, index=True, null=False)
    display_name = Varchar(length=120)
    blog_url = Varchar(length=500)
    audience = Text()
    status = Varchar(length=16, choices=PublisherStatus, default=PublisherStatus.pending, index=True)
    status_reason = Text(default="")
    reviewed_by = ForeignKey(User, null=True)
    reviewed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class Advertiser(Table):
    """A company's profile: one per advertiser user."""

    user = ForeignKey(User, unique=True, index=True, null=False)
    company_name = Varchar(length=200)
    website = Varchar(length=500)
    created_at = Timestamptz()


class Session(Table, tablename="user_session"):
    """A server-side login session. The cookie holds a random token; only its SHA-256 is stored."""

    token_hash = Varchar(length=64, unique=True, index=True)
    user = ForeignKey(User, null=False, index=True)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    expires_at = Timestamptz(index=True, index_method=IndexMethod.btree)
    user_agent = Varchar(length=200, default="")


class ApiKey(Table):
    """A bearer key for /api/v1. Shown once; stored as the SHA-256 of its secret part.

    Keys carry 256 bits of randomness, so a fast hash is as safe here as a slow one
    (nothing to brute-force) and keeps API authentication cheap."""

    user = ForeignKey(User, null=False, index=True)
    name = Varchar(length=80)
    prefix = Varchar(length=32, unique=True, index=True)
    secret_hash = Varchar(length=64)
    created_at = Timestamptz()
    last_used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    scope = Varchar(length=8, default="full")  # "read": GET only; "full": all its owner's role may do
    requests_per_minute = Integer(default=1200)  # the key's rate limit (server/http/apikit.py)


class ApiIdempotency(Table, tablename="api_idempotency"):
    """A request sent with an Idempotency-Key and the answer it got (server/accounts/idempotency.py):
    for 24 hours the same key with the same request is answered the same without running again."""

    api_key = ForeignKey(ApiKey, null=False)
    key = Varchar(length=255)
    request_hash = Varchar(length=64)  # SHA-256 of method, path, query and body
    state = Varchar(length=8)  # "running" until the answer is stored, then "done"
    status_code = Integer(default=0)
    content_type = Varchar(length=100, default="")
    body = Text(default="")
    created_at = Timestamptz()


class NetworkSetting(Table):
    """Network-wide switches an admin can change at run time (for example auto-approval)."""

    key = Varchar(length=64, unique=True, index=True)
    value = Text()
    updated_at = Timestamptz()
    updated_by = ForeignKey(User, null=True)
