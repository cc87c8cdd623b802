"""Publishers' tracked links: the list, the link builder with sub ids and deep links, ready-made
creative HTML, and the click statistics their links earn."""

from __future__ import annotations

import html
import io
import re
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from PIL import Image

from server.campaigns import creatives
from server.campaigns import service as campaigns
from server.campaigns.tables import Creative
from server.tracking.classify import Reason
from tests.campaigns.test_publisher_marketplace import (
    link_of,
    make_advertiser_user,
    make_campaign,
    membership_of,
    publisher_client,
)
from tests.conftest import BASE_URL
from tests.factories import error_text, post_form
from tests.tracking.factories import another_reader

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
BOT = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"


def browser() -> str:
    # The redirect counts one click per visitor and link an hour, in process, across tests: a
    # user agent of its own keeps this test's visitor new.
    return f"{BROWSER} affnet-test/{uuid.uuid4().hex}"


async def joined(new_client, settings, **campaign_overrides):
    """A publisher's browser, the publisher, the campaign they joined, its advertiser and the link code."""
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, **campaign_overrides)
    client, publisher = await publisher_client(new_client, settings)
    await client.get("/publisher/campaigns")
    assert (await post_form(client, f"/publisher/campaigns/{campaign_id}/join")).status_code == 303
    code = (await link_of(publisher, campaign_id))["code"]
    return client, publisher, campaign_id, advertiser, code


def by_testid(page: str, name: str) -> str | None:
    match = re.search(rf'data-testid="{name}"[^>]*>(.*?)<', page, re.S)
    return html.unescape(match.group(1).strip()) if match else None


def clicks_row(page: str, sub1: str) -> tuple[int, int, str]:
    """(valid, invalid, why invalid) of the statistics row for this sub1."""
    match = re.search(rf'<tr data-testid="clicks-row" data-sub1="{re.escape(sub1)}">(.*?)</tr>', page, re.S)
    assert match, f"no statistics row for sub1 {sub1!r}"
    row = match.group(1)
    valid = int(re.search(r'<td class="valid">(\d+)</td>', row).group(1))
    invalid = int(re.search(r'<td class="invalid">(\d+)</td>', row).group(1))
    reasons = html.unescape(re.findall(r"<td>(.*?)</td>", row, re.S)[-1]).strip()
    return valid, invalid, reasons


# --- the list of links -----------------------------------------------------------------------------


async def test_links_page_lists_each_link_with_its_full_url_and_a_copy_button(new_client, settings):
    client, publisher, campaign_id, _, code = await joined(new_client, settings, name="Spring Boots")
    page = (await client.get("/publisher/links")).text
    url = f"{BASE_URL}/c/{code}"
    assert "Spring Boots" in page and "active" in page
    assert f'<code class="link-url">{url}</code>' in page
    assert f'data-copy="{url}"' in page
    assert '<script src="/static/app.js" defer></script>' in page
    assert f'href="/publisher/campaigns/{campaign_id}/link"' in page

    script = await client.get("/static/app.js")
    assert script.status_code == 200
    assert 'querySelectorAll("[data-copy]")' in script.text and "Copied" in script.text


async def test_a_publisher_without_links_is_pointed_to_the_marketplace(new_client, settings):
    client, _ = await publisher_client(new_client, settings)
    page = (await client.get("/publisher/links")).text
    assert "No links yet" in page and 'href="/publisher/campaigns"' in page


# --- the link builder --------------------------------------------------------------------------------


async def test_link_builder_encodes_sub_ids_and_deep_link_and_the_link_works(app, new_client, settings):
    client, _, campaign_id, _, code = await joined(new_client, settings)
    deep = "https://blog.shop.example.com/reviews?colour=red&size=42"
    query = urlencode({"sub1": "spring sale", "sub2": "a&b=c", "sub3": "", "url": deep})
    response = await client.get(f"/publisher/campaigns/{campaign_id}/link?{query}")
    assert response.status_code == 200

    built = by_testid(response.text, "built-url")
    assert built == (
        f"{BASE_URL}/c/{code}?sub1=spring%20sale&sub2=a%26b%3Dc"
        f"&url=https%3A%2F%2Fblog.shop.example.com%2Freviews%3Fcolour%3Dred%26size%3D42"
    )
    assert parse_qs(urlsplit(built).query) == {"sub1": ["spring sale"], "sub2": ["a&b=c"], "url": [deep]}
    assert f'data-copy="{html.escape(built)}"' in response.text
    assert by_testid(response.text, "base-link") == f"{BASE_URL}/c/{code}"

    # The link does what it says: the click lands on the deep link with its click id.
    path = built.removeprefix(BASE_URL)
    clicked = await client.get(path, headers={"user-agent": browser()}, follow_redirects=False)
    assert clicked.status_code == 302
    landing = urlsplit(clicked.headers["location"])
    assert (landing.hostname, landing.path) == ("blog.shop.example.com", "/reviews")
    assert parse_qs(landing.query)["colour"] == ["red"] and "click_id" in parse_qs(landing.query)


