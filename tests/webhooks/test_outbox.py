"""What the outbox queues: one message per subscribed enabled endpoint of each owner, a postback from
the campaign's own template or else the global one, on the triggers chosen, its macros URL-encoded."""

from __future__ import annotations

import json

from server.core import db
from server.webhooks import outbox, service
from server.webhooks.tables import WebhookMessage
from tests.factories import make_advertiser, make_publisher
from tests.tracking.factories import campaign_with_link


async def _messages() -> list[dict]:
    return await WebhookMessage.select().order_by(WebhookMessage.id)


async def test_an_event_is_queued_for_each_subscribed_enabled_endpoint_of_its_owners(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    other, _ = await make_advertiser()
    nobody, _ = await make_advertiser()
    approved_only, _ = await webhook_endpoint(owner, receiver.url("/a"), events=["conversion.approved"])
    everything, _ = await webhook_endpoint(owner, receiver.url("/b"))
    off, _ = await webhook_endpoint(other, receiver.url("/c"))
    await service.set_enabled(other, off, False)

    async with db.transaction():
        queued = await outbox.emit(
            "conversion.recorded", [owner, other, nobody], {"conversion_id": 7}, object_id="conversion:7"
        )
        queued += await outbox.emit("conversion.approved", [owner], {"conversion_id": 7}, object_id="conversion:7")
    assert queued == 3
    rows = await _messages()
    assert [(r["endpoint"], r["event_type"]) for r in rows] == [
        (everything, "conversion.recorded"),
        (approved_only, "conversion.approved"),
        (everything, "conversion.approved"),
    ]
    body = json.loads(rows[0]["payload"])
    assert body["type"] == "conversion.recorded"
    assert body["data"] == {"conversion_id": 7}
    assert body["timestamp"].endswith("Z")
    assert all(r["msg_id"].startswith("msg_") and r["status"] == "pending" for r in rows)
    assert len({r["msg_id"] for r in rows}) == 3


async def test_emit_many_writes_a_batch_and_an_owner_without_endpoints_costs_nothing(webhook_endpoint, receiver):
    owner, _ = await make_advertiser()
    lonely, _ = await make_advertiser()
    await webhook_endpoint(owner, receiver.url())
    events = [("conversion.approved", [owner, lonely], {"n": i}, f"conversion:{i}") for i in range(5)]
    async with db.transaction():
        assert await outbox.emit_many(events) == 5
        assert await outbox.emit("payout.paid", [lonely], {}, object_id="payout:1") == 0
    assert len(await _messages()) == 5


async def test_a_postback_uses_the_campaigns_template_else_the_global_one_with_encoded_macros(clean, settings):
    setup = await campaign_with_link(settings)
    other = await campaign_with_link(settings)
    publisher = setup.publisher.id
    pub2, _ = await make_publisher(settings)
    await service.save_template(
        publisher,
        None,
        "http://127.0.0.1:9/global?click={click_id}&amount={payout}&c={campaign_id}",
        on_recorded=True,
        on_approved=False,
        allow_loopback=True,
    )
    await service.save_template(
        publisher,
        setup.campaign_id,
        "http://127.0.0.1:9/own?click={click_id}&s1={sub1}&st={status}&unknown={nope}",
        on_recorded=True,
        on_approved=True,
        member_of={setup.campaign_id},
        allow_loopback=True,
    )
    macros = {"click_id": "a b&c", "sub1": "ä/é?", "payout": "12.50", "status": "approved"}
    async with db.transaction():
        assert await outbox.postback(publisher, setup.campaign_id, "approved", macros, object_id="conversion:1") == 1
        assert await outbox.postback(publisher, other.campaign_id, "recorded", macros, object_id="conversion:2") == 1
        # the global template does not fire on approval; a publisher without templates gets nothing
        assert await outbox.postback(publisher, other.campaign_id, "approved", macros, object_id="conversion:2") == 0
        assert await outbox.postback(pub2, setup.campaign_id, "recorded", macros, object_id="conversion:3") == 0
    rows = await _messages()
    assert [r["url"] for r in rows] == [
        "http://127.0.0.1:9/own?click=a%20b%26c&s1=%C3%A4%2F%C3%A9%3F&st=approved&unknown={nope}",
        f"http://127.0.0.1:9/global?click=a%20b%26c&amount=12.50&c={other.campaign_id}",
    ]
    assert [r["kind"] for r in rows] == ["postback", "postback"]
    assert rows[0]["event_type"] == "postback.approved"
