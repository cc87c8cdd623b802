"""Webhook endpoints and publisher postback templates: what their owners set on their pages, and
the delivery log they read. Every function takes the acting user's id and answers NotFound for a
row of another user (never a hint that it exists)."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.core import clock, db, hours
from server.core.errors import Invalid, NotFound
from server.core.i18n import _
from server.core.safe_http import UnsafeUrl, check_destination, check_url
from server.webhooks import outbox
from server.webhooks.tables import (
    MessageKind,
    PostbackTemplate,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)

ROTATION_OVERLAP = timedelta(hours=24)  # the previous secret still signs this long after a rotation
SECRET_BYTES = 32
URL_MAX = 2000
DESCRIPTION_MAX = 200
LOG_PAGE = 50

# What the postback page's check fills the macros with: a URL valid with these is checked for safety.
SAMPLE_MACROS = {
    "click_id": "c0ffee12",
    "sub1": "sub1",
    "sub2": "sub2",
    "sub3": "sub3",
    "sub4": "sub4",
    "sub5": "sub5",
    "txn_id": "txn-1001",
    "payout": "12.50",
    "currency": "EUR",
    "status": "approved",
    "campaign_id": "1",
}


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and the base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


async def _check_safe(url: str, field: str, *, allow_loopback: bool, shown: str | None = None) -> None:
    """Refuse a URL affnet would not call (scheme, port, a private or loopback host...), with the
    safety check's own sentence."""
    try:
        check_url(url, allow_loopback=allow_loopback)
        await check_destination(url, allow_loopback=allow_loopback)
    except UnsafeUrl as exc:
        raise Invalid(exc.message, field=field, code=exc.code) from None


def _clean_url(url: str, field: str) -> str:
    url = (url or "").strip()
    if not url:
        raise Invalid(_("Enter the URL to call."), field=field)
    if len(url) > URL_MAX:
        raise Invalid(_("The URL is too long (at most 2,000 characters)."), field=field)
    return url


def _event_types(chosen: list[str]) -> list[str]:
    wanted = [t for t in outbox.EVENT_TYPES if t in set(chosen)]
    if not wanted or len(wanted) != len(set(chosen)):
        raise Invalid(_("Choose at least one of the listed events."), field="event_types")
    return wanted


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str
    disabled_at: datetime | None
    created_at: datetime
    rotating_until: datetime | None  # the previous secret still signs until then


def _types(value: Any) -> list[str]:
    return json.loads(value or "[]") if isinstance(value, str) else list(value or [])


def _endpoint(row: dict[str, Any], now: datetime) -> Endpoint:
    expires = row["previous_secret_expires_at"]
    expires = hours.utc(expires) if expires else None
    return Endpoint(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        event_types=_types(row["event_types"]),
        enabled=bool(row["enabled"]),
        disabled_reason=row["disabled_reason"],
        disabled_at=hours.utc(row["disabled_at"]) if row["disabled_at"] else None,
        created_at=hours.utc(row["created_at"]),
        rotating_until=expires if expires and expires > now and row["previous_secret"] else None,
    )


async def create_endpoint(
    owner_id: int,
    url: str,
    *,
    event_types: list[str],
    description: str = "",
    allow_loopback: bool = False,
    now: datetime | None = None,
) -> tuple[int, str]:
    """Register an endpoint; its id and its secret (shown to its owner this once)."""
    url = _clean_url(url, "url")
    types = _event_types(event_types)
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise Invalid(_("The description is too long (at most 200 characters)."), field="description")
    await _check_safe(url, "url", allow_loopback=allow_loopback)
    now = now or clock.now()
    secret = new_secret()
    async with db.transaction():
        rows = await WebhookEndpoint.insert(
            WebhookEndpoint(
                owner=owner_id,
                url=url,
                description=description,
                event_types=types,
                secret=secret,
                enabled=True,
                created_at=now,
            )
        ).returning(WebhookEndpoint.id)
    outbox.forget()
    return rows[0]["id"], secret


