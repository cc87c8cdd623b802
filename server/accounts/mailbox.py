"""An account's own address and what mail to it can undo: verifying the address, changing it
(confirmed at the new one, announced at the old one), a forgotten password, a throttled login.

Every link carries a single-use token (server/mail/tokens.py) and every message is written in the
transaction of the change that causes it (server/mail/outbox.py). Answers that could tell a stranger
whether an address has an account (forgot password, the unlock mail of a throttled login) are the
same either way: the look-up and the mail happen after the answer, in a background task."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime, timedelta

from redis.asyncio import Redis

from server.accounts import notify, passwords, throttle
from server.accounts.identity import CurrentUser
from server.accounts.tables import NetworkSetting, Publisher, PublisherStatus, Session, User
from server.audit import service as audit
from server.core import clock, db, i18n, validation
from server.core import locale as locales
from server.core.errors import Conflict, Invalid, NotFound, TooManyRequests
from server.core.hours import utc
from server.core.i18n import _
from server.core.settings import Settings
from server.mail import outbox, tokens
from server.mail.outbox import Recipient
from server.mail.tables import MailToken, TokenPurpose
from server.mail.tokens import TokenProblem, Used

log = logging.getLogger("affnet.accounts")

RESEND_INTERVAL = timedelta(minutes=1)  # at most one verification mail a minute per person
AUTO_APPROVE_KEY = "publisher_auto_approve"  # network_setting's key of the admin's switch


def reader_language() -> str:
    """The language of the request being answered, when affnet speaks it; "" otherwise (outside a
    request, or a German reader: saving "en" would pin their pages to English number formats)."""
    current = locales.current()
    return current.language if current is not None and current.language in i18n.LANGUAGES else ""


def browser_of(user_agent: str) -> str:
    """ "Firefox on Windows" from a User-Agent, for a "was this you?" notice; the start of the raw
    string when it names nothing known."""
    ua = user_agent or ""
    browsers = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"))
    systems = (
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    )
    browser = next((name for mark, name in browsers if mark in ua), "")
    if not browser and "Safari/" in ua:
        browser = "Safari"
    system = next((name for mark, name in systems if mark in ua), "")
    if browser and system:
        return _("%(browser)s on %(system)s", browser=browser, system=system)
    if browser or system:
        return browser or system
    return re.sub(r"\s+", " ", ua).strip()[:120] or _("an unknown browser")


async def _recipient(user_id: int, language: str = "") -> Recipient | None:
    """The user as a recipient; their saved language, else the one of the request that caused the mail."""
    to = await notify.recipient(user_id)
    if to is not None and not to.language and language:
        to = replace(to, language=language)
    return to


# --- verifying an address ------------------------------------------------------------------------


async def send_verification(user_id: int, now: datetime | None = None) -> bool:
    """Write a link to confirm the user's current address (call inside the transaction that needs it)."""
    to = await _recipient(user_id, reader_language())
    if to is None:
        return False
    secret = await tokens.issue(TokenPurpose.verify_email, user_id, to.email, now)
    await outbox.enqueue("verify_email", to, {"verify_url": outbox.link(f"/verify-email/{secret}")}, now=now)
    return True


async def mark_verified(user_id: int, now: datetime | None = None) -> None:
    """Count the user's address as confirmed without a link (demo data, tests: an operator vouches)."""
    await User.update({User.email_verified_at: now or clock.now()}).where(
        User.id == user_id, User.email_verified_at.is_null()
    )


async def is_verified(user_id: int) -> bool:
    row = await User.select(User.email_verified_at).where(User.id == user_id).first()
    return row is not None and row["email_verified_at"] is not None


