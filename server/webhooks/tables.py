"""The outbound deliveries' tables: webhook endpoints, publisher postback templates, the outbox of
messages to deliver (one per event and endpoint, or per postback) and each delivery attempt.

Webhooks sit below campaigns in the domain order, so the tables point at the user and campaign
tables by name (a foreign key in the database, not an import), as the mail tables do."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import JSON, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.reference import LazyTableReference
from piccolo.table import Table

USER = LazyTableReference("User", module_path="server.accounts.tables")
CAMPAIGN = LazyTableReference("Campaign", module_path="server.campaigns.tables")


class MessageKind(StrEnum):
    webhook = "webhook"  # a signed POST of a JSON event to an endpoint
    postback = "postback"  # a GET of a publisher's URL template, its macros filled in


class MessageStatus(StrEnum):
    pending = "pending"  # waiting for its first try or its next retry
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"  # still refused after the retry period, or its endpoint was disabled


class WebhookEndpoint(Table):
    """A URL a user (advertiser or publisher) wants events POSTed to, signed with its secret."""

    owner = ForeignKey(USER, null=False, index=True)
    url = Varchar(length=2000)
    description = Varchar(length=200, default="")
    event_types = JSON(default="[]")  # the subscribed types (server/webhooks/outbox.py EVENT_TYPES)
    secret = Varchar(length=120)  # whsec_<base64>
    # During a rotation the old secret signs too, until previous_secret_expires_at.
    previous_secret = Varchar(length=120, null=True, default=None)
    previous_secret_expires_at = Timestamptz(null=True, default=None)
    enabled = Boolean(default=True)
    disabled_at = Timestamptz(null=True, default=None)
    disabled_reason = Varchar(length=32, default="")  # "owner", "failing", "deleted"
    deleted_at = Timestamptz(null=True, default=None)  # deleted: hidden and disabled, rows kept
    # The first failure since the last success: a day of failures disables the endpoint.
    failing_since = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class PostbackTemplate(Table):
    """A publisher's postback URL template: for one campaign, or global (campaign NULL)."""

    publisher = ForeignKey(USER, null=False, index=True)
    campaign = ForeignKey(CAMPAIGN, null=True, default=None, index=True)
    url_template = Varchar(length=2000)
    on_recorded = Boolean(default=True)
    on_approved = Boolean(default=False)
    enabled = Boolean(default=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class WebhookMessage(Table):
    """One delivery to make: an event for one endpoint, or one postback. Its msg_id is the
    `webhook-id` of every try (the receiver's dedupe key), and its payload the same bytes each time."""

    kind = Varchar(length=16, choices=MessageKind, default=MessageKind.webhook)
    msg_id = Varchar(length=40, unique=True)
    owner = ForeignKey(USER, null=False, index=True)
    endpoint = ForeignKey(WebhookEndpoint, null=True, default=None, index=True)
    template = ForeignKey(PostbackTemplate, null=True, default=None, index=True)
    event_type = Varchar(length=64)
    object_id = Varchar(length=100, default="")
    # Messages of one lane (endpoint or publisher, and object) go out in id order: a later one
    # waits while an earlier one is still pending.
    lane = Varchar(length=160)
    url = Varchar(length=2000, default="")  # a postback's URL, its macros filled in ("" for a webhook)
    payload = Text(default="")  # a webhook's JSON body, exactly as sent on every try
    status = Varchar(length=16, choices=MessageStatus, default=MessageStatus.pending, index=True)
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz()
    claimed_until = Timestamptz(null=True, default=None)  # a worker delivering it holds it until then
    claim = Varchar(length=32, default="")
    last_status = Integer(null=True, default=None)  # the last answer's HTTP status
    last_error = Text(default="")
    created_at = Timestamptz(index=True)
    delivered_at = Timestamptz(null=True, default=None)


class WebhookAttempt(Table):
    """One try of a message: what was sent (never a secret) and how the receiver answered."""

    message = ForeignKey(WebhookMessage, null=False, index=True)
    attempted_at = Timestamptz()
    method = Varchar(length=8)
    url = Varchar(length=2000)
    request_headers = JSON(default="{}")
    request_body = Text(default="")
    response_status = Integer(null=True, default=None)
    response_body = Text(default="")  # the first RESPONSE_BODY_KEPT characters
    duration_ms = Integer(default=0)
    error = Text(default="")