_ENDPOINT_COLUMNS = (
    WebhookEndpoint.id,
    WebhookEndpoint.url,
    WebhookEndpoint.description,
    WebhookEndpoint.event_types,
    WebhookEndpoint.enabled,
    WebhookEndpoint.disabled_reason,
    WebhookEndpoint.disabled_at,
    WebhookEndpoint.created_at,
    WebhookEndpoint.previous_secret,
    WebhookEndpoint.previous_secret_expires_at,
)


async def endpoints(owner_id: int, now: datetime | None = None) -> list[Endpoint]:
    """The owner's endpoints (not the deleted ones), newest first."""
    rows = (
        await WebhookEndpoint.select(*_ENDPOINT_COLUMNS)
        .where(WebhookEndpoint.owner == owner_id, WebhookEndpoint.deleted_at.is_null())
        .order_by(WebhookEndpoint.id, ascending=False)
    )
    now = now or clock.now()
    return [_endpoint(r, now) for r in rows]


async def endpoint(owner_id: int, endpoint_id: int, now: datetime | None = None) -> Endpoint:
    row = (
        await WebhookEndpoint.select(*_ENDPOINT_COLUMNS)
        .where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.owner == owner_id,
            WebhookEndpoint.deleted_at.is_null(),
        )
        .first()
    )
    if row is None:
        raise NotFound(_("There is no such webhook endpoint."))
    return _endpoint(row, now or clock.now())


async def rotate_secret(owner_id: int, endpoint_id: int, now: datetime | None = None) -> str:
    """A new secret signs from now on; the current one also signs for ROTATION_OVERLAP (both
    signatures are sent), so the receiver can switch without losing an event. The new secret."""
    await endpoint(owner_id, endpoint_id)
    now = now or clock.now()
    secret = new_secret()
    async with db.transaction():
        current = await WebhookEndpoint.select(WebhookEndpoint.secret).where(WebhookEndpoint.id == endpoint_id).first()
        await WebhookEndpoint.update(
            {
                WebhookEndpoint.previous_secret: current["secret"],
                WebhookEndpoint.previous_secret_expires_at: now + ROTATION_OVERLAP,
                WebhookEndpoint.secret: secret,
            }
        ).where(WebhookEndpoint.id == endpoint_id)
    return secret


async def set_enabled(owner_id: int, endpoint_id: int, enabled: bool, now: datetime | None = None) -> None:
    """Turn an endpoint on (its failures forgotten: a day of new ones disables it again) or off."""
    await endpoint(owner_id, endpoint_id)
    now = now or clock.now()
    values: dict[Any, Any] = (
        {
            WebhookEndpoint.enabled: True,
            WebhookEndpoint.disabled_at: None,
            WebhookEndpoint.disabled_reason: "",
            WebhookEndpoint.failing_since: None,
        }
        if enabled
        else {
            WebhookEndpoint.enabled: False,
            WebhookEndpoint.disabled_at: now,
            WebhookEndpoint.disabled_reason: "owner",
        }
    )
    async with db.transaction():
        await WebhookEndpoint.update(values).where(WebhookEndpoint.id == endpoint_id)
    outbox.forget()


async def delete_endpoint(owner_id: int, endpoint_id: int, now: datetime | None = None) -> None:
    """Deleted: disabled and hidden; its rows (and their delivery log) are kept."""
    await endpoint(owner_id, endpoint_id)
    now = now or clock.now()
    async with db.transaction():
        await WebhookEndpoint.update(
            {
                WebhookEndpoint.enabled: False,
                WebhookEndpoint.disabled_at: now,
                WebhookEndpoint.disabled_reason: "deleted",
                WebhookEndpoint.deleted_at: now,
            }
        ).where(WebhookEndpoint.id == endpoint_id)
    outbox.forget()


