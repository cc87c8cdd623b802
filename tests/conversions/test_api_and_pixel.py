"""POST /api/v1/conversions (advertiser API keys, one or many) and the pixel GET /px/{key}.gif."""

from __future__ import annotations

from server.conversions.tables import Conversion
from server.http.conversions.public import PIXEL_GIF
from tests.conversions.factories import api_key, campaign_and_click, conversions, secrets_of


async def test_the_api_takes_several_conversions_with_a_result_for_each(app, client, settings):
    s, click_id, _ = await campaign_and_click(
        settings, client, goal_1_name="lead", goal_1_model="cpl", goal_1_advertiser="1.50", goal_1_publisher="1.00"
    )
    key = await api_key(s.advertiser)
    response = await client.post(
        "/api/v1/conversions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "conversions": [
                {"click_id": click_id, "txn_id": "a1"},
                {"click_id": click_id, "txn_id": "a2", "goal": "lead"},
                {"click_id": click_id, "txn_id": "a1"},  # a repeat within the batch
                {"click_id": "forged", "txn_id": "a3"},
                {"click_id": click_id, "txn_id": "a4", "goal": "lead", "amount": 12.5},
            ]
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["refused"]) == (2, 1, 2)
    results = body["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "duplicate", "refused", "refused"]
    assert [r["code"] for r in results] == [None, None, None, "unknown_click", "bad_amount"]
    assert [r["http_status"] for r in results] == [200, 200, 200, 404, 422]
    assert results[2]["conversion_id"] == results[0]["conversion_id"]
    assert results[1]["payout"] == {
        "currency": "EUR",
        "price_minor": 150,
        "publisher_minor": 100,
        "network_minor": 50,
        "sale_amount_minor": None,
    }
    rows = await conversions()
    assert [(r["txn_id"], r["source"]) for r in rows] == [("a1", "api"), ("a2", "api")]


async def test_a_single_api_conversion_answers_with_its_own_status(app, client, settings):
    s, click_id, _ = await campaign_and_click(settings, client)
    headers = {"authorization": f"Bearer {await api_key(s.advertiser)}"}
    ok = await client.post("/api/v1/conversions", headers=headers, json={"click_id": click_id, "txn_id": "o1"})
    assert ok.status_code == 200 and ok.json()["results"][0]["status"] == "accepted"
    missing = await client.post("/api/v1/conversions", headers=headers, json={"click_id": click_id})
    assert missing.status_code == 422 and missing.json()["results"][0]["code"] == "txn_id_required"
    assert await Conversion.count() == 1


async def test_another_advertisers_api_key_cannot_report_to_this_campaign(app, client, settings):
    _, click_id, _ = await campaign_and_click(settings, client)
    other, _, _ = await campaign_and_click(settings, client)
    headers = {"authorization": f"Bearer {await api_key(other.advertiser)}"}
    response = await client.post("/api/v1/conversions", headers=headers, json={"click_id": click_id, "txn_id": "o1"})
    assert response.status_code == 401
    assert response.json()["results"][0]["code"] == "bad_token"
    publisher = await client.post(
        "/api/v1/conversions",
        json={"click_id": click_id, "txn_id": "o1"},
        headers={"authorization": f"Bearer {await api_key(other.publisher)}"},
    )
    assert publisher.status_code == 403
    assert await Conversion.count() == 0


async def test_the_api_is_documented_in_openapi(app, client):
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/api/v1/conversions"]["post"]
    assert "requestBody" in operation and "200" in operation["responses"]
    assert "ConversionRequest" in str(operation) and "/postback" in schema["paths"]
    earnings = schema["paths"]["/api/v1/publisher/earnings"]["get"]
    assert "200" in earnings["responses"] and earnings.get("security")


async def test_the_pixel_answers_a_gif_and_records_the_conversion(app, client, settings):
    s, click_id, _ = await campaign_and_click(settings, client)
    key = (await secrets_of(s.campaign_id))["public_key"]
    response = await client.get(f"/px/{key}.gif", params={"click_id": click_id, "txn_id": "p1"})
    assert response.status_code == 200
    assert response.content == PIXEL_GIF and response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"].startswith("no-store")
    assert response.headers["x-affnet-result"] == "accepted"
    again = await client.get(f"/px/{key}.gif", params={"click_id": click_id, "txn_id": "p1"})
    assert again.status_code == 200 and again.headers["x-affnet-result"] == "duplicate"
    [row] = await conversions()
    assert (row["source"], row["publisher"], row["txn_id"]) == ("pixel", s.publisher.id, "p1")


async def test_the_pixel_refuses_with_a_gif_a_status_and_a_reason(app, client, settings):
    s, click_id, _ = await campaign_and_click(settings, client)
    other, other_click, _ = await campaign_and_click(settings, client)
    key = (await secrets_of(s.campaign_id))["public_key"]
    cases = [
        (f"/px/{key}.gif", {"click_id": other_click, "txn_id": "p1"}, 404, "unknown_click"),  # another campaign's
        (f"/px/{key}.gif", {"click_id": "forged", "txn_id": "p1"}, 404, "unknown_click"),
        ("/px/nosuchkey.gif", {"click_id": click_id, "txn_id": "p1"}, 404, "unknown_campaign"),
        (f"/px/{key}", {"click_id": click_id, "txn_id": "p1"}, 404, "unknown_campaign"),
        (f"/px/{key}.gif", {"click_id": click_id, "txn_id": "p1", "currency": "GBP"}, 422, "bad_currency"),
    ]
    for path, params, status, code in cases:
        response = await client.get(path, params=params)
        assert (response.status_code, response.headers["x-affnet-result"]) == (status, code), path
        assert response.content == PIXEL_GIF
    assert await Conversion.count() == 0


async def test_the_campaign_page_shows_how_to_report_conversions(app, client, settings):
    from tests.factories import login

    s, _, token = await campaign_and_click(settings, client)
    key = (await secrets_of(s.campaign_id))["public_key"]
    await login(client, s.advertiser.email)
    page = (await client.get(f"/advertiser/campaigns/{s.campaign_id}")).text
    assert "Conversion tracking" in page
    assert f"/postback?click_id={{click_id}}&amp;txn_id={{order_id}}&amp;token={token}" in page
    assert f"/px/{key}.gif" in page and "affnet_click_id" in page
