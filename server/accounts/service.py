"""The rules of accounts: sign-up, login with throttling, sessions, API keys, publisher review.
(The address and the mail that verifies, changes or recovers it: server/accounts/mailbox.py.)"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from server.accounts import mailbox, passwords, throttle
from server.accounts.identity import CurrentUser
from server.accounts.records import ApiKeyListing, PublicProfile, PublisherApplication
from server.accounts.tables import (
    Advertiser,
    ApiKey,
    NetworkSetting,
    Publisher,
    PublisherStatus,
    Role,
    Session,
    User,
)
from server.audit import service as audit
from server.core import clock, db, i18n, validation
from server.core.errors import Conflict, Invalid, NotFound, Unauthorized
from server.core.hours import zone
from server.core.i18n import _
from server.core.settings import Settings
from server.core.validation import form_field

# Refresh a session's expiry at most this often, so reading pages does not write on every request.
SESSION_TOUCH_INTERVAL = timedelta(minutes=10)
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)
API_KEY_ROLES = {Role.publisher, Role.advertiser, Role.finance}  # finance: read its reports
AUTO_APPROVE_KEY = mailbox.AUTO_APPROVE_KEY


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- users -------------------------------------------------------------------------------------


async def _insert_user(
    email: str, password: str, role: Role, now: datetime, *, language: str = "", verified: bool = False
) -> int:
    passwords.check_policy(password, email=email)
    if await User.exists().where(User.email == email):
        raise Conflict(_("An account with this email already exists. Log in instead."), field="email")
    password_hash = await passwords.hash_password(password)
    try:
        rows = await User.insert(
            User(
                email=email,
                password_hash=password_hash,
                role=role.value,
                is_active=True,
                created_at=now,
                password_changed_at=now,
                language=language,
                email_verified_at=now if verified else None,
            )
        ).returning(User.id)
    except Exception as exc:
        if db.is_unique_violation(exc):  # two sign-ups raced past the check above
            raise Conflict(_("An account with this email already exists. Log in instead."), field="email") from None
        raise
    return rows[0]["id"]


async def create_user(
    email: str, password: str, role: Role, *, actor_id: int | None = None, verified: bool = True
) -> int:
    """Create a finance or admin user (the CLI) or any role (tests, demo data). An operator typed the
    address, so it counts as confirmed unless `verified=False`."""
    email = validation.email(email)
    async with db.transaction():
        user_id = await _insert_user(email, password, role, clock.now(), verified=verified)
        await audit.record(
            "user.created", actor_id=actor_id, object_type="user", object_id=user_id, role=role.value, email=email
        )
    return user_id


async def publisher_auto_approve(settings: Settings) -> bool:
    """Whether publishers are approved without an admin (when they confirm their address)."""
    return await mailbox.auto_approve(settings)


async def set_publisher_auto_approve(admin: CurrentUser, enabled: bool) -> None:
    value = "true" if enabled else "false"
    async with db.transaction():
        updated = (
            await NetworkSetting.update(
                {
                    NetworkSetting.value: value,
                    NetworkSetting.updated_at: clock.now(),
                    NetworkSetting.updated_by: admin.id,
                }
            )
            .where(NetworkSetting.key == AUTO_APPROVE_KEY)
            .returning(NetworkSetting.id)
        )
        if not updated:
            await NetworkSetting.insert(
                NetworkSetting(key=AUTO_APPROVE_KEY, value=value, updated_at=clock.now(), updated_by=admin.id)
            )
        await audit.record(
            "setting.changed",
            actor_id=admin.id,
            object_type="setting",
            object_id=None,
            key=AUTO_APPROVE_KEY,
            value=value,
        )


def _email_and_password(check: validation.FormCheck, form: Mapping[str, Any]) -> tuple[str, str]:
    """A sign-up's email and password, their problems noted in `check`."""
    email = check(validation.email, form_field(form, "email")) or ""
    password = form_field(form, "password", strip=False)
    check(passwords.check_policy, password, email=email)
    return email, password