async def queue_test(owner_id: int, endpoint_id: int, now: datetime | None = None) -> int:
    """Queue a `test.ping` event for this endpoint (whatever it subscribes to); the message's row id."""
    found = await endpoint(owner_id, endpoint_id)
    if not found.enabled:
        raise Invalid(_("This endpoint is disabled: enable it to send it a test event."))
    now = now or clock.now()
    message = outbox.webhook_message(
        endpoint_id, owner_id, outbox.TEST_EVENT, {"endpoint_id": endpoint_id}, f"test:{endpoint_id}", now
    )
    async with db.transaction():
        rows = await WebhookMessage.insert(message).returning(WebhookMessage.id)
    return rows[0]["id"]


_LOG_COLUMNS = (
    WebhookMessage.id,
    WebhookMessage.kind,
    WebhookMessage.msg_id,
    WebhookMessage.event_type,
    WebhookMessage.object_id,
    WebhookMessage.url,
    WebhookMessage.status,
    WebhookMessage.attempts,
    WebhookMessage.next_attempt_at,
    WebhookMessage.last_status,
    WebhookMessage.last_error,
    WebhookMessage.created_at,
    WebhookMessage.delivered_at,
    WebhookMessage.endpoint,
)


async def _with_last_attempt(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each message with its last attempt's duration (the log's timing column)."""
    ids = [r["id"] for r in rows]
    last: dict[int, dict[str, Any]] = {}
    if ids:
        attempts = (
            await WebhookAttempt.select(WebhookAttempt.message, WebhookAttempt.duration_ms, WebhookAttempt.attempted_at)
            .where(WebhookAttempt.message.is_in(ids))
            .order_by(WebhookAttempt.id)
        )
        for a in attempts:
            last[a["message"]] = a
    for r in rows:
        r["created_at"] = hours.utc(r["created_at"])
        r["next_attempt_at"] = hours.utc(r["next_attempt_at"])
        a = last.get(r["id"])
        r["duration_ms"] = a["duration_ms"] if a else None
        r["last_attempt_at"] = hours.utc(a["attempted_at"]) if a else None
    return rows


async def endpoint_log(owner_id: int, endpoint_id: int, limit: int = LOG_PAGE) -> list[dict[str, Any]]:
    """The endpoint's messages, newest first, with the last answer's code and timing."""
    await endpoint(owner_id, endpoint_id)
    rows = (
        await WebhookMessage.select(*_LOG_COLUMNS)
        .where(WebhookMessage.endpoint == endpoint_id, WebhookMessage.owner == owner_id)
        .order_by(WebhookMessage.id, ascending=False)
        .limit(limit)
    )
    return await _with_last_attempt(rows)


async def postback_log(publisher_id: int, limit: int = LOG_PAGE) -> list[dict[str, Any]]:
    rows = (
        await WebhookMessage.select(*_LOG_COLUMNS)
        .where(WebhookMessage.owner == publisher_id, WebhookMessage.kind == MessageKind.postback.value)
        .order_by(WebhookMessage.id, ascending=False)
        .limit(limit)
    )
    return await _with_last_attempt(rows)


async def message(owner_id: int, message_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One of the owner's messages and its attempts, oldest first."""
    row = (
        await WebhookMessage.select(*_LOG_COLUMNS, WebhookMessage.payload)
        .where(WebhookMessage.id == message_id, WebhookMessage.owner == owner_id)
        .first()
    )
    if row is None:
        raise NotFound(_("There is no such delivery."))
    if row["endpoint"] is not None:
        await endpoint(owner_id, row["endpoint"])  # a deleted endpoint's log is gone from the pages
    attempts = (
        await WebhookAttempt.select(
            WebhookAttempt.id,
            WebhookAttempt.attempted_at,
            WebhookAttempt.method,
            WebhookAttempt.url,
            WebhookAttempt.request_headers,
            WebhookAttempt.request_body,
            WebhookAttempt.response_status,
            WebhookAttempt.response_body,
            WebhookAttempt.duration_ms,
            WebhookAttempt.error,
        )
        .where(WebhookAttempt.message == message_id)
        .order_by(WebhookAttempt.id)
    )
    for a in attempts:
        a["attempted_at"] = hours.utc(a["attempted_at"])
        if isinstance(a["request_headers"], str):
            a["request_headers"] = json.loads(a["request_headers"] or "{}")
    row["created_at"] = hours.utc(row["created_at"])
    row["next_attempt_at"] = hours.utc(row["next_attempt_at"])
    return row, attempts