async def resend_verification(user: CurrentUser, now: datetime | None = None) -> bool:
    """Send the link again; False when the address is already confirmed. At most one a minute."""
    now = now or clock.now()
    async with db.transaction():
        if await is_verified(user.id):
            return False
        last = (
            await MailToken.select(MailToken.created_at)
            .where(MailToken.user == user.id, MailToken.purpose == TokenPurpose.verify_email.value)
            .order_by(MailToken.created_at, ascending=False)
            .first()
        )
        if last is not None:
            wait = RESEND_INTERVAL - (now - utc(last["created_at"]))
            if wait > timedelta(0):
                seconds = max(int(wait.total_seconds()), 1)
                raise TooManyRequests(
                    _(
                        "We sent you a link less than a minute ago. Check your inbox (and spam folder), "
                        "or try again in a minute."
                    ),
                    retry_after=seconds,
                    code="verification_recently_sent",
                )
        await send_verification(user.id, now)
        await audit.record("user.verification_resent", actor_id=user.id, object_type="user", object_id=user.id)
    return True


async def auto_approve(settings: Settings) -> bool:
    row = await NetworkSetting.select(NetworkSetting.value).where(NetworkSetting.key == AUTO_APPROVE_KEY).first()
    return settings.publisher_auto_approve if row is None else row["value"] == "true"


async def verify_email(secret: str, settings: Settings, now: datetime | None = None) -> Used:
    """Mark the address the link was sent to as confirmed (TokenProblem when the link does not work).
    A pending publisher is approved now if auto-approval is on: approval needs a confirmed address."""
    now = now or clock.now()
    async with db.transaction():
        used = await tokens.use(TokenPurpose.verify_email, secret, now)
        user = await User.select(User.email, User.email_verified_at).where(User.id == used.user_id).first()
        if user is None or user["email"] != used.email:
            raise TokenProblem("used")  # the address changed since: this link confirms nothing now
        if user["email_verified_at"] is None:
            await User.update({User.email_verified_at: now}).where(User.id == used.user_id)
            await audit.record(
                "user.email_verified",
                actor_id=used.user_id,
                object_type="user",
                object_id=used.user_id,
                email=used.email,
            )
        await _approve_if_automatic(used.user_id, settings, now)
    return used


async def _approve_if_automatic(user_id: int, settings: Settings, now: datetime) -> None:
    row = await Publisher.select(Publisher.id, Publisher.status).where(Publisher.user == user_id).first()
    if row is None or row["status"] != PublisherStatus.pending.value or not await auto_approve(settings):
        return
    await Publisher.update(
        {
            Publisher.status: PublisherStatus.approved.value,
            Publisher.status_reason: "approved automatically",
            Publisher.reviewed_at: now,
        }
    ).where(Publisher.id == row["id"])
    await audit.record(
        "publisher.approved",
        actor_id=None,
        object_type="publisher",
        object_id=row["id"],
        reason="approved automatically",
        previous=row["status"],
    )
    await publisher_reviewed(user_id, approved=True, reason="", now=now)


async def publisher_reviewed(user_id: int, *, approved: bool, reason: str, now: datetime | None = None) -> None:
    """The publisher hears the admin's decision (call inside the review's transaction)."""
    await notify.send(
        "publisher_reviewed",
        user_id,
        {"approved": approved, "reason": reason, "dashboard_url": outbox.link("/publisher")},
        now=now,
    )


# --- "was this you?" -----------------------------------------------------------------------------


async def password_changed(user_id: int, user_agent: str, now: datetime, language: str = "") -> None:
    """Tell the owner their password changed, when and from which browser (inside the change's transaction)."""
    to = await _recipient(user_id, language)
    if to is None:
        return
    context = {"when": now, "browser": browser_of(user_agent), "forgot_url": outbox.link("/forgot-password")}
    await outbox.enqueue("password_changed", to, context, now=now)


# --- forgotten password --------------------------------------------------------------------------


