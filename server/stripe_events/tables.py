"""The Stripe event inbox: every event received, once."""

from __future__ import annotations

from piccolo.columns import Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class StripeEvent(Table):
    """Every Stripe event received, by its id (a redelivery finds its row and changes nothing).
    `payload` is the exact signed body; the worker processes it and sets `processed_at`."""

    event_id = Varchar(length=255, unique=True, index=True)
    type = Varchar(length=100)
    payload = Text()
    received_at = Timestamptz()
    processed_at = Timestamptz(null=True, default=None, index=True)
    outcome = Varchar(length=40, default="")
    error = Text(default="")
    attempts = Integer(default=0)