async def owned_message(owner_id: int, message_id: int) -> dict[str, Any]:
    row, _attempts = await message(owner_id, message_id)
    return row


# --- postback templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    id: int
    campaign_id: int | None
    url_template: str
    on_recorded: bool
    on_approved: bool
    enabled: bool


async def templates(publisher_id: int) -> list[Template]:
    """The publisher's templates: the global one (campaign None) first, then by campaign."""
    rows = await PostbackTemplate.select(
        PostbackTemplate.id,
        PostbackTemplate.campaign,
        PostbackTemplate.url_template,
        PostbackTemplate.on_recorded,
        PostbackTemplate.on_approved,
        PostbackTemplate.enabled,
    ).where(PostbackTemplate.publisher == publisher_id)
    found = [
        Template(
            r["id"],
            r["campaign"],
            r["url_template"],
            bool(r["on_recorded"]),
            bool(r["on_approved"]),
            bool(r["enabled"]),
        )
        for r in rows
    ]
    return sorted(found, key=lambda t: (t.campaign_id is not None, t.campaign_id or 0))


async def save_template(
    publisher_id: int,
    campaign_id: int | None,
    url_template: str,
    *,
    on_recorded: bool,
    on_approved: bool,
    enabled: bool = True,
    member_of: frozenset[int] | set[int] = frozenset(),
    allow_loopback: bool = False,
    now: datetime | None = None,
) -> int:
    """Set the publisher's global template (campaign_id None) or one campaign's (a campaign they
    are a member of: `member_of`, from the campaigns domain). The URL is checked for safety with
    the macros filled in by sample values. The template's id."""
    if campaign_id is not None and campaign_id not in member_of:
        raise NotFound(_("There is no such campaign among yours."))
    url_template = _clean_url(url_template, "url_template")
    if enabled and not (on_recorded or on_approved):
        raise Invalid(_("Choose when the postback fires: recorded, approved or both."), field="on_recorded")
    await _check_safe(outbox.fill(url_template, SAMPLE_MACROS), "url_template", allow_loopback=allow_loopback)
    now = now or clock.now()
    values = {
        PostbackTemplate.url_template: url_template,
        PostbackTemplate.on_recorded: on_recorded,
        PostbackTemplate.on_approved: on_approved,
        PostbackTemplate.enabled: enabled,
        PostbackTemplate.updated_at: now,
    }
    async with db.transaction():
        same = PostbackTemplate.publisher == publisher_id
        where = PostbackTemplate.campaign.is_null() if campaign_id is None else PostbackTemplate.campaign == campaign_id
        found = await PostbackTemplate.select(PostbackTemplate.id).where(same, where).first()
        if found is not None:
            await PostbackTemplate.update(values).where(PostbackTemplate.id == found["id"])
            template_id = found["id"]
        else:
            rows = await PostbackTemplate.insert(
                PostbackTemplate(
                    publisher=publisher_id,
                    campaign=campaign_id,
                    url_template=url_template,
                    on_recorded=on_recorded,
                    on_approved=on_approved,
                    enabled=enabled,
                    created_at=now,
                    updated_at=now,
                )
            ).returning(PostbackTemplate.id)
            template_id = rows[0]["id"]
    outbox.forget()
    return template_id


async def remove_template(publisher_id: int, template_id: int, now: datetime | None = None) -> None:
    """Stop a template (kept, disabled, with its log): the global one applies again to its campaign."""
    found = await PostbackTemplate.exists().where(
        PostbackTemplate.id == template_id, PostbackTemplate.publisher == publisher_id
    )
    if not found:
        raise NotFound(_("There is no such postback."))
    async with db.transaction():
        await PostbackTemplate.update(
            {PostbackTemplate.enabled: False, PostbackTemplate.updated_at: now or clock.now()}
        ).where(PostbackTemplate.id == template_id)
    outbox.forget()
