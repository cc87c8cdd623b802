"""The webhook outbox: an event becomes one message per subscribed endpoint, written in the
transaction of the event that causes it (so a message exists exactly when its event does); a
conversion becomes a postback for the publisher's URL template. The worker delivers them
(server/webhooks/delivery.py).

The conversion intake and the approval job call `emit`/`postback` for every conversion, and most
owners have no endpoint and no template: each process keeps the set of owners that have one, read
at most every CACHE_SECONDS (and dropped when this process saves an endpoint or a template), so an
owner without one costs a set lookup, not a query."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from server.core import clock
from server.webhooks.tables import (
    MessageKind,
    MessageStatus,
    PostbackTemplate,
    WebhookEndpoint,
    WebhookMessage,
)

EVENT_TYPES: tuple[str, ...] = (
    "conversion.recorded",
    "conversion.approved",
    "conversion.rejected",
    "conversion.reversed",
    "payout.paid",
    "payout.failed",
    "campaign.paused_for_funds",
    "application.decided",
)
TEST_EVENT = "test.ping"  # sent by the endpoint page's "send a test event"; not subscribable

TRIGGERS = ("recorded", "approved")
MACROS: tuple[str, ...] = (
    "click_id",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "txn_id",
    "payout",
    "currency",
    "status",
    "campaign_id",
)
_MACRO = re.compile(r"\{([a-z_0-9]+)\}")

CACHE_SECONDS = 5.0
OBJECT_ID_MAX = 100


class _OwnerCache:
    """The ids of the users who have something to deliver to, read at most every CACHE_SECONDS."""

    def __init__(self, load: Callable[[], Awaitable[frozenset[int]]]) -> None:
        self._load = load
        self._owners: frozenset[int] = frozenset()
        self._read_at: float | None = None

    async def owners(self) -> frozenset[int]:
        if self._read_at is None or time.monotonic() - self._read_at > CACHE_SECONDS:
            self._owners = await self._load()
            self._read_at = time.monotonic()
        return self._owners

    def drop(self) -> None:
        self._read_at = None


async def _endpoint_owners() -> frozenset[int]:
    rows = await WebhookEndpoint.select(WebhookEndpoint.owner).where(WebhookEndpoint.enabled.eq(True)).distinct()
    return frozenset(r["owner"] for r in rows)


async def _template_owners() -> frozenset[int]:
    rows = await PostbackTemplate.select(PostbackTemplate.publisher).where(PostbackTemplate.enabled.eq(True)).distinct()
    return frozenset(r["publisher"] for r in rows)


ENDPOINT_OWNERS = _OwnerCache(_endpoint_owners)
TEMPLATE_OWNERS = _OwnerCache(_template_owners)


def forget() -> None:
    """Drop both caches: an endpoint or a template was saved (or the tests emptied the tables)."""
    ENDPOINT_OWNERS.drop()
    TEMPLATE_OWNERS.drop()


def new_msg_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload(event_type: str, data: Mapping[str, Any], now: datetime) -> str:
    """The body of a webhook, as Standard Webhooks shapes it: type, the event's time, its data."""
    body = {"type": event_type, "timestamp": _timestamp(now), "data": dict(data)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)


