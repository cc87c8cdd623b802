"""Delivery of the webhook outbox: a worker claims due messages (a lease, `claimed_until`, so two
workers never hold one message at once and a crashed worker's messages come back when its lease
ends; FOR UPDATE SKIP LOCKED on PostgreSQL), sends each through server.core.safe_http (the SSRF
checks at delivery time, no redirects followed), records the attempt and settles the message.

A webhook is a POST of the message's JSON with the Standard Webhooks headers: `webhook-id` (the
msg id, the same on every try: the receiver's dedupe key), `webhook-timestamp` (the try's unix
time) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`; during a
secret rotation's overlap, the signatures of both secrets, space-separated). A postback is a GET of
its URL. A 2xx answer delivers it; anything else (another status, no answer, a URL now unsafe) is
retried on the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h…) until a day after
it was written, then it fails. An endpoint with no success since a failure a day old is disabled
and its owner told by mail.

Order: a message waits while an earlier message of its lane (the same endpoint and object, or the
same publisher's postbacks for the same object) is pending, so one object's events arrive in the
order they happened; the payload's timestamp orders the rest."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.accounts import notify
from server.core import clock, db, hours
from server.core.errors import Conflict, Invalid, NotFound
from server.core.i18n import _
from server.core.safe_http import Reply, UnsafeUrl, send
from server.core.settings import Settings
from server.webhooks import outbox
from server.webhooks.tables import MessageKind, MessageStatus, WebhookAttempt, WebhookEndpoint, WebhookMessage

log = logging.getLogger("affnet.webhooks")

CLAIM_SECONDS = 120  # a worker holds a claimed message this long (a try's timeout fits well inside)
BATCH = 50
CONCURRENCY = 10  # endpoints called at once
RUN_SECONDS = 60  # a run claims no new batch after this long (the next run goes on)
TIMEOUT = 10.0
MAX_BODY = 64 * 1024  # read of an answer at most
RESPONSE_BODY_KEPT = 2000  # characters of an answer the log keeps
USER_AGENT = "affnet-webhooks/1"
# Standard Webhooks' schedule after the first try; the last try is RETRY_PERIOD after the message.
SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
RETRY_PERIOD = timedelta(hours=24)
DISABLE_AFTER = timedelta(hours=24)  # an endpoint failing this long without a success is disabled

_allow_loopback = False


def configure(settings: Settings) -> None:
    """Called by the server's and the worker's start: whether loopback receivers are allowed (dev)."""
    global _allow_loopback
    _allow_loopback = settings.webhooks_allow_loopback


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status: int | None
    error: str


async def _claim(now: datetime, limit: int) -> tuple[str, list[int]]:
    """Take up to `limit` due messages, each the first pending one of its lane, until the lease ends
    (SKIP LOCKED on PostgreSQL: two workers take different rows; SQLite's write lock queues them)."""
    claim = secrets.token_hex(8)
    lock = "" if db.is_sqlite() else " FOR UPDATE SKIP LOCKED"
    async with db.transaction():
        due = await WebhookMessage.raw(
            "SELECT m.id FROM webhook_message m WHERE m.status = 'pending' AND m.next_attempt_at <= {} "  # noqa: S608 (constants)
            "AND (m.claimed_until IS NULL OR m.claimed_until < {}) AND NOT EXISTS (SELECT 1 FROM webhook_message e "
            "WHERE e.lane = m.lane AND e.status = 'pending' AND e.id < m.id) "
            f"ORDER BY m.id LIMIT {int(limit)}{lock}",
            now,
            now,
        )
        ids = [r["id"] for r in due]
        if ids:
            await WebhookMessage.update(
                {
                    WebhookMessage.claimed_until: now + timedelta(seconds=CLAIM_SECONDS),
                    WebhookMessage.claim: claim,
                    WebhookMessage.attempts: WebhookMessage.attempts + 1,
                }
            ).where(WebhookMessage.id.is_in(ids))
    return claim, ids


async def _claim_one(message_id: int, now: datetime) -> tuple[str, dict[str, Any]]:
    """Take one message now, whatever its status (a test event, "send again"), unless a worker is
    delivering it this moment."""
    claim = secrets.token_hex(8)
    async with db.transaction():
        row = (
            await WebhookMessage.select(WebhookMessage.status, WebhookMessage.claimed_until)
            .where(WebhookMessage.id == message_id)
            .first()
        )
        if row is None:
            raise NotFound(_("There is no such delivery."))
        held = row["claimed_until"]
        if row["status"] == MessageStatus.pending.value and held is not None and hours.utc(held) > now:
            raise Conflict(_("This delivery is being tried right now: look again in a moment."))
        await WebhookMessage.update(
            {
                WebhookMessage.claimed_until: now + timedelta(seconds=CLAIM_SECONDS),
                WebhookMessage.claim: claim,
                WebhookMessage.attempts: WebhookMessage.attempts + 1,
            }
        ).where(WebhookMessage.id == message_id)
    return claim, row


_ROW_COLUMNS = (
    WebhookMessage.id,
    WebhookMessage.kind,
    WebhookMessage.msg_id,
    WebhookMessage.owner,
    WebhookMessage.endpoint,
    WebhookMessage.url,
    WebhookMessage.payload,
    WebhookMessage.status,
    WebhookMessage.attempts,
    WebhookMessage.created_at,
)


async def _rows(claim: str, ids: list[int]) -> list[dict[str, Any]]:
    rows = (
        await WebhookMessage.select(*_ROW_COLUMNS)
        .where(WebhookMessage.claim == claim, WebhookMessage.id.is_in(ids))
        .order_by(WebhookMessage.id)
    )
    endpoint_ids = sorted({r["endpoint"] for r in rows if r["endpoint"] is not None})
    endpoints = {
        e["id"]: e
        for e in await WebhookEndpoint.select(
            WebhookEndpoint.id,
            WebhookEndpoint.owner,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            WebhookEndpoint.previous_secret,
            WebhookEndpoint.previous_secret_expires_at,
            WebhookEndpoint.enabled,
        ).where(WebhookEndpoint.id.is_in(endpoint_ids or [0]))
    }
    for r in rows:
        r["created_at"] = hours.utc(r["created_at"])
        r["endpoint_row"] = endpoints.get(r["endpoint"])
    return rows


def _request(row: dict[str, Any], now: datetime) -> tuple[str, str, dict[str, str], bytes]:
    """(method, url, headers, body) of a try: a signed POST for a webhook, a GET for a postback."""
    if row["kind"] == MessageKind.postback.value:
        return "GET", row["url"], {"User-Agent": USER_AGENT}, b""
    endpoint = row["endpoint_row"]
    body = row["payload"].encode()
    timestamp = int(time.time())  # the try's own time: a receiver refuses an old one
    signatures = [sign(endpoint["secret"], row["msg_id"], timestamp, body)]
    expires = endpoint["previous_secret_expires_at"]
    if endpoint["previous_secret"] and expires is not None and hours.utc(expires) > now:
        signatures.append(sign(endpoint["previous_secret"], row["msg_id"], timestamp, body))
    headers = {
        "webhook-id": row["msg_id"],
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    return "POST", endpoint["url"], headers, body


async def _attempt(row: dict[str, Any], now: datetime, allow_loopback: bool) -> tuple[Outcome, dict[str, Any]]:
    method, url, headers, body = _request(row, now)
    try:
        reply = await send(
            method, url, headers=headers, body=body, timeout=TIMEOUT, max_body=MAX_BODY, allow_loopback=allow_loopback
        )
    except UnsafeUrl as exc:
        reply = Reply(status=None, body=b"", elapsed_ms=0, error=f"unsafe: {exc.message}", address=None)
    delivered = reply.status is not None and 200 <= reply.status < 300
    error = reply.error or ("" if delivered else f"HTTP {reply.status}")
    attempt = {
        "message": row["id"],
        "attempted_at": now,
        "method": method,
        "url": url,
        "request_headers": headers,  # the signature is not the secret: a receiver's copy is the same
        "request_body": body.decode(errors="replace"),
        "response_status": reply.status,
        "response_body": reply.body.decode(errors="replace")[:RESPONSE_BODY_KEPT],
        "duration_ms": reply.elapsed_ms,
        "error": (reply.error or "")[:1000],
    }
    return Outcome(delivered, reply.status, error[:1000]), attempt


def _next_try(row: dict[str, Any], now: datetime) -> datetime | None:
    """When to try again after this failure, or None: the retry period is over."""
    deadline = row["created_at"] + RETRY_PERIOD
    if now >= deadline:
        return None
    step = SCHEDULE[min(max(row["attempts"] - 1, 0), len(SCHEDULE) - 1)]
    return min(now + step, deadline)


async def _settle(
    row: dict[str, Any], claim: str, outcome: Outcome, attempt: dict[str, Any] | None, now: datetime, *, manual: bool
) -> int | None:
    """Record the try and how it ended; the endpoint id when this failure disabled it."""
    values: dict[Any, Any] = {
        WebhookMessage.claimed_until: None,
        WebhookMessage.last_status: outcome.status,
        WebhookMessage.last_error: outcome.error,
    }
    if outcome.delivered:
        values |= {WebhookMessage.status: MessageStatus.delivered.value, WebhookMessage.delivered_at: now}
    elif row["status"] == MessageStatus.pending.value:
        retry_at = _next_try(row, now) if attempt is not None else None
        if retry_at is None:
            values[WebhookMessage.status] = MessageStatus.failed.value
        else:
            values[WebhookMessage.next_attempt_at] = retry_at
    # A manual try of a delivered or failed message that fails leaves its status as it was.
    disabled = None
    async with db.transaction():
        if attempt is not None:
            await WebhookAttempt.insert(WebhookAttempt(**attempt))
        where = [WebhookMessage.id == row["id"], WebhookMessage.claim == claim]
        if not manual:
            where.append(WebhookMessage.status == MessageStatus.pending.value)
        await WebhookMessage.update(values).where(*where)
        endpoint = row["endpoint_row"]
        if endpoint is not None and attempt is not None:
            disabled = await _endpoint_health(endpoint["id"], outcome.delivered, now)
    return disabled


async def _endpoint_health(endpoint_id: int, delivered: bool, now: datetime) -> int | None:
    """A success clears the endpoint's failing streak; a failure starts one, and disables the
    endpoint when it began DISABLE_AFTER ago. The endpoint id when it was disabled just now."""
    if delivered:
        await WebhookEndpoint.update({WebhookEndpoint.failing_since: None}).where(WebhookEndpoint.id == endpoint_id)
        return None
    await WebhookEndpoint.update({WebhookEndpoint.failing_since: now}).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_null()
    )
    done = (
        await WebhookEndpoint.update(
            {
                WebhookEndpoint.enabled: False,
                WebhookEndpoint.disabled_at: now,
                WebhookEndpoint.disabled_reason: "failing",
            }
        )
        .where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.enabled.eq(True),
            WebhookEndpoint.failing_since <= now - DISABLE_AFTER,
        )
        .returning(WebhookEndpoint.id, WebhookEndpoint.owner, WebhookEndpoint.url, WebhookEndpoint.failing_since)
    )
    if not done:
        return None
    found = done[0]
    log.warning("webhook endpoint %s disabled after a day of failures", endpoint_id)
    await notify.send(
        "webhook_disabled",
        found["owner"],
        {
            "url": found["url"],
            "failing_since": hours.utc(found["failing_since"]),
            "endpoint_path": f"/account/webhooks/{endpoint_id}",
        },
        now=now,
    )
    return endpoint_id