async def signup_publisher(form: Mapping[str, Any], settings: Settings) -> int:
    check = validation.FormCheck()
    email, password = _email_and_password(check, form)
    display_name = check(
        validation.text, form_field(form, "display_name"), "display_name", _("Display name"), max_length=120
    )
    blog_url = check(validation.web_url, form_field(form, "blog_url"), "blog_url", _("Blog URL"))
    audience = check(
        validation.text, form_field(form, "audience"), "audience", _("Audience description"), max_length=2000
    )
    check.done()
    now = clock.now()
    async with db.transaction():
        user_id = await _insert_user(email, password, Role.publisher, now, language=mailbox.reader_language())
        # Pending until an admin approves, or (auto-approval) until the address is confirmed.
        status = PublisherStatus.pending
        await Publisher.insert(
            Publisher(
                user=user_id,
                display_name=display_name,
                blog_url=blog_url,
                audience=audience,
                status=status.value,
                status_reason="",
                reviewed_at=None,
                created_at=now,
            )
        )
        await audit.record(
            "publisher.signed_up", actor_id=user_id, object_type="user", object_id=user_id, status=status.value
        )
        await mailbox.send_verification(user_id, now)
    return user_id


async def signup_advertiser(form: Mapping[str, Any]) -> int:
    check = validation.FormCheck()
    email, password = _email_and_password(check, form)
    company = check(
        validation.text, form_field(form, "company_name"), "company_name", _("Company name"), max_length=200
    )
    website = check(validation.web_url, form_field(form, "website"), "website", _("Website"))
    check.done()
    now = clock.now()
    async with db.transaction():
        user_id = await _insert_user(email, password, Role.advertiser, now, language=mailbox.reader_language())
        await Advertiser.insert(Advertiser(user=user_id, company_name=company, website=website, created_at=now))
        await audit.record("advertiser.signed_up", actor_id=user_id, object_type="user", object_id=user_id)
        await mailbox.send_verification(user_id, now)
    return user_id


async def publisher_profile(user_id: int) -> dict[str, Any]:
    row = await Publisher.select().where(Publisher.user == user_id).first()
    if row is None:
        raise NotFound(_("No publisher profile for this account."))
    return row


async def public_profiles(publisher_ids: set[int]) -> dict[int, PublicProfile]:
    """What advertisers may know of these publishers (by user id): their public name (their number
    when they gave none) and site. Never their e-mail address."""
    rows = await Publisher.select(Publisher.user, Publisher.display_name, Publisher.blog_url).where(
        Publisher.user.is_in(sorted(publisher_ids) or [0])
    )
    named = {r["user"]: PublicProfile(r["display_name"].strip(), r["blog_url"]) for r in rows}
    return {
        i: PublicProfile(named[i].name or f"#{i}", named[i].site) if i in named else PublicProfile(f"#{i}", "")
        for i in publisher_ids
    }


async def advertiser_profile(user_id: int) -> dict[str, Any]:
    row = await Advertiser.select().where(Advertiser.user == user_id).first()
    if row is None:
        raise NotFound(_("No advertiser profile for this account."))
    return row


# --- login and throttling ----------------------------------------------------------------------


async def authenticate(redis: Redis, settings: Settings, email: str, password: str, ip: str) -> CurrentUser:
    """Check a login. Raises TooManyRequests while throttled, Unauthorized on a bad password,
    ServiceUnavailable while the throttle's Redis is away."""
    email = (email or "").strip().lower()
    check = validation.FormCheck()
    if not email:
        check.add(Invalid(_("Enter your email address."), field="email"))
    if not password:
        check.add(Invalid(_("Enter your password."), field="password"))
    check.done()
    await throttle.count_attempt(redis, settings, email, ip)  # before the slow check, atomically
    row = (
        await User.select(User.id, User.email, User.role, User.password_hash, User.is_active)
        .where(User.email == email)
        .first()
    )
    ok = await passwords.verify_password(row["password_hash"] if row else None, password)
    if not ok or row is None or not row["is_active"]:
        raise Unauthorized(
            _("That email and password do not match an account."), field="password", code="bad_credentials"
        )
    await throttle.succeeded(redis, email, ip)
    if passwords.needs_rehash(row["password_hash"]):
        await User.update({User.password_hash: await passwords.hash_password(password)}).where(User.id == row["id"])
    return CurrentUser(id=row["id"], email=row["email"], role=Role(row["role"]), via="session")


