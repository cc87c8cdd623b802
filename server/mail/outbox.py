"""The outbox: a message is a row written in the transaction of the event that causes it, so it
exists exactly when its event does; the worker delivers it over SMTP.

Delivery: a worker claims due rows (a lease, `claimed_until`, so two workers never hold one row at
once and a crashed worker's rows come back when its lease ends), sends each over one SMTP session,
and marks each sent as soon as the server accepted it. A failed try is retried with backoff (30 s,
doubling, at most an hour apart) for three days; a 5xx refusal fails at once.

Exactly once: every row has one Message-ID, fixed when it was written, and every try sends the same
bytes (the Date is the row's creation). A worker that dies between the server's acceptance and its
own "sent" mark is the one case that sends a row twice: the second copy is the same message (same
Message-ID, same bytes), which mail stores and clients treat as one. tests/mail/test_delivery.py
crashes the worker at every step and checks it."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from server.core import clock, db, hours
from server.core.errors import Conflict, NotFound
from server.core.i18n import _
from server.core.settings import Settings
from server.mail import compose, kinds, smtp
from server.mail.tables import MailOutbox, MailPreference, OutboxStatus

log = logging.getLogger("affnet.mail")

CLAIM_SECONDS = 120  # a worker holds a claimed row this long (a batch's sends fit well inside)
BATCH = 50
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(days=3)

Checkpoint = Callable[[str, int], Awaitable[None]]


@dataclass(frozen=True)
class MailConfig:
    base_url: str
    mail_from: str
    smtp_url: str
    secret_key: str

    @classmethod
    def of(cls, settings: Settings) -> MailConfig:
        return cls(settings.base_url, settings.mail_from, settings.smtp_url, settings.secret_key)


_config: MailConfig | None = None


def configure(settings: Settings) -> None:
    """Called once by the server's and the worker's start: where links point and mail comes from."""
    global _config
    smtp.parse(settings.smtp_url)  # a wrong SMTP_URL stops the start, not the first delivery
    _config = MailConfig.of(settings)


def config() -> MailConfig:
    if _config is None:
        raise RuntimeError("server.mail.outbox.configure(settings) was not called")
    return _config


def link(path: str) -> str:
    """An absolute link into affnet (BASE_URL + path) for a message."""
    return config().base_url.rstrip("/") + "/" + path.lstrip("/")


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "affnet.localhost"


@dataclass(frozen=True)
class Recipient:
    email: str
    user_id: int | None = None
    role: str = ""
    language: str = ""
    time_zone: str = ""


async def wants(user_id: int, kind_name: str) -> bool:
    """Whether the person receives this kind: always for account messages, else unless they turned it off."""
    if not kinds.kind(kind_name).optional:
        return True
    row = (
        await MailPreference.select(MailPreference.enabled)
        .where(MailPreference.user == user_id, MailPreference.kind == kind_name)
        .first()
    )
    return row is None or bool(row["enabled"])


async def enqueue(
    kind_name: str,
    recipient: Recipient,
    context: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> int | None:
    """Write the message in the caller's transaction (call it inside the event's own). None when the
    recipient turned this kind off, or a message with this dedupe_key was already written."""
    kind = kinds.kind(kind_name)
    if recipient.user_id is not None and not await wants(recipient.user_id, kind_name):
        return None
    if dedupe_key is not None and await MailOutbox.exists().where(MailOutbox.dedupe_key == dedupe_key):
        return None
    cfg = config()
    headers: dict[str, str] = {}
    values = {
        **context,
        "base_url": cfg.base_url,
        "settings_url": link("/account/notifications"),
        "unsubscribe_url": "",
        "recipient": recipient,
    }
    if kind.optional and recipient.user_id is not None:
        from server.mail import unsubscribe  # noqa: PLC0415 (it imports this module's config)

        url = link(f"/unsubscribe/{unsubscribe.token(recipient.user_id, kind_name)}")
        values["unsubscribe_url"] = url
        headers["List-Unsubscribe"] = f"<{url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
    written = compose.write(kind_name, values, language=recipient.language, zone=recipient.time_zone)
    now = now or clock.now()
    rows = await MailOutbox.insert(
        MailOutbox(
            kind=kind_name,
            user=recipient.user_id,
            to_address=recipient.email,
            subject=written.subject,
            text_body=written.text,
            html_body=written.html,
            headers=headers,
            message_id=f"<{uuid.uuid4().hex}@{_domain(cfg.mail_from)}>",
            dedupe_key=dedupe_key,
            status=OutboxStatus.pending.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    ).returning(MailOutbox.id)
    return rows[0]["id"]


def message(row: dict[str, Any], mail_from: str) -> EmailMessage:
    """The row as the message sent: the same bytes on every try (its Date is the row's creation)."""
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = Address(addr_spec=row["to_address"])
    msg["Subject"] = row["subject"]
    msg["Date"] = format_datetime(row["created_at"])
    msg["Message-ID"] = row["message_id"]
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies, please
    headers = row["headers"]
    if isinstance(headers, str):
        headers = json.loads(headers or "{}")
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(row["text_body"])
    msg.add_alternative(row["html_body"], subtype="html")
    # The boundary too is the row's, not random: every try sends the same bytes.
    msg.set_boundary("=_affnet_" + hashlib.sha256(row["message_id"].encode()).hexdigest()[:32])
    return msg


async def _claim(now: datetime, limit: int) -> tuple[str, list[dict[str, Any]]]:
    """Take up to `limit` due rows for this worker until its lease ends (SKIP LOCKED on PostgreSQL:
    two workers take different rows; SQLite's write lock queues them)."""
    claim = secrets.token_hex(8)
    lock = "" if db.is_sqlite() else " FOR UPDATE SKIP LOCKED"
    async with db.transaction():
        due = await MailOutbox.raw(
            "SELECT id FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= {} "  # noqa: S608 (constants)
            f"AND (claimed_until IS NULL OR claimed_until < {{}}) ORDER BY id LIMIT {int(limit)}{lock}",
            now,
            now,
        )
        ids = [r["id"] for r in due]
        if not ids:
            return claim, []
        await MailOutbox.update(
            {
                MailOutbox.claimed_until: now + timedelta(seconds=CLAIM_SECONDS),
                MailOutbox.claim: claim,
                MailOutbox.attempts: MailOutbox.attempts + 1,
            }
        ).where(MailOutbox.id.is_in(ids))
    rows = (
        await MailOutbox.select(
            MailOutbox.id,
            MailOutbox.kind,
            MailOutbox.to_address,
            MailOutbox.subject,
            MailOutbox.text_body,
            MailOutbox.html_body,
            MailOutbox.headers,
            MailOutbox.message_id,
            MailOutbox.attempts,
            MailOutbox.created_at,
        )
        .where(MailOutbox.claim == claim, MailOutbox.id.is_in(ids))
        .order_by(MailOutbox.id)
    )
    for row in rows:
        row["created_at"] = hours.utc(row["created_at"])
    return claim, rows


REDACTED = "(removed once delivered: it held a single-use link)"


async def _settle(row: dict[str, Any], claim: str, values: dict[Any, Any]) -> None:
    """Record how a try of a row this worker claimed (and has not settled yet: still pending) ended.
    A message whose link carries a token's secret keeps its text only while it may still be sent: once
    sent or failed, a copy of the database holds no working link."""
    if values.get(MailOutbox.status) in {OutboxStatus.sent.value, OutboxStatus.failed.value} and (
        row["kind"] in kinds.WITH_SECRETS
    ):
        values = {**values, MailOutbox.text_body: REDACTED, MailOutbox.html_body: REDACTED}
    async with db.transaction():
        await MailOutbox.update(values).where(
            MailOutbox.id == row["id"],
            MailOutbox.claim == claim,
            MailOutbox.status == OutboxStatus.pending.value,
        )


def _retry_delay(attempts: int) -> timedelta:
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), LONGEST_RETRY)


