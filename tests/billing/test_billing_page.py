"""The billing page: balance from the ledger, a low-balance warning, and the auto-pause threshold
that pauses campaigns (at once when saved, and by the worker's cron job) when the balance is below it."""

from __future__ import annotations

from server.billing import service as billing
from server.campaigns.tables import Campaign
from server.ledger import engine
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from tests.conversions.factories import campaign_and_click
from tests.factories import login, post_form
from workers import settings as worker_settings


async def spend(advertiser_id: int, amount: int) -> None:
    lines = [
        engine.Line(await ledger.account(K.advertiser_balance, "EUR", advertiser_id), -amount, "EUR"),
        engine.Line(await ledger.account(K.network_revenue, "EUR"), amount, "EUR"),
    ]
    await engine.post(
        kind="earning",
        idempotency_key=f"spend-{advertiser_id}-{amount}",
        lines=lines,
        reference_type="manual",
        reference_id=1,
    )


async def test_the_threshold_pauses_campaigns_when_the_balance_falls_below_it(client, settings):
    from server.ledger import postings

    setup, _, _ = await campaign_and_click(settings, client)
    advertiser_id = setup.advertiser.id
    await postings.fund_advertiser(advertiser_id, 20_000, "EUR", reference_id=1, key="fund-page-test")
    await login(client, setup.advertiser.email)
    page = await client.get("/advertiser/billing")
    assert "€200.00" in page.text and "Low balance" not in page.text
    saved = await post_form(
        client, "/advertiser/billing/settings", {"auto_pause_threshold": "150.00", "currency": "EUR"}
    )
    assert saved.status_code == 200 and "Billing settings saved" in saved.text
    assert "Low balance" in saved.text  # under twice the threshold
    assert (await Campaign.select(Campaign.status).first())["status"] == "active"
    await spend(advertiser_id, 6_000)  # 140.00 left
    assert await billing.enforce_all_thresholds() == [setup.campaign_id]
    campaign = await Campaign.select(Campaign.status, Campaign.status_reason).first()
    assert campaign["status"] == "paused" and "below your auto-pause threshold" in campaign["status_reason"]
    assert await billing.enforce_all_thresholds() == []  # already paused
    assert await ledger.check() == []


async def test_a_bad_threshold_is_refused_with_the_field_named(client, settings):
    setup, _, _ = await campaign_and_click(settings, client)
    await login(client, setup.advertiser.email)
    await client.get("/advertiser/billing")
    response = await post_form(
        client, "/advertiser/billing/settings", {"auto_pause_threshold": "-5", "currency": "EUR"}
    )
    assert response.status_code == 422 and "cannot be negative" in response.text


def test_the_worker_runs_the_stripe_sweep_every_minute_and_auto_pause_every_five():
    jobs = {j.name: j for j in worker_settings.WorkerSettings.cron_jobs}
    assert jobs["cron:sweep_stripe_events"].run_at_startup and jobs["cron:sweep_stripe_events"].minute is None
    assert jobs["cron:enforce_auto_pause"].minute == set(range(0, 60, 5))


async def test_the_advertiser_dashboard_shows_the_balance_of_each_campaign_currency(client, settings):
    from server.ledger import postings

    setup, _, _ = await campaign_and_click(settings, client)  # a campaign in EUR
    await login(client, setup.advertiser.email)
    empty = await client.get("/advertiser")
    assert 'data-testid="balance" data-currency="EUR">€0.00<' in empty.text and "add funds" in empty.text
    await postings.fund_advertiser(setup.advertiser.id, 12_345, "EUR", reference_id=1, key="fund-dashboard")
    funded = await client.get("/advertiser")
    assert 'data-testid="balance" data-currency="EUR">€123.45<' in funded.text
    assert funded.text.count('data-testid="balance"') == 1  # no currencies the advertiser does not use