# --- sessions ----------------------------------------------------------------------------------


async def create_session(user_id: int, settings: Settings, user_agent: str = "") -> str:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    await Session.insert(
        Session(
            token_hash=_sha256(token),
            user=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=settings.session_ttl_seconds),
            user_agent=user_agent[:200],
        )
    )
    return token


async def resolve_session(
    token: str, settings: Settings, now: datetime | None = None
) -> tuple[CurrentUser | None, bool]:
    """The user a session cookie belongs to, and whether the cookie named an expired session."""
    now = now or clock.now()
    token_hash = _sha256(token)
    row = (
        await Session.select(
            Session.id,
            Session.expires_at,
            Session.last_seen_at,
            Session.user.id.as_alias("user_id"),
            Session.user.email.as_alias("email"),
            Session.user.role.as_alias("role"),
            Session.user.is_active.as_alias("is_active"),
            Session.user.language.as_alias("language"),
            Session.user.time_zone.as_alias("time_zone"),
            Session.user.email_verified_at.as_alias("email_verified_at"),
        )
        .where(Session.token_hash == token_hash)
        .first()
    )
    if row is None:
        return None, False
    if row["expires_at"] <= now or not row["is_active"]:
        return None, True
    if now - row["last_seen_at"] >= SESSION_TOUCH_INTERVAL:
        await Session.update(
            {Session.last_seen_at: now, Session.expires_at: now + timedelta(seconds=settings.session_ttl_seconds)}
        ).where(Session.id == row["id"])
    user = CurrentUser(
        id=row["user_id"],
        email=row["email"],
        role=Role(row["role"]),
        via="session",
        session_hash=token_hash,
        language=row["language"],
        time_zone=row["time_zone"],
        email_verified=row["email_verified_at"] is not None,
    )
    return user, False


async def end_session(token: str) -> None:
    await Session.delete().where(Session.token_hash == _sha256(token))


async def purge_expired_sessions(now: datetime | None = None) -> int:
    """Delete sessions past their expiry; the worker runs this periodically."""
    deleted = await Session.delete().where(Session.expires_at <= (now or clock.now())).returning(Session.id)
    return len(deleted)


async def set_time_zone(user: CurrentUser, name: str) -> str:
    """Save the zone the user's reports are shown in (an IANA name from the list; Invalid otherwise)."""
    name = (name or "").strip()
    zone(name)
    await User.update({User.time_zone: name}).where(User.id == user.id)
    return name


async def set_language(user: CurrentUser | None, code: str) -> str:
    """Save the language the user reads affnet in (one of i18n.LANGUAGES, or "" for the browser's)."""
    code = (code or "").strip().lower()
    if code and code not in i18n.LANGUAGES:
        raise Invalid(_("Choose English, French or Italian."), field="language")
    if user is not None:
        await User.update({User.language: code}).where(User.id == user.id)
    return code


async def change_password(user: CurrentUser, current: str, new: str, confirm: str, user_agent: str = "") -> None:
    """Change a password, end every other session of the user, and tell them ("was this you?")."""
    row = await User.select(User.password_hash).where(User.id == user.id).first()
    check = validation.FormCheck()
    if row is None or not await passwords.verify_password(row["password_hash"], current):
        check.add(Invalid(_("Your current password is not correct."), field="current_password"))
    check(passwords.check_policy, new, email=user.email, field="new_password")
    if new != confirm:
        check.add(Invalid(_("The two new passwords do not match."), field="confirm_password"))
    if not check.problems and await passwords.verify_password(row["password_hash"], new):
        check.add(Invalid(_("Choose a password different from your current one."), field="new_password"))
    check.done()
    new_hash = await passwords.hash_password(new)
    now = clock.now()
    async with db.transaction():
        await User.update({User.password_hash: new_hash, User.password_changed_at: now}).where(User.id == user.id)
        others = Session.delete().where(Session.user == user.id)
        if user.session_hash:
            others = others.where(Session.token_hash != user.session_hash)
        await others
        await audit.record("user.password_changed", actor_id=user.id, object_type="user", object_id=user.id)
        await mailbox.password_changed(user.id, user_agent, now, mailbox.reader_language())


