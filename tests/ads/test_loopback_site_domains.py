"""A slot's site domains may be loopback names (localhost, blog.localhost, 127.0.0.1, [::1]) in
development, so a blog on the developer's own machine shows ads; production refuses them."""

from __future__ import annotations

import pytest

from server.ads import service
from server.ads.tables import AdSlot
from server.core.errors import Invalid
from tests.ads.factories import ad_campaign, decide, join, publisher, slot, slot_form
from tests.ads.test_slot_pages import publisher_client
from tests.factories import error_text, post_form

LOOPBACK = "localhost\nblog.localhost\n127.0.0.1\n[::1]"


async def test_the_slot_form_takes_loopback_names_in_development(app, new_client, settings):
    assert not settings.production
    client, user_id = await publisher_client(new_client, settings)
    response = await post_form(client, "/publisher/slots/new", slot_form(domains="LocalHost.\n" + LOOPBACK))
    assert response.status_code == 303, error_text(response.text)
    [row] = await AdSlot.select().where(AdSlot.publisher == user_id)
    assert row["domains"] == "localhost\nblog.localhost\n127.0.0.1\n::1"
    # Other addresses are still no site domains.
    response = await post_form(client, "/publisher/slots/new", slot_form(domains="192.168.1.20"))
    assert response.status_code == 422 and "not a valid host name" in error_text(response.text)


@pytest.mark.parametrize("typed", ["localhost", "blog.localhost", "127.0.0.1", "[::1]", "::1"])
def test_production_refuses_loopback_names_saying_they_are_for_development(typed):
    with pytest.raises(Invalid) as refused:
        service.parse_domains(f"blog.example.org\n{typed}", loopback_allowed=False)
    assert refused.value.field == "domains"
    assert f"“{typed}”: loopback names such as localhost and 127.0.0.1 are for development only" in str(refused.value)
    # The domains of public sites are as they were.
    assert service.parse_domains("Blog.Example.org", loopback_allowed=False) == ["blog.example.org"]


async def test_a_page_on_the_developers_machine_is_served_whatever_its_port(app, client, settings):
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    key = (await slot(pub, domains="127.0.0.1\nlocalhost\n[::1]"))["public_key"]
    for origin in (
        "http://127.0.0.1:8080",
        "http://127.0.0.1",
        "http://localhost:5173",
        "http://blog.localhost:8081",
        "http://[::1]:8080",
    ):
        response = await decide(client, key, origin=origin)
        assert (response.status_code, response.json()["status"]) == (200, "ad"), (origin, response.text)
    # An <img> sends no Origin: the Referer names the page.
    response = await decide(client, key, origin=None, headers={"referer": "http://127.0.0.1:8080/?p=1"})
    assert response.json()["status"] == "ad"
    for origin in ("http://127.0.0.2:8080", "https://blog.example.org", "http://localhost.example.org"):
        response = await decide(client, key, origin=origin)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "site_not_allowed"), origin