async def forgotten_password(redis: Redis, email: str, ip: str, language: str, now: datetime | None = None) -> None:
    """After the answer (a background task): mail a reset link if the address has an account and
    neither it nor the network asked too often. Never raises: the answer was already the same for all."""
    try:
        if not await throttle.allow_recovery_mail(redis, "reset", email, ip):
            return
        now = now or clock.now()
        row = await User.select(User.id, User.is_active).where(User.email == email).first()
        if row is None or not row["is_active"]:
            return
        async with db.transaction():
            to = await _recipient(row["id"], language)
            if to is None:
                return
            secret = await tokens.issue(TokenPurpose.reset_password, row["id"], to.email, now)
            await outbox.enqueue("reset_password", to, {"reset_url": outbox.link(f"/reset-password/{secret}")}, now=now)
            await audit.record("user.password_reset_requested", actor_id=None, object_type="user", object_id=row["id"])
    except Exception:
        log.exception("could not write the password reset mail")


async def reset_email_of(secret: str, now: datetime | None = None) -> str:
    """The address a reset link is for (TokenProblem when it does not work): the form shows it."""
    return (await tokens.peek(TokenPurpose.reset_password, secret, now)).email


async def reset_password(
    redis: Redis, secret: str, new: str, confirm: str, user_agent: str = "", now: datetime | None = None
) -> int:
    """Set a new password with a reset link: every session of the user ends, the other reset links
    stop working, the login throttle forgets the account, and the owner is told. The user's id."""
    now = now or clock.now()
    found = await tokens.peek(TokenPurpose.reset_password, secret, now)
    check = validation.FormCheck()
    check(passwords.check_policy, new, email=found.email, field="new_password")
    if new != confirm:
        check.add(Invalid(_("The two new passwords do not match."), field="confirm_password"))
    check.done()
    new_hash = await passwords.hash_password(new)
    async with db.transaction():
        used = await tokens.use(TokenPurpose.reset_password, secret, now)
        user = await User.select(User.email).where(User.id == used.user_id).first()
        if user is None or user["email"] != used.email:
            raise TokenProblem("used")  # sent to an address the account no longer has
        await User.update({User.password_hash: new_hash, User.password_changed_at: now}).where(User.id == used.user_id)
        await Session.delete().where(Session.user == used.user_id)
        await tokens.retire(TokenPurpose.reset_password, used.user_id, now)
        await audit.record("user.password_reset", actor_id=used.user_id, object_type="user", object_id=used.user_id)
        await password_changed(used.user_id, user_agent, now, reader_language())
    await throttle.clear_account(redis, used.email)
    return used.user_id


# --- changing the address ------------------------------------------------------------------------


async def request_email_change(user: CurrentUser, new_email: str, password: str, now: datetime | None = None) -> str:
    """Send a confirmation link to the new address; nothing changes until it is opened. The new address."""
    now = now or clock.now()
    check = validation.FormCheck()
    new_email = check(validation.email, new_email, "new_email") or ""
    if not password:
        check.add(Invalid(_("Enter your password."), field="current_password"))
    check.done()
    row = await User.select(User.email, User.password_hash).where(User.id == user.id).first()
    if row is None:
        raise NotFound(_("There is no such account."))
    if not await passwords.verify_password(row["password_hash"], password):
        raise Invalid(_("Your current password is not correct."), field="current_password")
    if new_email == row["email"]:
        raise Invalid(_("This is already your address."), field="new_email")
    if await User.exists().where(User.email == new_email):
        raise Conflict(_("Another account already uses this address."), field="new_email")
    async with db.transaction():
        to = await _recipient(user.id, reader_language())
        if to is None:
            raise NotFound(_("There is no such account."))
        # Earlier requests are not retired: the links that put an old address back (email_change_notice)
        # share the purpose, and whoever took the account must not be able to cancel them by asking
        # for another change. A pending link needs its reader's click, and every change is announced.
        secret = await tokens.issue(TokenPurpose.change_email, user.id, new_email, now)
        context = {
            "confirm_url": outbox.link(f"/email-change/{secret}"),
            "old_email": row["email"],
            "new_email": new_email,
        }
        await outbox.enqueue("email_change_confirm", replace(to, email=new_email), context, now=now)
        await audit.record(
            "user.email_change_requested", actor_id=user.id, object_type="user", object_id=user.id, new_email=new_email
        )
    return new_email


