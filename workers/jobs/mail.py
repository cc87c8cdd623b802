"""Mail delivery: the outbox's due messages, sent over SMTP (server/mail/outbox.py)."""

from __future__ import annotations

from typing import Any

from server.mail import outbox

ROUNDS = 20  # at most this many batches a run (1,000 messages); the next run, ten seconds on, goes on


async def deliver_mail(ctx: dict[str, Any]) -> int:
    """Send what is due; the number of messages the SMTP server accepted. Safe to run twice at once."""
    sent = 0
    for _ in range(ROUNDS):
        batch = await outbox.deliver_due(ctx["clock"]())
        sent += batch
        if batch < outbox.BATCH:
            break
    return sent