async def _checkpoint(hook: Checkpoint | None, step: str, row_id: int) -> None:
    if hook is not None:
        await hook(step, row_id)


async def deliver_due(now: datetime | None = None, *, limit: int = BATCH, checkpoint: Checkpoint | None = None) -> int:
    """Deliver up to `limit` due messages; the number the SMTP server accepted. `checkpoint` is called
    between the steps (the tests crash the worker there)."""
    now = now or clock.now()
    claim, rows = await _claim(now, limit)
    if not rows:
        return 0
    cfg = config()
    target = smtp.parse(cfg.smtp_url)
    sent = 0
    try:
        async with smtp.Connection(target) as connection:
            for row in rows:
                await _checkpoint(checkpoint, "before_send", row["id"])
                try:
                    await connection.send(message(row, cfg.mail_from))
                except smtp.REFUSED as exc:  # the server answered, refusing this one message
                    await _failed(row, claim, exc, now)
                    continue
                await _checkpoint(checkpoint, "after_send", row["id"])
                done = {MailOutbox.status: OutboxStatus.sent.value, MailOutbox.sent_at: clock.now()}
                await _settle(row, claim, {**done, MailOutbox.last_error: ""})
                sent += 1
    except smtp.UNREACHABLE as exc:
        await _unreachable(rows, claim, exc, now, target)
    return sent