async def test_link_builder_without_choices_shows_the_plain_link(new_client, settings):
    client, _, campaign_id, _, code = await joined(new_client, settings)
    page = (await client.get(f"/publisher/campaigns/{campaign_id}/link")).text
    assert by_testid(page, "built-url") == f"{BASE_URL}/c/{code}"
    assert "shop.example.com, blog.shop.example.com" in page


@pytest.mark.parametrize(
    "hostile",
    [
        "https://evil.example/",
        "//evil.example",
        "javascript:alert(1)",
        "https://shop.example.com@evil.example/",
        "https://shop.example.com.evil.example/",
        "https://shop.example.com:8443/",
    ],
)
async def test_a_deep_link_off_the_campaigns_domains_is_refused_and_no_link_built(new_client, settings, hostile):
    client, _, campaign_id, _, code = await joined(new_client, settings)
    response = await client.get(f"/publisher/campaigns/{campaign_id}/link?{urlencode({'sub1': 'x', 'url': hostile})}")
    assert response.status_code == 422
    message = error_text(response.text)
    assert message.startswith("This deep link cannot be used")
    assert "allowed domains (shop.example.com, blog.shop.example.com)" in message
    assert by_testid(response.text, "built-url") is None
    assert f"/c/{code}?" not in response.text
    assert 'class="field invalid"' in response.text  # the deep link field is marked


async def test_an_overlong_sub_id_is_refused(new_client, settings):
    client, _, campaign_id, _, _ = await joined(new_client, settings)
    response = await client.get(f"/publisher/campaigns/{campaign_id}/link?sub2={'x' * 101}")
    assert response.status_code == 422
    assert error_text(response.text) == "sub2 is limited to 100 characters."
    assert by_testid(response.text, "built-url") is None


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_active_creatives_come_with_html_to_paste_shown_as_text(new_client, settings, tmp_path):
    client, _, campaign_id, advertiser, code = await joined(new_client, settings)
    await creatives.add_text(advertiser, campaign_id, {"name": "Sale line", "text": 'Boots <b>50%</b> off & "more"'})
    image_id = await creatives.add_image(
        advertiser,
        campaign_id,
        {"name": 'Big "red" banner'},
        _png(300, 250),
        media_dir=str(tmp_path),
        max_bytes=512 * 1024,
    )
    old = await creatives.add_text(advertiser, campaign_id, {"name": "Old line", "text": "Last year's boots"})
    await creatives.archive(advertiser, campaign_id, old)
    file_name = (await Creative.select(Creative.image_path).where(Creative.id == image_id).first())["image_path"]

    response = await client.get(f"/publisher/campaigns/{campaign_id}/link?sub1=blog")
    page = response.text
    link = f"{BASE_URL}/c/{code}?sub1=blog"
    snippets = [html.unescape(s) for s in re.findall(r"<textarea readonly[^>]*>(.*?)</textarea>", page, re.S)]
    # One line each, in a block no wider than the column (block themes, WordPress's classic editor).
    wrap = '<div class="affnet-creative" style="max-width:100%">'
    assert snippets == [
        f'{wrap}<a href="{link}" rel="sponsored noopener">'
        "Boots &lt;b&gt;50%&lt;/b&gt; off &amp; &#34;more&#34;</a></div>",
        f'{wrap}<a href="{link}" rel="sponsored noopener"><img src="{BASE_URL}/media/{file_name}" width="300" '
        f'height="250" alt="Big &#34;red&#34; banner" style="max-width:100%;height:auto"></a></div>',
    ]
    assert not any("\n" in s for s in snippets)
    assert "Last year" not in page  # archived creatives are not offered
    assert "<b>50%</b>" not in page and '<a href="' + link not in page  # never rendered as markup
    assert page.count("data-copy=") == 4  # the base link, the built link and each snippet


