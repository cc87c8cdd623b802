"""Webhook deliveries: each event POSTed to its endpoint (the platform's, or the Connect endpoint for events of
connected accounts) with a `Stripe-Signature` header made with that endpoint's secret, in the background,
retried with a doubling, bounded delay while the endpoint fails."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

import httpx

from dev.stripe_local.store import Store

log = logging.getLogger("stripe_local.webhooks")


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`, what stripe.Webhook.construct_event verifies."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class Deliverer:
    """Sends events to the configured endpoint without ever blocking the API response that made them."""

    def __init__(self, store: Store):
        self.store = store
        self.attempts: list[dict[str, Any]] = []  # every attempt, for GET /_local/deliveries
        self._tasks: set[asyncio.Task] = set()
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        return self._client

    def schedule(self, event_id: str, times: int = 1) -> None:
        if not self.store.endpoint(self.store.event(event_id))[0]:
            return  # no endpoint: the event waits in GET /v1/events (and /_local/events/{id}/signed)
        for _ in range(times):
            task = asyncio.get_running_loop().create_task(self._deliver_with_retries(event_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver_with_retries(self, event_id: str) -> None:
        config = self.store.config
        delay = config.webhook_retry_delay
        for attempt in range(1, config.webhook_attempts + 1):
            status = await self.deliver_once(event_id, attempt)
            if status is None or 200 <= status < 300:
                return
            if attempt < config.webhook_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, config.webhook_max_delay)
        log.warning("gave up delivering %s after %d attempts", event_id, config.webhook_attempts)

    async def deliver_once(self, event_id: str, attempt: int = 1) -> int | None:
        """One POST of the event; its HTTP status, 0 on a network error, None when no endpoint is set."""
        url, secret = self.store.endpoint(self.store.event(event_id))
        if not url:
            return None
        payload = self.store.payloads[event_id]
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature_header(payload, secret),
        }
        record: dict[str, Any] = {
            "event": event_id,
            "type": self._type(event_id),
            "url": url,
            "attempt": attempt,
            "at": int(time.time()),
        }
        try:
            response = await self.client().post(url, content=payload, headers=headers)
            record["status"] = response.status_code
        except httpx.HTTPError as exc:
            record["status"], record["error"] = 0, f"{type(exc).__name__}: {exc}"
        self.attempts.append(record)
        return record["status"]

    def _type(self, event_id: str) -> str:
        return self.store.objects[event_id]["type"] if event_id in self.store.objects else ""

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
