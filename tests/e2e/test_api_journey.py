"""The whole product by API, as two automating customers use it: an advertiser's key creates a
campaign, a publisher's key joins it and makes a tracked link, a reader clicks it, the advertiser's
shop reports the sale (retried with its Idempotency-Key: one conversion) and approves it; the
publisher's own tracker gets its postbacks and their webhook endpoint gets the signed events (checked
with the Standard Webhooks library); the publisher's earnings by API are the payout, to the cent."""

from __future__ import annotations

from urllib.parse import parse_qs

from server.ledger import postings
from server.webhooks import delivery, service
from tests.publisher_api.helpers import advertiser_api, browser, publisher_api

CAMPAIGN = {
    "name": "Scarpe Milano",
    "currency": "EUR",
    "landing_url": "https://shop.example.com/scarpe",
    "allowed_domains": ["shop.example.com"],
    "fallback_url": "https://fallback.example.org/",
    "category": "fashion",
    "goals": [{"name": "sale", "payout_model": "cpa", "price_minor": 1250, "payout_minor": 1000}],
}


async def test_a_link_made_by_api_earns_through_the_api_with_postbacks_and_webhooks(
    app,
    client,
    new_client,
    settings,
    receiver,
    webhook_endpoint,  # noqa: F811
):
    shop = await advertiser_api(new_client)
    blogger = await publisher_api(new_client, settings, display_name="Blog di Giulia")
    await postings.fund_advertiser(shop.user.id, 10_000, "EUR", reference_id=1, key="journey-fund")

    created = await shop.http.post("/api/v1/advertiser/campaigns", json=CAMPAIGN, headers=shop._auth())
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]

    # The blogger's automation: a webhook endpoint, a postback to their tracker, then join and link.
    _, secret = await webhook_endpoint(
        blogger.user.id, receiver.url("/affnet-events"), events=("conversion.recorded", "conversion.approved")
    )
    await service.save_template(
        blogger.user.id,
        None,
        receiver.url("/tracker") + "?cid={click_id}&s1={sub1}&amount={payout}&cur={currency}&status={status}",
        on_recorded=True,
        on_approved=True,
        allow_loopback=True,
    )
    joined = await blogger.post(f"/campaigns/{campaign_id}/join")
    assert joined.status_code in (200, 201), joined.text
    link = await blogger.post("/links", {"campaign_id": campaign_id, "sub1": "post-42"})
    assert link.status_code == 201, link.text

    # A reader clicks the tracked URL the API gave.
    tracked = link.json()["tracked_url"]
    landing = await client.get(tracked.removeprefix(settings.base_url), headers={"user-agent": browser()})
    assert landing.status_code == 302
    assert landing.headers["location"].startswith("https://shop.example.com/scarpe")
    click_id = parse_qs(landing.headers["location"].split("?", 1)[1])["click_id"][0]
    await app.state.click_buffer.flush()

    # The shop reports the sale; its retry with the same Idempotency-Key is the same answer.
    report = {"click_id": click_id, "txn_id": "ordine-77"}
    retry_safe = {**shop._auth(), "Idempotency-Key": "ordine-77"}
    first = await shop.http.post("/api/v1/conversions", json=report, headers=retry_safe)
    again = await shop.http.post("/api/v1/conversions", json=report, headers=retry_safe)
    assert first.status_code == 200, first.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    [result] = first.json()["results"]
    assert result["status"] == "accepted"
    conversion_id = result["conversion_id"]
    assert result["payout"]["publisher_minor"] == 1000

    listed = await shop.http.get("/api/v1/advertiser/conversions", headers=shop._auth())
    assert [c["id"] for c in listed.json()["items"]] == [conversion_id]
    decided = await shop.http.post(
        "/api/v1/advertiser/conversions/decisions",
        json={"decisions": [{"conversion_id": conversion_id, "action": "approve"}]},
        headers=shop._auth(),
    )
    assert decided.status_code == 200, decided.text

    # The worker delivers: two postbacks and two signed webhooks, in order, each once.
    await delivery.deliver_due(allow_loopback=True)
    await delivery.deliver_due(allow_loopback=True)  # nothing is sent twice
    postbacks = [r for r in receiver.requests if r.path == "/tracker"]
    events = [r for r in receiver.requests if r.path == "/affnet-events"]
    assert [parse_qs(p.query)["status"] for p in postbacks] == [["pending"], ["approved"]]
    for call in postbacks:
        query = parse_qs(call.query)
        assert (query["cid"], query["s1"], query["amount"], query["cur"]) == (
            [click_id],
            ["post-42"],
            ["10.00"],
            ["EUR"],
        )
    payloads = [receiver.verify(secret, event) for event in events]
    assert [p["type"] for p in payloads] == ["conversion.recorded", "conversion.approved"]
    for payload in payloads:
        assert payload["data"]["payout_minor"] == 1000 and payload["data"]["currency"] == "EUR"
        assert payload["data"]["sub1"] == "post-42" and "txn_id" not in payload["data"]
    assert len({e.headers["webhook-id"] for e in events}) == 2

    # The blogger's figures by API: the conversion approved, earning exactly its payout.
    mine = await blogger.get("/conversions")
    assert [(c["id"], c["status"], c["payout_minor"]) for c in mine.json()["items"]] == [
        (conversion_id, "approved", 1000)
    ]
    earnings = (await blogger.get("/earnings")).json()
    [eur] = [b for b in earnings["balances"] if b["currency"] == "EUR"]
    assert eur["pending_minor"] + eur["available_minor"] == 1000
    balances = (await shop.http.get("/api/v1/advertiser/balances", headers=shop._auth())).json()
    assert [(b["currency"], b["balance_minor"]) for b in balances["items"]] == [("EUR", 10_000 - 1250)]