async def _deliver(
    row: dict[str, Any], claim: str, now: datetime, allow_loopback: bool, *, manual: bool
) -> tuple[bool, bool]:
    """One try and its settlement: (delivered, whether the receiver answered at all)."""
    endpoint = row["endpoint_row"]
    if row["kind"] == MessageKind.webhook.value and (endpoint is None or not endpoint["enabled"]):
        if manual:
            raise Invalid(_("This endpoint is disabled: enable it to send to it again."))
        outcome = Outcome(False, None, "endpoint disabled")
        await _settle({**row, "status": MessageStatus.pending.value}, claim, outcome, None, now, manual=False)
        return False, True
    outcome, attempt = await _attempt(row, now, allow_loopback)
    if await _settle(row, claim, outcome, attempt, now, manual=manual) is not None:
        outbox.forget()
    return outcome.delivered, outcome.status is not None


async def _release(rows: list[dict[str, Any]], claim: str, retry_at: datetime) -> None:
    """Give back claimed messages not tried (their claim's try is not counted): they wait until retry_at."""
    if not rows:
        return
    async with db.transaction():
        await WebhookMessage.update(
            {
                WebhookMessage.claimed_until: None,
                WebhookMessage.attempts: WebhookMessage.attempts - 1,
                WebhookMessage.next_attempt_at: retry_at,
            }
        ).where(
            WebhookMessage.id.is_in([r["id"] for r in rows]),
            WebhookMessage.claim == claim,
            WebhookMessage.status == MessageStatus.pending.value,
        )


