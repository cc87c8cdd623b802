"""Creatives: text links and image banners. An upload is judged by its bytes, never by its name
or the content type the browser claims, and a refused upload leaves nothing behind."""

from __future__ import annotations

import html
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from server.audit.tables import AuditEvent
from server.campaigns import creatives
from server.campaigns.tables import Creative
from server.core.errors import NotFound
from tests.campaigns.test_advertiser_campaigns import BASE, as_user, create, logged_in_advertiser
from tests.factories import error_text, login, make_advertiser, post_form

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_bytes(width: int, height: int, fmt: str = "PNG", *, noise: bool = False) -> bytes:
    if noise:  # incompressible pixels make a large file from a modest canvas
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (32, 87, 214))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


async def upload(
    client, campaign_id: int, filename: str, data: bytes, content_type: str = "image/png", name: str = "Winter banner"
):
    if client.cookies.get("affnet_csrf") is None:
        await client.get("/login")
    return await client.post(
        f"{BASE}/{campaign_id}/creatives/image",
        data={"name": name, "_csrf_token": client.cookies["affnet_csrf"]},
        files={"file": (filename, data, content_type)},
        follow_redirects=False,
    )


def media_files(settings) -> set[str]:
    path = Path(settings.media_dir)
    return {p.name for p in path.iterdir()} if path.exists() else set()


@pytest.fixture(autouse=True)
def _remove_stored_images(settings):
    """Uploads land in the real media directory: take away what each test stored."""
    before = media_files(settings)
    yield
    for name in media_files(settings) - before:
        (Path(settings.media_dir) / name).unlink(missing_ok=True)


def shown_error(response) -> str:
    return html.unescape(error_text(response.text))


async def test_a_png_banner_is_stored_measured_tagged_and_served(client, settings):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    data = image_bytes(300, 250)
    before = media_files(settings)

    response = await upload(client, campaign_id, "../../etc/my banner.png", data)
    assert response.status_code == 303, shown_error(response)
    assert response.headers["location"] == f"{BASE}/{campaign_id}#creatives"

    row = await Creative.select().first()
    assert (
        row["kind"],
        row["name"],
        row["mime_type"],
        row["width"],
        row["height"],
        row["iab_size"],
        row["byte_size"],
        row["archived"],
    ) == ("image", "Winter banner", "image/png", 300, 250, "300x250", len(data), False)
    stored = row["image_path"]
    assert stored.endswith(".png") and "banner" not in stored and "/" not in stored  # never the user's file name
    assert media_files(settings) - before == {stored}
    assert (Path(settings.media_dir) / stored).read_bytes() == data
    assert await AuditEvent.exists().where(AuditEvent.action == "creative.created", AuditEvent.object_id == row["id"])

    served = await client.get(f"/media/{stored}")
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.content == data

    page = await client.get(f"{BASE}/{campaign_id}")
    assert f'src="/media/{stored}"' in page.text and "IAB 300x250" in page.text


async def test_the_type_comes_from_the_content_and_odd_sizes_get_no_iab_tag(client, settings):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    # A JPEG that calls itself a PNG is stored as what it is.
    response = await upload(client, campaign_id, "banner.png", image_bytes(728, 90, "JPEG"), "image/png")
    assert response.status_code == 303, shown_error(response)
    response = await upload(client, campaign_id, "odd.gif", image_bytes(200, 100, "WEBP"), "image/gif", name="Odd")
    assert response.status_code == 303, shown_error(response)
    rows = await Creative.select().order_by(Creative.id)
    assert [
        (r["mime_type"], r["image_path"].rsplit(".", 1)[1], r["width"], r["height"], r["iab_size"]) for r in rows
    ] == [("image/jpeg", "jpg", 728, 90, "728x90"), ("image/webp", "webp", 200, 100, "")]


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="300" height="250">'
    b'<script>alert(1)</script><rect width="300" height="250"/></svg>'
)
REFUSED = {
    "a text file renamed .png": (
        "banner.png",
        b"just some text, not an image\n" * 20,
        "image/png",
        "Only PNG, JPEG, GIF or WebP images",
    ),
    "an SVG": ("banner.svg", SVG, "image/svg+xml", "Only PNG, JPEG, GIF or WebP images"),
    "an SVG calling itself a PNG": ("banner.png", SVG, "image/png", "Only PNG, JPEG, GIF or WebP images"),
    "a BMP": ("banner.bmp", image_bytes(300, 250, "BMP"), "image/bmp", "Only PNG, JPEG, GIF or WebP images"),
    "a truncated PNG": ("banner.png", image_bytes(300, 250)[:60], "image/png", "damaged or incomplete"),
    "an image over the size limit": (
        "big.png",
        image_bytes(480, 400, noise=True),
        "image/png",
        "The image is larger than 512 KB",
    ),
    "no file at all": ("empty.png", b"", "image/png", "Choose an image file to upload."),
}


