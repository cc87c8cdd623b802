"""Idempotency-Key on the API: a request retried with the same key is answered as the first was.

The first request with a key claims it (a row in state "running", unique per API key and
Idempotency-Key, so two processes racing on one key cannot both run it); its answer is stored
with it; a retry of the same request (same method, path, query and body) gets that answer back
without running again; the same key with another request is refused; a retry while the first
still runs is told to wait. A key lasts 24 hours. A claim whose request died with its process
(still "running" a minute later) may be taken over; an answer that is a server error is not kept,
so the request can be tried again with the same key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.accounts.tables import ApiIdempotency
from server.core import clock, db

KEPT_FOR = timedelta(hours=24)
ABANDONED_AFTER = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request runs; `finish` or `release` its claim."""

    id: int


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used for another request."""


@dataclass(frozen=True, slots=True)
class Running:
    """The first request with this key has not answered yet."""


Claim = Claimed | Replay | Mismatch | Running


def request_hash(method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def claim(api_key_id: int, key: str, hashed: str, now: datetime | None = None) -> Claim:
    now = now or clock.now()
    for _ in range(2):  # a lost race for a new key reads the winner's row the second time
        row = (
            await ApiIdempotency.select().where(ApiIdempotency.api_key == api_key_id, ApiIdempotency.key == key).first()
        )
        if row is None:
            try:
                inserted = await ApiIdempotency.insert(
                    ApiIdempotency(api_key=api_key_id, key=key, request_hash=hashed, state="running", created_at=now)
                ).returning(ApiIdempotency.id)
            except Exception as exc:
                if db.is_unique_violation(exc):
                    continue
                raise
            return Claimed(inserted[0]["id"])
        expired = row["created_at"] <= now - KEPT_FOR
        abandoned = row["state"] == "running" and row["created_at"] <= now - ABANDONED_AFTER
        if expired or (abandoned and row["request_hash"] == hashed):
            return await _take_over(row, hashed, now)
        if row["request_hash"] != hashed:
            return Mismatch()
        if row["state"] == "running":
            return Running()
        return Replay(row["status_code"], row["content_type"], row["body"].encode("utf-8"))
    return Running()


async def _take_over(row: dict, hashed: str, now: datetime) -> Claim:
    """Reuse an expired or abandoned row, if no other process took it over first."""
    taken = (
        await ApiIdempotency.update(
            {
                ApiIdempotency.request_hash: hashed,
                ApiIdempotency.state: "running",
                ApiIdempotency.created_at: now,
                ApiIdempotency.status_code: 0,
                ApiIdempotency.body: "",
            }
        )
        .where(ApiIdempotency.id == row["id"], ApiIdempotency.created_at == row["created_at"])
        .returning(ApiIdempotency.id)
    )
    return Claimed(row["id"]) if taken else Running()


async def finish(claimed: Claimed, status_code: int, content_type: str, body: bytes) -> None:
    """Keep the answer for retries; a server error's answer is not kept (the claim is freed)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if status_code >= 500 or text is None:
        await release(claimed)
        return
    await ApiIdempotency.update(
        {
            ApiIdempotency.state: "done",
            ApiIdempotency.status_code: status_code,
            ApiIdempotency.content_type: content_type[:100],
            ApiIdempotency.body: text,
        }
    ).where(ApiIdempotency.id == claimed.id)


async def release(claimed: Claimed) -> None:
    """Forget a claim whose request did not run to an answer worth keeping: it may be sent again."""
    await ApiIdempotency.delete().where(ApiIdempotency.id == claimed.id, ApiIdempotency.state == "running")
