"""The webhook and postback pages as their owners use them: add an endpoint (its secret shown once),
a test event, rotation, the delivery log with code and timing, "send again"; URLs affnet must not
call refused at save time; another user's endpoint, log or delivery is 404."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import httpx
import pytest

from server.app import create_app
from server.core import db
from server.webhooks import delivery, outbox
from server.webhooks.tables import PostbackTemplate, WebhookEndpoint, WebhookMessage
from tests.conftest import BASE_URL
from tests.factories import login, make_advertiser, make_publisher, post_form
from tests.tracking.factories import campaign_with_link

SECRET = re.compile(r'data-testid="new-webhook-secret">(whsec_[A-Za-z0-9+/=]+)<')


async def _logged_in(client: httpx.AsyncClient, email: str) -> None:
    await login(client, email)
    await client.get("/account/webhooks")


async def _add(client: httpx.AsyncClient, url: str, events: list[str] | None = None) -> httpx.Response:
    return await post_form(
        client,
        "/account/webhooks",
        {"url": url, "description": "shop", "event_types": events or list(outbox.EVENT_TYPES)},
    )


async def _advertiser(client: httpx.AsyncClient) -> int:
    owner, email = await make_advertiser()
    await _logged_in(client, email)
    return owner


async def test_an_advertiser_adds_an_endpoint_sees_its_secret_once_and_sends_a_test_event(client, receiver):
    await _advertiser(client)
    response = await _add(client, receiver.url(), ["conversion.approved", "payout.paid"])
    assert response.status_code == 201, response.text
    secret = SECRET.search(response.text).group(1)
    [endpoint] = await WebhookEndpoint.select()
    assert endpoint["event_types"] in (["conversion.approved", "payout.paid"], '["conversion.approved", "payout.paid"]')
    listing = await client.get("/account/webhooks")
    assert receiver.url() in listing.text and secret not in listing.text

    sent = await post_form(client, f"/account/webhooks/{endpoint['id']}/test")
    assert sent.status_code == 303 and "test_delivered" in sent.headers["location"]
    [request] = receiver.requests
    body = receiver.verify(secret, request)
    assert body["type"] == "test.ping"
    page = await client.get(sent.headers["location"])
    assert "test event was delivered" in page.text
    assert request.headers["webhook-id"] in page.text


async def test_the_log_shows_each_deliverys_code_and_timing_and_its_attempts(client, receiver):
    owner = await _advertiser(client)
    await _add(client, receiver.url())
    [endpoint] = await WebhookEndpoint.select()
    receiver.respond(502)
    async with db.transaction():
        await outbox.emit("conversion.recorded", [owner], {"conversion_id": 3}, object_id="conversion:3")
    await delivery.deliver_due()
    page = await client.get(f"/account/webhooks/{endpoint['id']}")
    row = re.search(r'data-testid="log-row">(.*?)</tr>', page.text, re.S).group(1)
    assert "conversion.recorded" in row
    assert re.search(r'data-testid="log-code">502<', row)
    assert re.search(r'data-testid="log-duration">\d+ ms<', row)
    [message] = await WebhookMessage.select()
    assert message["msg_id"] in row
    detail = await client.get(f"/account/webhooks/messages/{message['id']}")
    assert detail.status_code == 200
    assert "HTTP 502" in detail.text and "webhook-signature" in detail.text
    assert endpoint["secret"] not in detail.text


async def test_send_again_delivers_the_same_message_id_now(client, receiver):
    owner = await _advertiser(client)
    secret = SECRET.search((await _add(client, receiver.url())).text).group(1)
    async with db.transaction():
        await outbox.emit("payout.paid", [owner], {"payout_id": 1}, object_id="payout:1")
    await delivery.deliver_due()
    [message] = await WebhookMessage.select()
    again = await post_form(client, f"/account/webhooks/messages/{message['id']}/resend")
    assert again.status_code == 303 and "done=resent" in again.headers["location"]
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == message["msg_id"]
    assert receiver.verify(secret, second)["type"] == "payout.paid"
    page = await client.get(again.headers["location"])
    assert page.text.count('data-testid="attempt"') == 2


async def test_rotating_the_secret_shows_the_new_one_and_both_sign_for_a_day(client, receiver):
    owner = await _advertiser(client)
    old = SECRET.search((await _add(client, receiver.url())).text).group(1)
    [endpoint] = await WebhookEndpoint.select()
    rotated = await post_form(client, f"/account/webhooks/{endpoint['id']}/rotate")
    assert rotated.status_code == 200
    new = SECRET.search(rotated.text).group(1)
    assert new != old
    async with db.transaction():
        await outbox.emit("conversion.approved", [owner], {}, object_id="conversion:1")
    await delivery.deliver_due()
    [request] = receiver.requests
    assert receiver.verify(old, request) and receiver.verify(new, request)


async def test_disable_enable_and_delete_keep_the_rows(client, receiver):
    owner = await _advertiser(client)
    await _add(client, receiver.url())
    [endpoint] = await WebhookEndpoint.select()
    base = f"/account/webhooks/{endpoint['id']}"
    assert (await post_form(client, f"{base}/disable")).status_code == 303
    async with db.transaction():
        assert await outbox.emit("conversion.approved", [owner], {}, object_id="conversion:1") == 0
    assert (await post_form(client, f"{base}/enable")).status_code == 303
    async with db.transaction():
        assert await outbox.emit("conversion.approved", [owner], {}, object_id="conversion:1") == 1
    assert (await post_form(client, f"{base}/delete")).status_code == 303
    assert (await client.get(base)).status_code == 404
    assert receiver.url() not in (await client.get("/account/webhooks")).text
    [kept] = await WebhookEndpoint.select()
    assert not kept["enabled"] and kept["deleted_at"] is not None


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "gopher://example.com/"],
)
async def test_urls_affnet_must_not_call_are_refused_at_save_time(client, url):
    await _advertiser(client)
    response = await _add(client, url)
    assert response.status_code == 422
    assert re.search(r'data-field-error="url">[^<]+<', response.text)
    assert await WebhookEndpoint.count() == 0


@pytest.fixture
async def strict_client(settings, clean):
    """A browser on an app whose settings do not allow loopback receivers (production's default)."""
    strict = create_app(replace(settings, webhooks_allow_loopback=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=strict, client=("203.0.113.9", 50000)), base_url=BASE_URL
    ) as browser:
        yield browser
    await strict.state.redis.aclose()


async def test_loopback_is_refused_unless_the_setting_allows_it(strict_client):
    await _advertiser(strict_client)
    for url in ("http://127.0.0.1/hook", "http://127.0.0.1:8080/hook", "http://[::1]/hook"):
        response = await _add(strict_client, url)
        assert response.status_code == 422, url
        message = html.unescape(re.search(r'data-field-error="url">([^<]+)<', response.text).group(1))
        assert message.strip()
    assert await WebhookEndpoint.count() == 0


async def test_another_users_endpoint_log_and_delivery_are_404(client, new_client, receiver):
    owner = await _advertiser(client)
    await _add(client, receiver.url())
    [endpoint] = await WebhookEndpoint.select()
    async with db.transaction():
        await outbox.emit("conversion.approved", [owner], {}, object_id="conversion:1")
    await delivery.deliver_due()
    [message] = await WebhookMessage.select()
    stranger = new_client()
    await _advertiser(stranger)
    base = f"/account/webhooks/{endpoint['id']}"
    assert (await stranger.get(base)).status_code == 404
    assert (await stranger.get(f"/account/webhooks/messages/{message['id']}")).status_code == 404
    for action in ("rotate", "disable", "delete", "test"):
        assert (await post_form(stranger, f"{base}/{action}")).status_code == 404
    assert (await post_form(stranger, f"/account/webhooks/messages/{message['id']}/resend")).status_code == 404
    assert len(receiver.requests) == 1
    [still] = await WebhookEndpoint.select()
    assert still["enabled"] and still["secret"] == endpoint["secret"]


async def test_a_publisher_sets_postbacks_and_sees_them_delivered(client, settings, receiver):
    setup = await campaign_with_link(settings)
    foreign = await campaign_with_link(settings)
    await login(client, setup.publisher_email)
    page = await client.get("/publisher/postbacks")
    assert page.status_code == 200 and "{click_id}" in page.text
    template = receiver.url("/pb") + "?click={click_id}&s1={sub1}&amount={payout}"
    saved = await post_form(
        client, "/publisher/postbacks", {"campaign_id": "", "url_template": template, "on_approved": "on"}
    )
    assert saved.status_code == 303, saved.text
    # a campaign they are not a member of is refused, and so is a private address
    refused = await post_form(
        client,
        "/publisher/postbacks",
        {"campaign_id": str(foreign.campaign_id), "url_template": template, "on_recorded": "on"},
    )
    assert refused.status_code == 404
    private = await post_form(
        client, "/publisher/postbacks", {"campaign_id": "", "url_template": "http://10.0.0.1/?c={click_id}"}
    )
    assert private.status_code == 422
    [row] = await PostbackTemplate.select()
    assert row["url_template"] == template and row["on_approved"] and not row["on_recorded"]

    async with db.transaction():
        await outbox.postback(
            setup.publisher.id,
            setup.campaign_id,
            "approved",
            {"click_id": "k 1", "sub1": "a/b", "payout": "8.00"},
            object_id="conversion:1",
        )
    await delivery.deliver_due()
    [request] = receiver.requests
    assert request.method == "GET" and request.query == "click=k%201&s1=a%2Fb&amount=8.00"
    log = await client.get("/publisher/postbacks")
    assert "postback.approved" in log.text and 'data-testid="log-code">200<' in log.text


async def test_only_publishers_have_a_postback_page(client):
    await _advertiser(client)
    assert (await client.get("/publisher/postbacks")).status_code == 403


async def test_publisher_can_use_webhooks_too(client, settings, receiver):
    _, email = await make_publisher(settings)
    await _logged_in(client, email)
    assert (await _add(client, receiver.url(), ["conversion.approved"])).status_code == 201


async def test_the_pages_speak_french(client, settings, receiver):
    setup = await campaign_with_link(settings)
    await login(client, setup.publisher_email)
    client.cookies.set("affnet_lang", "fr")
    client.headers["accept-language"] = "fr"
    await client.get("/account/webhooks")
    await _add(client, receiver.url())
    [endpoint] = await WebhookEndpoint.select()
    async with db.transaction():
        await outbox.emit("conversion.approved", [setup.publisher.id], {}, object_id="conversion:1")
    await delivery.deliver_due()
    [message] = await WebhookMessage.select()
    for path in (
        "/account/webhooks",
        f"/account/webhooks/{endpoint['id']}",
        f"/account/webhooks/messages/{message['id']}",
        "/publisher/postbacks",
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert "Webhooks" in page.text and ("livraison" in page.text.lower() or "point de terminaison" in page.text)


async def test_a_form_without_its_csrf_token_or_events_saves_nothing(client, receiver):
    await _advertiser(client)
    forged = await post_form(
        client, "/account/webhooks", {"url": receiver.url(), "event_types": ["payout.paid"]}, with_csrf=False
    )
    assert forged.status_code == 403
    none_chosen = await post_form(client, "/account/webhooks", {"url": receiver.url()})
    assert none_chosen.status_code == 422
    assert 'data-field-error="event_types"' in none_chosen.text
    unknown = await _add(client, receiver.url(), ["conversion.approved", "test.ping"])
    assert unknown.status_code == 422
    assert await WebhookEndpoint.count() == 0