# --- nobody else's links or statistics ----------------------------------------------------------------


async def test_another_publishers_campaign_link_builder_and_stats_answer_404(new_client, settings):
    _, _, campaign_id, _, _ = await joined(new_client, settings)
    other, _ = await publisher_client(new_client, settings)
    for path in (
        f"/publisher/campaigns/{campaign_id}/link",
        f"/publisher/campaigns/{campaign_id}/stats",
        "/publisher/campaigns/999999/link",
        "/publisher/campaigns/999999/stats",
    ):
        response = await other.get(path)
        assert response.status_code == 404, path
        assert "You have no link in this campaign." in response.text


async def test_an_applicant_has_no_link_builder_until_accepted(new_client, settings):
    advertiser = await make_advertiser_user()
    campaign_id = await make_campaign(advertiser, visibility="approval")
    client, publisher = await publisher_client(new_client, settings)
    await client.get("/publisher/campaigns")
    await post_form(client, f"/publisher/campaigns/{campaign_id}/join")
    assert (await client.get(f"/publisher/campaigns/{campaign_id}/link")).status_code == 404

    await campaigns.decide(advertiser, (await membership_of(publisher, campaign_id))["id"], accept=True)
    assert (await client.get(f"/publisher/campaigns/{campaign_id}/link")).status_code == 200


# --- statistics -------------------------------------------------------------------------------------


async def test_clicks_show_on_the_dashboard_and_stats_page_by_sub1_and_reason(app, new_client, settings):
    client, publisher, campaign_id, _, code = await joined(new_client, settings, name="Spring Boots")

    response = await client.get(f"/c/{code}?sub1=spring", headers={"user-agent": browser()}, follow_redirects=False)
    assert response.status_code == 302
    landing = urlsplit(response.headers["location"])
    assert (landing.scheme, landing.hostname, landing.path) == ("https", "shop.example.com", "/boots")
    assert parse_qs(landing.query)["click_id"]
    bot = await client.get(f"/c/{code}?sub1=spring", headers={"user-agent": BOT}, follow_redirects=False)
    assert bot.status_code == 302  # a bot is sent on like anyone, and not counted
    another_reader(client)  # a second reader (the publisher's client is each reader in turn)
    await client.get(f"/c/{code}", headers={"user-agent": browser()}, follow_redirects=False)
    await app.state.click_buffer.flush()

    dashboard = (await client.get("/publisher")).text
    assert by_testid(dashboard, "dashboard-valid") == "2" and by_testid(dashboard, "dashboard-invalid") == "1"
    assert clicks_row(dashboard, "spring") == (1, 1, f"{Reason.bot.label}: 1")
    assert clicks_row(dashboard, "") == (1, 0, "")
    assert f'href="/publisher/campaigns/{campaign_id}/stats">Spring Boots</a>' in dashboard

    stats = await client.get(f"/publisher/campaigns/{campaign_id}/stats")
    assert stats.status_code == 200
    assert by_testid(stats.text, "valid-clicks") == "2" and by_testid(stats.text, "invalid-clicks") == "1"
    assert clicks_row(stats.text, "spring") == (1, 1, f"{Reason.bot.label}: 1")


async def test_a_publisher_sees_only_their_own_clicks(app, new_client, settings):
    client, _, campaign_id, _, code = await joined(new_client, settings)
    other, other_publisher = await publisher_client(new_client, settings)
    await other.get("/publisher/campaigns")
    await post_form(other, f"/publisher/campaigns/{campaign_id}/join")

    await client.get(f"/c/{code}?sub1=mine", headers={"user-agent": browser()}, follow_redirects=False)
    await app.state.click_buffer.flush()

    theirs = (await other.get("/publisher")).text
    assert by_testid(theirs, "dashboard-valid") == "0" and "mine" not in theirs
    their_stats = await other.get(f"/publisher/campaigns/{campaign_id}/stats")
    assert their_stats.status_code == 200 and by_testid(their_stats.text, "valid-clicks") == "0"
    assert (await link_of(other_publisher, campaign_id)) is not None