@pytest.mark.parametrize("filename,data,content_type,message", REFUSED.values(), ids=REFUSED.keys())
async def test_refused_uploads_say_why_and_store_nothing(client, settings, filename, data, content_type, message):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    before = media_files(settings)
    response = await upload(client, campaign_id, filename, data, content_type, name="Kept name")
    assert response.status_code == 422
    assert message in shown_error(response)
    assert 'value="Kept name"' in response.text  # the upload form keeps what was typed
    assert await Creative.count() == 0
    assert media_files(settings) == before
    assert not await AuditEvent.exists().where(AuditEvent.action == "creative.created")


def test_the_oversized_test_image_really_is_a_valid_png_over_the_limit():
    data = REFUSED["an image over the size limit"][1]
    assert data.startswith(PNG_MAGIC) and 512 * 1024 < len(data) < creatives.UPLOAD_BODY_LIMIT


async def test_a_request_body_over_the_route_limit_is_refused_before_it_is_read(client, settings):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    before = media_files(settings)
    response = await upload(client, campaign_id, "huge.png", PNG_MAGIC + b"\0" * creatives.UPLOAD_BODY_LIMIT)
    assert response.status_code == 413
    assert await Creative.count() == 0 and media_files(settings) == before


async def test_text_links_are_added_limited_and_archived_not_deleted(client):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    response = await post_form(
        client, f"{BASE}/{campaign_id}/creatives/text", {"name": "Sale line", "text": "Boots at half price this week"}
    )
    assert response.status_code == 303
    row = await Creative.select().first()
    assert (row["kind"], row["name"], row["text"], row["archived"]) == (
        "text",
        "Sale line",
        "Boots at half price this week",
        False,
    )

    too_long = await post_form(client, f"{BASE}/{campaign_id}/creatives/text", {"name": "Long", "text": "x" * 301})
    assert too_long.status_code == 422
    assert shown_error(too_long) == "Link text is limited to 300 characters."
    assert 'value="Long"' in too_long.text
    assert await Creative.count() == 1

    response = await post_form(client, f"{BASE}/{campaign_id}/creatives/{row['id']}/archive")
    assert response.status_code == 303
    assert (await Creative.select(Creative.archived).where(Creative.id == row["id"]).first())["archived"] is True
    assert await Creative.count() == 1  # archived, never deleted
    assert await AuditEvent.exists().where(AuditEvent.action == "creative.archived", AuditEvent.object_id == row["id"])
    page = await client.get(f"{BASE}/{campaign_id}")
    assert "archived</span>" in page.text
    assert f"/creatives/{row['id']}/archive" not in page.text


async def test_an_ended_campaign_takes_no_new_creatives(client):
    await logged_in_advertiser(client)
    campaign_id = await create(client)
    await post_form(client, f"{BASE}/{campaign_id}/end", {"confirm": "on"})
    response = await post_form(client, f"{BASE}/{campaign_id}/creatives/text", {"name": "Late", "text": "Too late"})
    assert response.status_code == 409 and "has ended" in shown_error(response)
    response = await upload(client, campaign_id, "b.png", image_bytes(300, 250))
    assert response.status_code == 409
    assert await Creative.count() == 0


async def test_another_advertisers_creatives_answer_404(client, new_client):
    owner = await logged_in_advertiser(client)
    campaign_id = await create(client)
    creative_id = await creatives.add_text(owner, campaign_id, {"name": "Mine", "text": "Buy"})

    _, email = await make_advertiser()
    other = new_client()
    await login(other, email)
    assert (await post_form(other, f"{BASE}/{campaign_id}/creatives/{creative_id}/archive")).status_code == 404
    assert (await upload(other, campaign_id, "b.png", image_bytes(300, 250))).status_code == 404
    with pytest.raises(NotFound):
        await creatives.list_creatives(as_user(owner.id + 999, "x@affnet.example"), campaign_id)
    assert (await Creative.select(Creative.archived).first())["archived"] is False
    assert await Creative.count() == 1
