"""A paid batch compared with Stripe's side (MONEY.md I10): each line paid exactly once for its amount
to its account, with one settlement; any transfer in the batch's group that no line explains, a line
paid twice, or a paid line Stripe has no transfer for, is shown to finance."""

from __future__ import annotations

from arq import create_pool
from arq.connections import RedisSettings

from server.accounts.tables import Role
from server.billing import stripe_api
from server.payouts import reconcile
from server.payouts.keys import transfer_group
from server.payouts.tables import PayoutLine
from tests.factories import post_form, staff_client
from tests.payouts.factories import approved_batch, lines_of
from workers.jobs.payouts import execute_payout_batch


async def _paid_by_the_worker(new_client, settings, stripe_local, *amounts: int) -> int:
    batch_id, _ = await approved_batch(new_client, settings, stripe_local, *amounts)
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        assert await execute_payout_batch({"settings": settings, "job_try": 1, "redis": pool}, batch_id) == "done"
    finally:
        await pool.aclose()
    return batch_id


async def _finance_page(new_client, batch_id: int):
    finance, email = await staff_client(new_client, Role.finance, first_page=f"/finance/payouts/{batch_id}")
    return finance, email, await finance.get(f"/finance/payouts/{batch_id}")


async def test_the_worker_reconciles_a_paid_batch_and_finance_sees_it_agree(new_client, settings, stripe_local):
    batch_id = await _paid_by_the_worker(new_client, settings, stripe_local, 10_000, 25_000)
    found = await reconcile.latest(batch_id)
    assert (
        found["ok"],
        found["transfers"],
        found["transferred_minor"],
        found["paid_lines"],
        found["paid_minor"],
        found["problems"],
    ) == (True, 2, 35_000, 2, 35_000, [])
    _, _, page = await _finance_page(new_client, batch_id)
    assert 'data-testid="reconciliation"' in page.text and 'data-ok="yes"' in page.text
    assert "Every line was paid exactly once" in page.text


async def test_a_line_paid_twice_and_a_stray_transfer_are_shown(new_client, settings, stripe_local):
    batch_id = await _paid_by_the_worker(new_client, settings, stripe_local, 10_000)
    [line] = await lines_of(batch_id)
    client = stripe_local.client()
    twice = await client.v1.transfers.create_async(
        {
            "amount": 10_000,
            "currency": "eur",
            "destination": line["stripe_account_id"],
            "transfer_group": transfer_group(batch_id),
            "metadata": {"payout_line_id": str(line["id"])},
        },
        {"idempotency_key": f"by-hand:{line['id']}"},
    )
    stray = await client.v1.transfers.create_async(
        {
            "amount": 123,
            "currency": "eur",
            "destination": line["stripe_account_id"],
            "transfer_group": transfer_group(batch_id),
        },
        {"idempotency_key": f"stray:{line['id']}"},
    )

    finance, email, _ = await _finance_page(new_client, batch_id)
    assert (await post_form(finance, f"/finance/payouts/{batch_id}/reconcile")).status_code == 303
    found = await reconcile.latest(batch_id)
    assert found["ok"] is False and found["by"] == email
    assert found["transfers"] == 3 and found["transferred_minor"] == 20_123
    assert any(f"Line {line['id']} was paid 2 times" in p and twice.id in p for p in found["problems"])
    assert any(stray.id in p and "belongs to no line" in p for p in found["problems"])
    page = await finance.get(f"/finance/payouts/{batch_id}")
    assert 'data-ok="no"' in page.text and stray.id in page.text


async def test_a_line_paid_here_without_its_transfer_at_stripe_is_shown(new_client, settings, stripe_local):
    batch_id = await _paid_by_the_worker(new_client, settings, stripe_local, 10_000, 20_000)
    first, second = await lines_of(batch_id)
    # The record says another transfer than the one Stripe made, and another amount.
    await PayoutLine.update({PayoutLine.stripe_transfer_id: "tr_not_at_stripe"}).where(PayoutLine.id == first["id"])
    async with stripe_api.gateway(settings) as gateway:
        result = await reconcile.reconcile_batch(batch_id, gateway.client)
    assert not result.ok
    assert [p for p in result.problems if f"Line {first['id']}" in p] == [
        f"Line {first['id']} records transfer tr_not_at_stripe, Stripe made {first['stripe_transfer_id']}."
    ]
    assert not [p for p in result.problems if f"Line {second['id']}" in p]


async def test_only_a_batch_being_paid_is_compared_and_only_by_finance(new_client, settings, stripe_local):
    batch_id, _ = await approved_batch(new_client, settings, stripe_local, 10_000)
    finance, _, _ = await _finance_page(new_client, batch_id)
    answer = await post_form(finance, f"/finance/payouts/{batch_id}/reconcile")
    assert answer.status_code == 409 and "Only a batch being paid or paid" in answer.text
    assert await reconcile.latest(batch_id) is None
    admin, _ = await staff_client(new_client, Role.admin)
    assert (await post_form(admin, f"/finance/payouts/{batch_id}/reconcile")).status_code == 403