def _message(
    *,
    kind: MessageKind,
    owner: int,
    event_type: str,
    object_id: str,
    lane: str,
    now: datetime,
    endpoint: int | None = None,
    template: int | None = None,
    url: str = "",
    body: str = "",
) -> WebhookMessage:
    return WebhookMessage(
        kind=kind.value,
        msg_id=new_msg_id(),
        owner=owner,
        endpoint=endpoint,
        template=template,
        event_type=event_type,
        object_id=object_id,
        lane=lane,
        url=url,
        payload=body,
        status=MessageStatus.pending.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def webhook_message(
    endpoint_id: int, owner_id: int, event_type: str, data: Mapping[str, Any], object_id: str, now: datetime
) -> WebhookMessage:
    object_id = str(object_id)[:OBJECT_ID_MAX]
    return _message(
        kind=MessageKind.webhook,
        owner=owner_id,
        endpoint=endpoint_id,
        event_type=event_type,
        object_id=object_id,
        lane=f"e{endpoint_id}:{object_id}",
        body=payload(event_type, data, now),
        now=now,
    )


async def emit(
    event_type: str, owner_ids: Iterable[int], data: dict[str, Any], *, object_id: str, now: datetime | None = None
) -> int:
    """Queue the event for every enabled endpoint of these owners subscribed to it, in the caller's
    transaction; how many messages were written."""
    return await emit_many([(event_type, owner_ids, data, object_id)], now=now)


async def emit_many(
    events: Sequence[tuple[str, Iterable[int], dict[str, Any], str]], *, now: datetime | None = None
) -> int:
    """The same for a batch of (event_type, owner_ids, data, object_id): one insert for all."""
    if not events:
        return 0
    known = await ENDPOINT_OWNERS.owners()
    wanted = [(t, [o for o in set(owners) if o in known], d, oid) for t, owners, d, oid in events]
    owners = {o for _, os, _, _ in wanted for o in os}
    if not owners:
        return 0
    now = now or clock.now()
    endpoints = await WebhookEndpoint.select(
        WebhookEndpoint.id, WebhookEndpoint.owner, WebhookEndpoint.event_types
    ).where(WebhookEndpoint.owner.is_in(sorted(owners)), WebhookEndpoint.enabled.eq(True))
    by_owner: dict[int, list[tuple[int, set[str]]]] = {}
    for e in sorted(endpoints, key=lambda r: r["id"]):
        types = e["event_types"]
        if isinstance(types, str):
            types = json.loads(types or "[]")
        by_owner.setdefault(e["owner"], []).append((e["id"], set(types)))
    rows = [
        webhook_message(endpoint_id, owner, event_type, data, object_id, now)
        for event_type, owner_list, data, object_id in wanted
        for owner in sorted(owner_list)
        for endpoint_id, types in by_owner.get(owner, [])
        if event_type in types
    ]
    if rows:
        await WebhookMessage.insert(*rows)
    return len(rows)


def fill(url_template: str, macros: Mapping[str, Any]) -> str:
    """The template with each known macro replaced by its value, URL-encoded (a missing value is
    empty); text in braces that is not a macro stays as it is."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in MACROS:
            return match.group(0)
        raw = macros.get(name)
        return quote("" if raw is None else str(raw), safe="")

    return _MACRO.sub(value, url_template)


async def postback(
    publisher_id: int,
    campaign_id: int,
    trigger: str,
    macros: Mapping[str, str],
    *,
    object_id: str,
    now: datetime | None = None,
) -> int:
    """Queue the publisher's postback for a conversion `trigger` ("recorded" or "approved"): the
    campaign's own template if they set one, else their global one, if it fires on that trigger."""
    return await postback_many([(publisher_id, campaign_id, trigger, macros, object_id)], now=now)


async def postback_many(
    items: Sequence[tuple[int, int, str, Mapping[str, str], str]], *, now: datetime | None = None
) -> int:
    """The same for a batch of (publisher_id, campaign_id, trigger, macros, object_id): one insert."""
    if not items:
        return 0
    known = await TEMPLATE_OWNERS.owners()
    wanted = [item for item in items if item[0] in known]
    if not wanted:
        return 0
    for item in wanted:
        if item[2] not in TRIGGERS:
            raise ValueError(f"unknown postback trigger {item[2]!r}")
    now = now or clock.now()
    templates = await PostbackTemplate.select(
        PostbackTemplate.id,
        PostbackTemplate.publisher,
        PostbackTemplate.campaign,
        PostbackTemplate.url_template,
        PostbackTemplate.on_recorded,
        PostbackTemplate.on_approved,
    ).where(
        PostbackTemplate.publisher.is_in(sorted({i[0] for i in wanted})),
        PostbackTemplate.enabled.eq(True),
    )
    chosen = {(t["publisher"], t["campaign"]): t for t in templates}
    rows = []
    for publisher_id, campaign_id, trigger, macros, object_id in wanted:
        template = chosen.get((publisher_id, campaign_id)) or chosen.get((publisher_id, None))
        if template is None or not template[f"on_{trigger}"]:
            continue
        oid = str(object_id)[:OBJECT_ID_MAX]
        rows.append(
            _message(
                kind=MessageKind.postback,
                owner=publisher_id,
                template=template["id"],
                event_type=f"postback.{trigger}",
                object_id=oid,
                lane=f"p{publisher_id}:{oid}",
                url=fill(template["url_template"], {"campaign_id": campaign_id, **macros}),
                now=now,
            )
        )
    if rows:
        await WebhookMessage.insert(*rows)
    return len(rows)