async def _deliver_group(
    rows: list[dict[str, Any]], claim: str, now: datetime, loopback: bool, started: float, gate: asyncio.Semaphore
) -> int:
    """One endpoint's (or one publisher's postbacks') claimed messages, in id order. When the receiver
    gives no answer at all (down, timing out), the rest wait SCHEDULE[0] untried instead of each
    waiting out its own timeout; so do those the lease would not cover."""
    delivered = 0
    async with gate:
        for i, row in enumerate(rows):
            if time.monotonic() - started > CLAIM_SECONDS * 0.75:
                await _release(rows[i:], claim, now)
                break
            try:
                ok, answered = await _deliver(row, claim, now, loopback, manual=False)
            except Exception:  # one message's trouble (a bug) must not hold back the others
                log.exception("webhook message %s could not be settled", row["id"])
                continue
            delivered += ok
            if not answered:
                await _release(rows[i + 1 :], claim, now + SCHEDULE[0])
                break
    return delivered


async def deliver_due(now: datetime | None = None, limit: int = 200, *, allow_loopback: bool | None = None) -> int:
    """Send the due messages (at most `limit`), a batch at a time, different endpoints at once and
    each endpoint's in id order: the worker's job body. The number delivered. Safe to run twice at
    once: a message is claimed by one run only."""
    now = now or clock.now()
    loopback = _allow_loopback if allow_loopback is None else allow_loopback
    delivered = tried = 0
    run_started = time.monotonic()
    gate = asyncio.Semaphore(CONCURRENCY)
    while tried < limit and time.monotonic() - run_started < RUN_SECONDS:
        claim, ids = await _claim(now, min(BATCH, limit - tried))
        if not ids:
            break
        tried += len(ids)
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in await _rows(claim, ids):
            key = f"e{row['endpoint']}" if row["endpoint"] is not None else f"p{row['owner']}"
            groups.setdefault(key, []).append(row)
        started = time.monotonic()
        done = await asyncio.gather(
            *(_deliver_group(group, claim, now, loopback, started, gate) for group in groups.values())
        )
        delivered += sum(done)
    return delivered


async def deliver_now(message_id: int, now: datetime | None = None, *, allow_loopback: bool | None = None) -> bool:
    """One try of this message now, outside the schedule (a test event, "send again"): the same msg
    id, a new timestamp and signature. Whether the receiver took it. A failure leaves a delivered or
    failed message as it was, and a pending one on its schedule."""
    now = now or clock.now()
    loopback = _allow_loopback if allow_loopback is None else allow_loopback
    claim, _row = await _claim_one(message_id, now)
    rows = await _rows(claim, [message_id])
    if not rows:
        raise Conflict(_("This delivery is being tried right now: look again in a moment."))
    row = rows[0]
    try:
        delivered, _answered = await _deliver(
            row, claim, now, loopback, manual=row["status"] != MessageStatus.pending.value
        )
        return delivered
    except Invalid:
        async with db.transaction():
            await WebhookMessage.update(
                {WebhookMessage.claimed_until: None, WebhookMessage.attempts: WebhookMessage.attempts - 1}
            ).where(WebhookMessage.id == message_id, WebhookMessage.claim == claim)
        raise
