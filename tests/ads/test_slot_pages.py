"""Publishers' ad slots: creating, listing, editing and pausing them, and the snippet to paste."""

from __future__ import annotations

import html
import re

from server.ads.tables import AdSlot
from tests.ads.factories import publisher, slot, slot_form
from tests.conftest import BASE_URL
from tests.factories import error_text, login, make_publisher, post_form


async def publisher_client(new_client, settings):
    user_id, email = await make_publisher(settings)
    client = new_client()
    await login(client, email)
    return client, user_id


def snippet_of(page: str) -> str:
    match = re.search(r'data-testid="snippet">(.*?)</textarea>', page, re.S)
    assert match, "no snippet on the page"
    return html.unescape(match.group(1))


async def test_a_publisher_creates_a_slot_and_gets_a_snippet_that_reserves_its_size(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    assert (await client.get("/publisher/slots/new")).status_code == 200
    response = await post_form(
        client,
        "/publisher/slots/new",
        slot_form(name="Recipe sidebar", format="728x90", domains="Blog.Example.org\nwww.example.org"),
    )
    assert response.status_code == 303
    detail = await client.get(response.headers["location"])
    assert detail.status_code == 200
    [row] = await AdSlot.select().where(AdSlot.publisher == user_id)
    assert (row["name"], row["format"], row["domains"], row["status"]) == (
        "Recipe sidebar",
        "728x90",
        "blog.example.org\nwww.example.org",
        "active",
    )
    snippet = snippet_of(detail.text)
    assert f'data-affnet-slot="{row["public_key"]}"' in snippet and 'data-affnet-format="728x90"' in snippet
    # The size is reserved by the placeholder itself, before any script has loaded.
    assert "width:728px" in snippet and "height:90px" in snippet
    assert f'<script async src="{BASE_URL}/static/embed.js"></script>' in snippet
    listing = await client.get("/publisher/slots")
    assert "Recipe sidebar" in listing.text and listing.text.count('data-testid="slot-row"') == 1


async def test_every_format_reserves_its_own_size(app, settings):
    from server.ads import service

    pub = await publisher(settings)
    for fmt, size in (
        ("300x250", "width:300px;max-width:100%;height:250px"),
        ("160x600", "width:160px;max-width:100%;height:600px"),
        ("320x50", "width:320px;max-width:100%;height:50px"),
        ("native", "width:100%;max-width:100%;height:120px"),
    ):
        made = await slot(pub, format=fmt)
        assert size in service.snippet(BASE_URL, made)


async def test_bad_input_is_refused_with_a_message_and_the_form_kept(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    cases = [
        ({"domains": "https://blog.example.org/path"}, "domains", "without https://"),
        ({"domains": ""}, "domains", "at least one domain"),
        ({"format": "970x250"}, "format", "listed formats"),
        ({"fallback": "house", "house_text": "", "house_url": "https://blog.example.org/"}, "house_text", "required"),
        (
            {"fallback": "house", "house_text": "Join my newsletter", "house_url": "javascript:alert(1)"},
            "house_url",
            "web address",
        ),
        ({"fallback": "html", "fallback_html": ""}, "fallback_html", "required"),
    ]
    for overrides, _field, words in cases:
        response = await post_form(client, "/publisher/slots/new", slot_form(name="Kept name", **overrides))
        assert response.status_code == 422, (overrides, response.status_code)
        assert words in error_text(response.text), (overrides, error_text(response.text))
        assert 'value="Kept name"' in response.text and 'field invalid"' in response.text
    assert await AdSlot.count().where(AdSlot.publisher == user_id) == 0


async def test_house_ad_and_own_html_are_kept_as_typed(app, settings):
    pub = await publisher(settings)
    house = await slot(
        pub,
        fallback="house",
        house_text="Get my recipes <weekly>",
        house_url="https://Blog.Example.org/newsletter?from=slot",
    )
    assert (house["house_text"], house["house_url"]) == (
        "Get my recipes <weekly>",
        "https://blog.example.org/newsletter?from=slot",
    )
    own = await slot(pub, fallback="html", fallback_html='<a href="https://shop.example/">My shop</a>')
    assert own["fallback_html"] == '<a href="https://shop.example/">My shop</a>' and own["house_url"] == ""


async def test_editing_keeps_the_format_and_the_key(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    await post_form(client, "/publisher/slots/new", slot_form())
    before = await AdSlot.select().where(AdSlot.publisher == user_id).first()
    assert (await client.get(f"/publisher/slots/{before['id']}/edit")).status_code == 200
    response = await post_form(
        client,
        f"/publisher/slots/{before['id']}/edit",
        slot_form(name="Footer", format="728x90", domains="other.example.org"),
    )
    assert response.status_code == 303
    after = await AdSlot.select().where(AdSlot.id == before["id"]).first()
    assert (after["name"], after["format"], after["domains"], after["public_key"]) == (
        "Footer",
        "300x250",
        "other.example.org",
        before["public_key"],
    )


async def test_pausing_and_resuming_a_slot(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    await post_form(client, "/publisher/slots/new", slot_form())
    row = await AdSlot.select().where(AdSlot.publisher == user_id).first()
    assert (await post_form(client, f"/publisher/slots/{row['id']}/pause")).status_code == 303
    page = await client.get(f"/publisher/slots/{row['id']}")
    assert "This slot is paused" in page.text
    assert (await post_form(client, f"/publisher/slots/{row['id']}/pause")).status_code == 409
    assert (await post_form(client, f"/publisher/slots/{row['id']}/resume")).status_code == 303
    assert (await AdSlot.select(AdSlot.status).where(AdSlot.id == row["id"]).first())["status"] == "active"


async def test_another_publishers_slot_does_not_exist_for_them(app, new_client, settings):
    owner = await publisher(settings)
    theirs = await slot(owner, name="Not yours")
    client, _ = await publisher_client(new_client, settings)
    for path in (f"/publisher/slots/{theirs['id']}", f"/publisher/slots/{theirs['id']}/edit"):
        response = await client.get(path)
        assert response.status_code == 404 and "Not yours" not in response.text
    for path in (f"/publisher/slots/{theirs['id']}/edit", f"/publisher/slots/{theirs['id']}/pause"):
        assert (await post_form(client, path, slot_form(name="Taken"))).status_code == 404
    assert (await AdSlot.select().where(AdSlot.id == theirs["id"]).first())["name"] == "Not yours"
    assert "Not yours" not in (await client.get("/publisher/slots")).text


async def test_forms_need_the_csrf_token(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    response = await post_form(client, "/publisher/slots/new", slot_form(), with_csrf=False)
    assert response.status_code == 403
    assert await AdSlot.count().where(AdSlot.publisher == user_id) == 0


async def test_what_publishers_type_is_shown_as_text(app, new_client, settings):
    client, user_id = await publisher_client(new_client, settings)
    await post_form(
        client,
        "/publisher/slots/new",
        slot_form(
            name="<script>alert(1)</script>",
            fallback="house",
            house_text="<b>bold</b>",
            house_url="https://blog.example.org/",
        ),
    )
    row = await AdSlot.select().where(AdSlot.publisher == user_id).first()
    page = await client.get(f"/publisher/slots/{row['id']}")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<b>bold</b>" not in page.text