async def _failed(row: dict[str, Any], claim: str, exc: BaseException, now: datetime) -> None:
    """One message was not taken: refused for good (5xx, or still not taken after GIVE_UP_AFTER), or
    try it again later (4xx, or no server to take it)."""
    error = f"{type(exc).__name__}: {exc}"[:500]
    if smtp.permanent(exc) or now - row["created_at"] >= GIVE_UP_AFTER:
        log.warning("mail %s to %s failed for good: %s", row["id"], row["to_address"], error)
        await _settle(row, claim, {MailOutbox.status: OutboxStatus.failed.value, MailOutbox.last_error: error})
        return
    await _settle(
        row,
        claim,
        {
            MailOutbox.next_attempt_at: now + _retry_delay(row["attempts"]),
            MailOutbox.claimed_until: None,
            MailOutbox.last_error: error,
        },
    )


async def _unreachable(
    rows: list[dict[str, Any]], claim: str, exc: BaseException, now: datetime, target: smtp.SmtpTarget
) -> None:
    """The SMTP server could not be reached (or dropped us): every row not yet sent waits for a retry."""
    log.warning(
        "mail server %s unreachable (%s: %s): %s message(s) wait", target.describe(), type(exc).__name__, exc, len(rows)
    )
    for row in rows:
        await _failed(row, claim, exc, now)  # those sent before the line dropped are not pending


async def recent(status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest messages (of one status), without their bodies: what the admin's mail page lists."""
    query = MailOutbox.select(
        MailOutbox.id,
        MailOutbox.kind,
        MailOutbox.to_address,
        MailOutbox.subject,
        MailOutbox.status,
        MailOutbox.attempts,
        MailOutbox.created_at,
        MailOutbox.sent_at,
        MailOutbox.next_attempt_at,
        MailOutbox.last_error,
    ).order_by(MailOutbox.id, ascending=False)
    if status:
        query = query.where(MailOutbox.status == status)
    return await query.limit(limit)


async def retry(row_id: int, now: datetime | None = None) -> None:
    """Send a failed message again (the address was fixed, the server's refusal was lifted). Not one
    whose single-use link was removed: its person asks for a new link instead."""
    row = await MailOutbox.select(MailOutbox.status, MailOutbox.kind).where(MailOutbox.id == row_id).first()
    if row is None:
        raise NotFound(_("There is no such message."))
    if row["status"] != OutboxStatus.failed.value:
        raise Conflict(_("Only a message that failed can be sent again."))
    if row["kind"] in kinds.WITH_SECRETS:
        raise Conflict(
            _("This message held a single-use link, removed when it failed: ask the person to request a new one.")
        )
    async with db.transaction():
        await MailOutbox.update(
            {
                MailOutbox.status: OutboxStatus.pending.value,
                MailOutbox.next_attempt_at: now or clock.now(),
                MailOutbox.claimed_until: None,
            }
        ).where(MailOutbox.id == row_id, MailOutbox.status == OutboxStatus.failed.value)


# Mail that waits longer than this is said on /healthz: SMTP is refusing or away, or no worker runs.
LATE_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_age_s: int | None  # how long the oldest waiting message has waited
    failed: int  # refused for good or given up, ever
    last_error: str  # the oldest waiting message's last failure ("" when it has not been tried)

    @property
    def late(self) -> bool:
        return self.oldest_age_s is not None and self.oldest_age_s > LATE_AFTER.total_seconds()


async def backlog(now: datetime | None = None) -> Backlog:
    """What waits to be sent (for /healthz)."""
    now = now or clock.now()
    oldest = (
        await MailOutbox.select(MailOutbox.created_at, MailOutbox.last_error)
        .where(MailOutbox.status == OutboxStatus.pending.value)
        .order_by(MailOutbox.next_attempt_at)
        .order_by(MailOutbox.id)
        .first()
    )
    pending = await MailOutbox.count().where(MailOutbox.status == OutboxStatus.pending.value) if oldest else 0
    failed = await MailOutbox.count().where(MailOutbox.status == OutboxStatus.failed.value)
    age = None if oldest is None else int((now - hours.utc(oldest["created_at"])).total_seconds())
    return Backlog(pending, age, failed, oldest["last_error"] if oldest else "")