# --- API keys ----------------------------------------------------------------------------------


def _key_prefix(role: Role) -> str:
    return f"afn_{role.value[:3]}_{secrets.token_hex(4)}"


API_KEY_SCOPES = ("full", "read")  # "read" keys may only GET (server/http/apikit.py)


async def create_api_key(user: CurrentUser, name: str, scope: str = "full") -> tuple[int, str]:
    """Create a key and return (id, the full key). The full key is never stored or shown again."""
    if user.role not in API_KEY_ROLES:
        raise Invalid(_("API keys are for publishers and advertisers."))
    name = validation.text(name, "name", _("Key name"), max_length=80)
    if scope not in API_KEY_SCOPES:
        raise Invalid(_("Choose what the key may do: read only, or read and write."), field="scope")
    if await ApiKey.count().where(ApiKey.user == user.id, ApiKey.revoked_at.is_null()) >= 20:
        raise Conflict(_("You already have %(num)s active keys. Revoke one you no longer use first.", num=20))
    prefix, secret = _key_prefix(user.role), secrets.token_hex(32)
    async with db.transaction():
        rows = await ApiKey.insert(
            ApiKey(
                user=user.id,
                name=name,
                prefix=prefix,
                secret_hash=_sha256(secret),
                created_at=clock.now(),
                scope=scope,
            )
        ).returning(ApiKey.id)
        await audit.record(
            "api_key.created",
            actor_id=user.id,
            object_type="api_key",
            object_id=rows[0]["id"],
            prefix=prefix,
            scope=scope,
        )
    return rows[0]["id"], f"{prefix}_{secret}"


async def list_api_keys(user_id: int) -> list[ApiKeyListing]:
    rows = (
        await ApiKey.select(
            ApiKey.id,
            ApiKey.name,
            ApiKey.prefix,
            ApiKey.scope,
            ApiKey.created_at,
            ApiKey.last_used_at,
            ApiKey.revoked_at,
        )
        .where(ApiKey.user == user_id)
        .order_by(ApiKey.id, ascending=False)
    )
    return [ApiKeyListing.from_row(row) for row in rows]


async def revoke_api_key(user: CurrentUser, key_id: int) -> None:
    """Revoke one of the user's own keys. Another user's key answers NotFound, as if absent."""
    async with db.transaction():
        row = (
            await ApiKey.select(ApiKey.id, ApiKey.revoked_at).where(ApiKey.id == key_id, ApiKey.user == user.id).first()
        )
        if row is None:
            raise NotFound(_("There is no such API key."))
        if row["revoked_at"] is not None:
            return
        await ApiKey.update({ApiKey.revoked_at: clock.now()}).where(ApiKey.id == key_id)
        await audit.record("api_key.revoked", actor_id=user.id, object_type="api_key", object_id=key_id)


