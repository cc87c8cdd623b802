"""What every API key's request goes through: its scope (read-only keys change nothing), its rate
limit (429 with Retry-After, counted in Redis), and Idempotency-Key (a retry is answered as the
first request was, without running again; the same key for another request is refused)."""

from __future__ import annotations

import asyncio
import time

from server.accounts import service as accounts
from server.accounts.tables import ApiIdempotency, ApiKey
from server.conversions.tables import Conversion
from tests.accounts.test_api_keys import create_key
from tests.conversions.factories import campaign_and_click
from tests.factories import login, make_advertiser


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_read_only_key_reads_but_changes_nothing(app, client, new_client, settings):
    s, click_id, _ = await campaign_and_click(settings, client)
    _, full = await accounts.create_api_key(s.advertiser, "full")
    _, read = await accounts.create_api_key(s.advertiser, "reporting", "read")
    api = new_client()

    assert (await api.get("/api/v1/me", headers=bearer(read))).status_code == 200
    refused = await api.post("/api/v1/conversions", headers=bearer(read), json={"click_id": click_id, "txn_id": "r1"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "read_only_key"
    assert "read-only" in refused.json()["error"]["message"]
    assert await Conversion.count() == 0

    done = await api.post("/api/v1/conversions", headers=bearer(full), json={"click_id": click_id, "txn_id": "r1"})
    assert done.status_code == 200 and await Conversion.count() == 1


async def test_the_keys_page_creates_a_read_only_key_and_says_so(client):
    _, email = await make_advertiser()
    await login(client, email)
    from tests.factories import post_form

    response = await post_form(client, "/account/api-keys", {"name": "dashboards", "scope": "read"})
    assert response.status_code == 201
    assert (await ApiKey.select(ApiKey.scope).first())["scope"] == "read"
    assert "Read only" in (await client.get("/account/api-keys")).text

    bad = await post_form(client, "/account/api-keys", {"name": "x", "scope": "admin"})
    assert bad.status_code == 422 and "read only, or read and write" in bad.text
    assert await ApiKey.count() == 1


async def test_a_key_past_its_rate_limit_gets_429_with_retry_after(app, client, new_client):
    _, email = await make_advertiser()
    await login(client, email)
    limited, other = await create_key(client, "limited"), await create_key(client, "other")
    await ApiKey.update({ApiKey.requests_per_minute: 3}).where(ApiKey.prefix == limited.rsplit("_", 1)[0])
    api = new_client()

    for _attempt in range(3):  # the three requests must fall in one minute: retried if they straddled two
        minute = int(time.time() // 60)
        answers = [await api.get("/api/v1/me", headers=bearer(limited)) for _ in range(4)]
        if int(time.time() // 60) == minute:
            break
        await asyncio.sleep(60 - time.time() % 60)
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    refused = answers[3]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert f"Try again in {refused.headers['retry-after']} seconds" in refused.json()["error"]["message"]
    # Each key has its own count.
    assert (await api.get("/api/v1/me", headers=bearer(other))).status_code == 200


async def test_a_retried_request_with_an_idempotency_key_is_answered_once(app, client, new_client, settings):
    s, click_id, _ = await campaign_and_click(settings, client)
    _, key = await accounts.create_api_key(s.advertiser, "shop")
    api = new_client()
    headers = {**bearer(key), "idempotency-key": "order-1001"}
    body = {"click_id": click_id, "txn_id": "1001"}

    first = await api.post("/api/v1/conversions", headers=headers, json=body)
    again = await api.post("/api/v1/conversions", headers=headers, json=body)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()  # the first answer ("accepted"), not "duplicate"
    assert first.json()["results"][0]["status"] == "accepted"
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert await Conversion.count() == 1

    other = await api.post("/api/v1/conversions", headers=headers, json={**body, "txn_id": "1002"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await Conversion.count() == 1

    # A refusal is an answer too: kept and replayed, so a retry never changes the outcome.
    bad_headers = {**bearer(key), "idempotency-key": "order-1003"}
    refused = await api.post("/api/v1/conversions", headers=bad_headers, json={"click_id": click_id})
    assert refused.status_code == 422
    assert (await api.post("/api/v1/conversions", headers=bad_headers, json={"click_id": click_id})).json() == (
        refused.json()
    )
    # Keys belong to their API key: another key's same Idempotency-Key is its own request.
    _, second_key = await accounts.create_api_key(s.advertiser, "second shop")
    own = await api.post(
        "/api/v1/conversions",
        headers={**bearer(second_key), "idempotency-key": "order-1001"},
        json={"click_id": click_id},
    )
    assert own.status_code == 422, own.text  # its own answer, not the first key's replayed 200
    assert "idempotent-replayed" not in own.headers
    assert await Conversion.count() == 1


async def test_concurrent_requests_with_one_idempotency_key_run_once(app, client, new_client, settings):
    s, click_id, _ = await campaign_and_click(settings, client)
    _, key = await accounts.create_api_key(s.advertiser, "shop")
    api = new_client()
    headers = {**bearer(key), "idempotency-key": "burst"}
    body = {"click_id": click_id, "txn_id": "b1"}
    answers = await asyncio.gather(*(api.post("/api/v1/conversions", headers=headers, json=body) for _ in range(5)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 409}
    assert 200 in codes
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "idempotency_key_in_use"
        else:
            assert answer.json()["results"][0]["status"] == "accepted"
    assert await Conversion.count() == 1
    assert [r["state"] for r in await ApiIdempotency.select(ApiIdempotency.state)] == ["done"]


async def test_a_bad_idempotency_key_is_refused_with_a_message(app, client, new_client, settings):
    s, click_id, _ = await campaign_and_click(settings, client)
    _, key = await accounts.create_api_key(s.advertiser, "shop")
    api = new_client()
    answer = await api.post(
        "/api/v1/conversions",
        headers={**bearer(key), "idempotency-key": "x" * 300},
        json={"click_id": click_id, "txn_id": "k1"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "Idempotency-Key"
    assert "printable ASCII" in answer.json()["error"]["message"]
    assert await Conversion.count() == 0
