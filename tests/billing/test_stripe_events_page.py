"""Finance sees the Stripe events that could not be applied (their error, attempts, and whether the
sweep gave up) and can have one tried again; nobody else can."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.billing import stripe_api
from server.stripe_events import service as stripe_events
from server.stripe_events.tables import StripeEvent
from tests.factories import login, make_publisher, make_staff, post_form, staff_client


async def _broken_event(event_id: str = "evt_broken_1") -> str:
    """An event stored as the webhook stores it, whose body the worker cannot apply."""
    await StripeEvent.insert(
        StripeEvent(event_id=event_id, type="charge.refunded", payload="{not json", received_at=datetime.now(UTC))
    )
    return event_id


async def _finance(new_client):
    return (await staff_client(new_client, Role.finance, first_page="/finance/stripe-events"))[0]


async def test_finance_sees_a_failing_event_with_its_error_and_tries_it_again(new_client, settings):
    event_id = await _broken_event()
    async with stripe_api.gateway(settings) as gateway:
        with pytest.raises(ValueError):
            await stripe_events.process(event_id, gateway)
    await StripeEvent.update({StripeEvent.attempts: stripe_events.MAX_ATTEMPTS}).where(StripeEvent.event_id == event_id)
    assert await stripe_events.pending(now=datetime(2100, 1, 1, tzinfo=UTC)) == []  # the sweep gave up on it

    finance = await _finance(new_client)
    page = await finance.get("/finance/stripe-events")
    assert page.status_code == 200
    assert f'data-event-id="{event_id}" data-given-up="yes"' in page.text and "JSONDecodeError" in page.text

    answer = await post_form(finance, f"/finance/stripe-events/{event_id}/retry")
    assert answer.status_code == 303
    row = await StripeEvent.select().where(StripeEvent.event_id == event_id).first()
    assert row["attempts"] == 0 and row["processed_at"] is None
    assert await stripe_events.pending(now=datetime(2100, 1, 1, tzinfo=UTC)) == [event_id]  # the sweep tries again
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        assert [(j.function, j.args) for j in await pool.queued_jobs()] == [("process_stripe_event", (event_id,))]
    finally:
        await pool.aclose()
    assert await AuditEvent.count().where(AuditEvent.action == "stripe_event.retried") == 1


async def test_an_applied_event_is_not_listed_and_cannot_be_retried(new_client, settings):
    event_id = await _broken_event()
    await StripeEvent.update({StripeEvent.processed_at: datetime.now(UTC), StripeEvent.outcome: "done"}).where(
        StripeEvent.event_id == event_id
    )
    finance = await _finance(new_client)
    page = await finance.get("/finance/stripe-events")
    assert event_id not in page.text and 'data-testid="stripe-events-none"' in page.text
    answer = await post_form(finance, f"/finance/stripe-events/{event_id}/retry")
    assert answer.status_code == 409 and "applied already" in answer.text
    assert await AuditEvent.count().where(AuditEvent.action == "stripe_event.retried") == 0


@pytest.mark.parametrize("role", [Role.admin, Role.publisher])
async def test_only_finance_sees_or_retries_stripe_events(new_client, settings, role):
    event_id = await _broken_event()
    _, email = await (make_staff(role) if role is Role.admin else make_publisher(settings))
    other = new_client()
    await login(other, email)
    assert (await other.get("/finance/stripe-events")).status_code == 403
    await other.get("/")
    assert (await post_form(other, f"/finance/stripe-events/{event_id}/retry")).status_code == 403
    assert (await StripeEvent.select().where(StripeEvent.event_id == event_id).first())["attempts"] == 0