async def authenticate_api_key(raw: str) -> CurrentUser:
    parts = raw.strip().split("_")
    if len(parts) != 4 or parts[0] != "afn" or len(parts[3]) != 64:
        raise Unauthorized(
            "That is not an affnet API key. Keys look like afn_pub_… or afn_adv_….", code="invalid_api_key"
        )
    prefix, secret = "_".join(parts[:3]), parts[3]
    row = (
        await ApiKey.select(
            ApiKey.id,
            ApiKey.secret_hash,
            ApiKey.revoked_at,
            ApiKey.last_used_at,
            ApiKey.scope,
            ApiKey.requests_per_minute,
            ApiKey.user.id.as_alias("user_id"),
            ApiKey.user.email.as_alias("email"),
            ApiKey.user.role.as_alias("role"),
            ApiKey.user.is_active.as_alias("is_active"),
            ApiKey.user.language.as_alias("language"),
            ApiKey.user.time_zone.as_alias("time_zone"),
        )
        .where(ApiKey.prefix == prefix)
        .first()
    )
    if row is None or not hmac.compare_digest(row["secret_hash"], _sha256(secret)):
        raise Unauthorized("This API key is not valid.", code="invalid_api_key")
    if row["revoked_at"] is not None:
        raise Unauthorized(
            "This API key has been revoked. Create a new one on the API keys page.", code="revoked_api_key"
        )
    if not row["is_active"]:
        raise Unauthorized("The account this API key belongs to is disabled.", code="account_disabled")
    now = clock.now()
    if row["last_used_at"] is None or now - row["last_used_at"] >= API_KEY_TOUCH_INTERVAL:
        await ApiKey.update({ApiKey.last_used_at: now}).where(ApiKey.id == row["id"])
    return CurrentUser(
        id=row["user_id"],
        email=row["email"],
        role=Role(row["role"]),
        via="api_key",
        api_key_id=row["id"],
        api_scope=row["scope"],
        api_requests_per_minute=row["requests_per_minute"],
        language=row["language"],
        time_zone=row["time_zone"],
    )


# --- publisher review (admin) ------------------------------------------------------------------


async def list_publishers(status: PublisherStatus | None = None) -> list[PublisherApplication]:
    query = Publisher.select(
        Publisher.id,
        Publisher.display_name,
        Publisher.blog_url,
        Publisher.audience,
        Publisher.status,
        Publisher.status_reason,
        Publisher.created_at,
        Publisher.reviewed_at,
        Publisher.user.email.as_alias("email"),
        Publisher.user.email_verified_at.as_alias("email_verified_at"),
    ).order_by(Publisher.id)
    if status is not None:
        query = query.where(Publisher.status == status.value)
    return [PublisherApplication.from_row(row) for row in await query]


async def review_publisher(admin: CurrentUser, publisher_id: int, approve: bool, reason: str = "") -> None:
    """Approve (only with a confirmed address) or reject (with a reason) a publisher; they hear it by mail."""
    reason = validation.text(reason, "reason", _("Reason"), max_length=500, required=not approve)
    status = PublisherStatus.approved if approve else PublisherStatus.rejected
    async with db.transaction():
        row = (
            await Publisher.select(
                Publisher.id,
                Publisher.status,
                Publisher.user.id.as_alias("user_id"),
                Publisher.user.email_verified_at.as_alias("email_verified_at"),
            )
            .where(Publisher.id == publisher_id)
            .first()
        )
        if row is None:
            raise NotFound(_("There is no such publisher."))
        if row["status"] == status.value:
            return  # a repeated click changes nothing
        if approve and row["email_verified_at"] is None:
            raise Conflict(
                _(
                    "This publisher has not confirmed their e-mail address yet, so they cannot be approved. "
                    "They can be approved once they open the link we sent them (they can ask for a new one "
                    "on their account page)."
                ),
                code="email_not_verified",
            )
        now = clock.now()
        await Publisher.update(
            {
                Publisher.status: status.value,
                Publisher.status_reason: reason,
                Publisher.reviewed_by: admin.id,
                Publisher.reviewed_at: now,
            }
        ).where(Publisher.id == publisher_id)
        await audit.record(
            f"publisher.{status.value}",
            actor_id=admin.id,
            object_type="publisher",
            object_id=publisher_id,
            reason=reason,
            previous=row["status"],
        )
        await mailbox.publisher_reviewed(row["user_id"], approved=approve, reason=reason, now=now)


async def counts_by_role() -> dict[str, int]:
    rows = await User.raw("SELECT role, COUNT(*) AS n FROM app_user GROUP BY role")
    return {r["role"]: r["n"] for r in rows}
