"""The mail domain's tables: the outbox, single-use account tokens, and who reads which notice.

Mail sits below accounts in the domain order (accounts writes mail), so its tables point at the
user table by name, as the audit log does (a foreign key in the database, not an import)."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import JSON, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.reference import LazyTableReference
from piccolo.table import Table

USER = LazyTableReference("User", module_path="server.accounts.tables")


class OutboxStatus(StrEnum):
    pending = "pending"  # waiting for its first delivery or for its next try
    sent = "sent"  # the SMTP server accepted it
    failed = "failed"  # refused for good (a 5xx answer) or still undelivered after the retry period


class MailOutbox(Table, tablename="mail_outbox"):
    """One message to one address, written whole when its event happened (subject and both parts
    already in the recipient's language), so a retried delivery sends the very same message."""

    kind = Varchar(length=48, index=True)
    user = ForeignKey(USER, null=True, index=True)
    to_address = Varchar(length=254)
    subject = Varchar(length=300)
    text_body = Text()
    html_body = Text()
    headers = JSON(default="{}")  # extra headers, e.g. List-Unsubscribe for a notification
    message_id = Varchar(length=200, unique=True)
    # A digest or a notice that must go once per period names itself (unique); "" for the rest.
    dedupe_key = Varchar(length=160, null=True, default=None, unique=True)
    status = Varchar(length=16, choices=OutboxStatus, default=OutboxStatus.pending, index=True)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(index=True)
    claimed_until = Timestamptz(null=True, default=None)  # a worker delivering it holds it until then
    claim = Varchar(length=32, default="")
    last_error = Text(default="")
    created_at = Timestamptz(index=True)
    sent_at = Timestamptz(null=True, default=None)


class TokenPurpose(StrEnum):
    verify_email = "verify_email"
    reset_password = "reset_password"  # noqa: S105 (a purpose, not a password)
    change_email = "change_email"
    unlock = "unlock"


class MailToken(Table):
    """A link's secret, sent by e-mail: only its SHA-256 is stored; used once, then never again."""

    token_hash = Varchar(length=64, unique=True, index=True)
    purpose = Varchar(length=24, choices=TokenPurpose)
    user = ForeignKey(USER, null=False, index=True)
    email = Varchar(length=254)  # the address it was sent to (the new one, for a change of address)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)


class MailPreference(Table):
    """A person's choice for one kind of notice; no row means the kind's default (on)."""

    user = ForeignKey(USER, null=False, index=True)
    kind = Varchar(length=48)
    enabled = Boolean(default=True)
    updated_at = Timestamptz()
