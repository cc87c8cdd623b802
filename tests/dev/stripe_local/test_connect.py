"""Connect on the stand-in: an Express account is onboarded through its link's page, receives transfers, and a
transfer can be reversed or made to fail."""

from __future__ import annotations

import uuid

import httpx
import pytest
import stripe

from tests.dev.stripe_local.helpers import events_for


def _key() -> dict[str, str]:
    return {"idempotency_key": f"test-{uuid.uuid4()}"}


def _onboarded(stripe_local) -> str:
    client = stripe_local.client()
    account = client.v1.accounts.create(
        {
            "type": "express",
            "country": "FR",
            "email": "pub@example.com",
            "capabilities": {"transfers": {"requested": True}},
        },
        _key(),
    )
    link = client.v1.account_links.create(
        {
            "account": account.id,
            "type": "account_onboarding",
            "refresh_url": "http://affnet.test/refresh",
            "return_url": "http://affnet.test/return",
        },
        _key(),
    )
    assert link.object == "account_link" and httpx.get(link.url).status_code == 200
    done = httpx.post(link.url, data={"action": "complete"})
    assert done.status_code == 303 and done.headers["location"] == "http://affnet.test/return"
    # The link is single use: visiting it again sends the user to refresh_url.
    assert httpx.get(link.url).headers["location"] == "http://affnet.test/refresh"
    return account.id


def test_an_account_is_created_restricted_and_onboarding_enables_payouts(stripe_local):
    client = stripe_local.client()
    account = client.v1.accounts.create({"type": "express", "country": "FR"}, _key())
    assert account.id.startswith("acct_") and account.type == "express" and account.default_currency == "eur"
    assert not account.details_submitted and not account.payouts_enabled
    account_id = _onboarded(stripe_local)
    onboarded = client.v1.accounts.retrieve(account_id)
    assert onboarded.details_submitted and onboarded.payouts_enabled
    assert onboarded.capabilities.transfers == "active" and onboarded.requirements.currently_due == []
    updated = [e for e in events_for(stripe_local, account_id) if e["type"] == "account.updated"]
    assert updated[0]["data"]["previous_attributes"]["payouts_enabled"] is False


def test_transfer_and_partial_then_full_reversal(stripe_local):
    account_id = _onboarded(stripe_local)
    client = stripe_local.client()
    transfer = client.v1.transfers.create(
        {
            "amount": 12345,
            "currency": "eur",
            "destination": account_id,
            "transfer_group": "payout-batch-3",
            "metadata": {"payout_line": "9"},
        },
        _key(),
    )
    assert transfer.id.startswith("tr_") and transfer.amount == 12345 and transfer.metadata["payout_line"] == "9"
    assert client.v1.balance_transactions.retrieve(transfer.balance_transaction).net == -12345
    part = client.v1.transfers.reversals.create(transfer.id, {"amount": 2345}, _key())
    assert part.id.startswith("trr_") and part.amount == 2345
    rest = client.v1.transfers.reversals.create(transfer.id, {}, _key())
    assert rest.amount == 10000
    fetched = client.v1.transfers.retrieve(transfer.id)
    assert fetched.amount_reversed == 12345 and fetched.reversed is True
    reversed_events = [e for e in events_for(stripe_local, transfer.id) if e["type"] == "transfer.reversed"]
    assert [e["data"]["object"]["amount_reversed"] for e in reversed_events] == [12345, 2345]


def test_a_transfer_to_an_account_not_onboarded_is_refused(stripe_local):
    client = stripe_local.client()
    account = client.v1.accounts.create({"type": "express"}, _key())
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.transfers.create({"amount": 100, "currency": "eur", "destination": account.id}, _key())
    assert refused.value.error.param == "destination"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.transfers.create({"amount": 100, "currency": "eur", "destination": "acct_nope"}, _key())
    assert missing.value.http_status == 404


def test_the_next_transfer_can_be_made_to_fail_and_the_failure_is_kept_under_its_key(stripe_local):
    account_id = _onboarded(stripe_local)
    stripe_local.control("POST", f"/_local/accounts/{account_id}/fail_next_transfer")
    client = stripe_local.client()
    params = {"amount": 500, "currency": "eur", "destination": account_id}
    key = _key()
    with pytest.raises(stripe.InvalidRequestError) as failed:
        client.v1.transfers.create(params, key)
    assert failed.value.code == "balance_insufficient"
    with pytest.raises(stripe.InvalidRequestError) as replayed:
        client.v1.transfers.create(params, key)
    assert replayed.value.headers.get("Idempotent-Replayed") == "true"
    assert client.v1.transfers.create(params, _key()).amount == 500  # a new attempt, a new key