async def email_change_of(secret: str, now: datetime | None = None) -> Used:
    """What a confirmation link would change (TokenProblem when it does not work)."""
    return await tokens.peek(TokenPurpose.change_email, secret, now)


async def confirm_email_change(secret: str, now: datetime | None = None) -> tuple[str, str]:
    """Make the link's address the account's (confirmed by opening it) and tell the old address,
    with a link (a day) to put it back. (old, new). Conflict when another account took it meanwhile."""
    now = now or clock.now()
    found = await tokens.peek(TokenPurpose.change_email, secret, now)
    taken = Conflict(
        _(
            "Another account took the address %(email)s in the meantime, so your address was not changed.",
            email=found.email,
        )
    )
    if await User.exists().where(User.email == found.email, User.id != found.user_id):
        raise taken
    try:
        async with db.transaction():
            used = await tokens.use(TokenPurpose.change_email, secret, now)
            row = await User.select(User.email).where(User.id == used.user_id).first()
            if row is None:
                raise TokenProblem("unknown")
            old = row["email"]
            await User.update({User.email: used.email, User.email_verified_at: now}).where(User.id == used.user_id)
            # Links sent to the old address stop working (not the change links: see request_email_change).
            for purpose in (TokenPurpose.verify_email, TokenPurpose.reset_password):
                await tokens.retire(purpose, used.user_id, now)
            await audit.record(
                "user.email_changed",
                actor_id=used.user_id,
                object_type="user",
                object_id=used.user_id,
                old=old,
                new=used.email,
            )
            to = await _recipient(used.user_id, reader_language())
            if to is not None and old != used.email:
                undo = await tokens.issue(TokenPurpose.change_email, used.user_id, old, now)
                context = {
                    "old_email": old,
                    "new_email": used.email,
                    "undo_url": outbox.link(f"/email-change/{undo}"),
                    "forgot_url": outbox.link("/forgot-password"),
                }
                await outbox.enqueue("email_change_notice", replace(to, email=old), context, now=now)
    except Exception as exc:
        if db.is_unique_violation(exc):  # taken between the check and the change
            raise taken from None
        raise
    return old, used.email


# --- unlocking a throttled account ---------------------------------------------------------------


async def throttled(redis: Redis, email: str, window_seconds: int, language: str) -> None:
    """After a login refused by a per-account limit (a background task: the answer is the same
    whether the account exists): mail its owner an unlock link, once per throttle window."""
    try:
        email = (email or "").strip().lower()
        # The window's first refusal only (a flood of refused guesses looks nothing up after it).
        started = await throttle.first_unlock_mail(redis, email, window_seconds)
        if started is None:
            return
        row = await User.select(User.id, User.is_active).where(User.email == email).first()
        if row is None or not row["is_active"]:
            return
        now = clock.now()
        async with db.transaction():
            to = await _recipient(row["id"], language)
            if to is None:
                return
            secret = await tokens.issue(TokenPurpose.unlock, row["id"], to.email, now)
            await outbox.enqueue(
                "account_unlock",
                to,
                {"unlock_url": outbox.link(f"/unlock/{secret}"), "forgot_url": outbox.link("/forgot-password")},
                dedupe_key=f"unlock:{row['id']}:{started}",
                now=now,
            )
    except Exception:
        log.exception("could not write the unlock mail")


async def unlock_email_of(secret: str, now: datetime | None = None) -> str:
    return (await tokens.peek(TokenPurpose.unlock, secret, now)).email


async def unlock(redis: Redis, secret: str, now: datetime | None = None) -> str:
    """Lift the login limits of the link's account on every network; the address."""
    now = now or clock.now()
    async with db.transaction():
        used = await tokens.use(TokenPurpose.unlock, secret, now)
        await tokens.retire(TokenPurpose.unlock, used.user_id, now)
        await audit.record("user.unlocked", actor_id=used.user_id, object_type="user", object_id=used.user_id)
    await throttle.clear_account(redis, used.email)
    return used.email
