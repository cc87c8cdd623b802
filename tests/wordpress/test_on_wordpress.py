"""The plugin on a real WordPress, as a multi-author blog uses it: an Author (who may not post
<script> or <iframe>: WordPress strips them from their posts) publishes a post with the "affnet ad
slot" block, the `[affnet_slot]` shortcode and a "tracked link" block, through WordPress's REST API
and the plugin's own routes, which talk to affnet's publisher API with the publisher's key. A reader
in headless Chromium sees the ad drawn in the block theme's content column; affnet counts one valid
view; a click on the ad lands on the advertiser's page with a click id and is stored valid, and so
is a click on the tracked link with its sub-ID."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from server.accounts import service as accounts
from server.ads import wordpress as plugin
from server.ads.tables import Impression
from server.core.settings import ROOT
from server.tracking.tables import Click
from tests.ads.factories import ad_campaign, join, publisher, slot
from tests.e2e.conftest import TIMEOUT_MS

# Headless Chromium names itself HeadlessChrome, which affnet rightly takes for a bot.
READER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
OTHER_READER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1"
ARTIFACTS = Path(os.environ.get("AFFNET_ARTIFACTS", ROOT / ".ci" / "artifacts")) / "screenshots"
NO_SCRIPT_READER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
LANDING = "https://shop.example.com/boots"  # tests/tracking/factories.campaign_form's landing page


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = TIMEOUT_MS / 1000) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _author(site, login: str) -> tuple[int, str]:
    """A new Author with an application password: (user id, password). Authors lack unfiltered_html."""
    made = json.loads(
        site.php(
            f"$id = wp_insert_user(['user_login' => '{login}', 'user_pass' => wp_generate_password(24),"
            f" 'user_email' => '{login}@blog.example.test', 'role' => 'author', 'display_name' => 'Ada']);\n"
            "if (is_wp_error($id)) { fwrite(STDERR, $id->get_error_message()); exit(1); }\n"
            "[$password] = WP_Application_Passwords::create_new_application_password($id, ['name' => 'tests']);\n"
            "echo json_encode(['id' => $id, 'password' => $password,"
            " 'unfiltered_html' => user_can($id, 'unfiltered_html')]);"
        )
    )
    assert made["unfiltered_html"] is False  # the role the HTML snippet fails for
    return made["id"], made["password"]


async def _blog_with_the_plugin(site, live_server, settings, slot_name: str) -> tuple:
    """affnet: a campaign paying per thousand views with a 300×250 banner, a publisher in it with an ad
    slot for their blog on loopback (allowed outside production) and a read-and-write API key. The
    blog's administrator installs the plugin from its zip, activates it and saves the settings.
    Answers (the campaign, the slot, the key)."""
    camp = await ad_campaign(settings)
    pub = await publisher(settings)
    await join(pub, camp)
    s = await slot(pub, domains="127.0.0.1", name=slot_name)
    _, api_key = await accounts.create_api_key(pub, "WordPress")
    _plugin_active(site)
    site.set_options(affnet_base_url=live_server.url, affnet_api_key=api_key)
    return camp, s, api_key


async def _affnet_refusal(live_server, api_key: str, link: dict) -> dict:
    """What affnet's own API answers when asked for this link with the publisher's key: a refusal."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as api:
        answer = await api.post("/api/v1/publisher/links", json=link, headers={"authorization": f"Bearer {api_key}"})
    assert answer.status_code == 422, answer.text
    return answer.json()["error"]


def _plugin_active(site) -> None:
    """The plugin installed from its zip and activated, without the slots a previous test cached."""
    site.install_plugin(plugin.plugin_zip())
    site.activate("affnet/affnet.php")
    site.php("delete_transient('affnet_slots');")


@pytest.mark.browser
async def test_an_author_publishes_an_ad_slot_and_a_tracked_link_that_count_on_affnet(
    live_server, browser, wordpress_site, settings
):
    site = wordpress_site
    camp, s, api_key = await _blog_with_the_plugin(site, live_server, settings, "In the post")
    login = f"ada{live_server.port}"
    _, password = _author(site, login)

    async with httpx.AsyncClient(base_url=site.url, auth=(login, password), timeout=20) as wp:

        async def rest(method: str, route: str, **kwargs) -> httpx.Response:
            return await wp.request(method, "/", params={"rest_route": route}, **kwargs)

        slots = await rest("GET", "/affnet/v1/slots")
        assert slots.status_code == 200, slots.text
        assert {"key": s["public_key"], "name": "In the post", "format": "300x250"}.items() <= next(
            item for item in slots.json() if item["key"] == s["public_key"]
        ).items()
        campaigns = await rest("GET", "/affnet/v1/campaigns")
        assert campaigns.status_code == 200, campaigns.text
        assert camp.campaign_id in [c["id"] for c in campaigns.json()]
        built = await rest("POST", "/affnet/v1/links", json={"campaign_id": camp.campaign_id, "sub1": "wp-post"})
        assert built.status_code == 200, built.text
        tracked_url = built.json()["tracked_url"]
        assert tracked_url.startswith(f"{live_server.url}/c/") and "sub1=wp-post" in tracked_url
        off_domain = {"campaign_id": camp.campaign_id, "url": "https://evil.example.net/"}
        refused = await rest("POST", "/affnet/v1/links", json=off_domain)
        affnets = await _affnet_refusal(live_server, api_key, off_domain)
        assert refused.status_code == 422  # affnet's status and own words, passed on
        assert (refused.json()["message"], refused.json()["data"]["field"]) == (affnets["message"], "url")

        slot_block = json.dumps({"key": s["public_key"], "format": "300x250"})
        link_block = json.dumps(
            {"campaignId": camp.campaign_id, "url": tracked_url, "text": "The boots I wear", "sub1": "wp-post"}
        )
        content = (
            '<!-- wp:paragraph -->\n<p id="intro">Five knives every home cook needs.</p>\n<!-- /wp:paragraph -->\n'
            f"<!-- wp:affnet/ad-slot {slot_block} /-->\n"
            f"<!-- wp:affnet/tracked-link {link_block} /-->\n"
            # What the issue saw fail: the raw snippet in a Custom HTML block, posted by an Author.
            "<!-- wp:html -->\n<script>window.__raw_script_ran = true;</script>\n<!-- /wp:html -->\n"
        )
        post = await rest("POST", "/wp/v2/posts", json={"title": "Knives", "status": "publish", "content": content})
        assert post.status_code == 201, post.text
        post_url = post.json()["link"]
        shortcode_post = await rest(
            "POST",
            "/wp/v2/posts",
            json={
                "title": "Shortcode",
                "status": "publish",
                "content": f'<p>Before.</p>\n[affnet_slot key="{s["public_key"]}"]\n<p>After.</p>',
            },
        )
        assert shortcode_post.status_code == 201, shortcode_post.text

        # The shortcode, without a format, is drawn the same: the plugin looked the slot up.
        shortcode_page = (await wp.get(shortcode_post.json()["link"])).text
        assert f'data-affnet-slot="{s["public_key"]}" data-affnet-format="300x250"' in shortcode_page
        assert f'<script async src="{live_server.url}/static/embed.js"></script>' in shortcode_page
        # The classic editor's wpautop left the one-line markup whole: no <br /> or <p> put inside it.
        drawn = shortcode_page.split('<div class="affnet-slot-wrap">', 1)[1].split("</noscript>", 1)[0]
        assert "<br" not in drawn and "<p" not in drawn

    context = await browser.new_context(user_agent=READER_UA, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    landed: list[str] = []

    async def advertiser(route) -> None:
        landed.append(route.request.url)
        await route.fulfill(
            status=200, content_type="text/html", body="<!doctype html><title>Boots</title><h1>Boots</h1>"
        )

    await context.route("https://shop.example.com/**", advertiser)
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(post_url)
        # WordPress kept the block's script (printed by PHP) and stripped the Author's own.
        assert await page.evaluate("window.__raw_script_ran === undefined")
        ad = page.frame_locator(".affnet-slot iframe")
        await ad.locator("img[width='300'][height='250']").wait_for()
        assert await page.get_attribute(".affnet-slot", "data-affnet-state") == "ad"
        # In the block theme's content column, where the paragraph above it starts.
        slot_left = await page.evaluate("document.querySelector('.affnet-slot').getBoundingClientRect().left")
        intro_left = await page.evaluate("document.getElementById('intro').getBoundingClientRect().left")
        assert abs(slot_left - intro_left) <= 1 and intro_left > 100

        await page.locator(".affnet-slot").scroll_into_view_if_needed()

        async def one_valid_view() -> bool:
            rows = await Impression.select(Impression.slot, Impression.reason)
            return rows == [{"slot": s["id"], "reason": "valid"}]

        await eventually(one_valid_view, "one valid view of the slot")

        async with context.expect_page() as opened:
            await ad.locator("a").click()
        tab = await opened.value
        await tab.wait_for_url("https://shop.example.com/**", wait_until="load")
        assert await tab.title() == "Boots"
        ad_landing = urlsplit(landed[-1])
        assert f"{ad_landing.scheme}://{ad_landing.hostname}{ad_landing.path}" == LANDING
        [ad_click_id] = parse_qs(ad_landing.query)["click_id"]

        async def stored(click_id: str) -> dict | None:
            return await Click.select(Click.reason, Click.slot, Click.sub1).where(Click.click_id == click_id).first()

        await eventually(lambda: stored(ad_click_id), "the ad's click stored")
        assert await stored(ad_click_id) == {"reason": "valid", "slot": s["id"], "sub1": ""}
        assert errors == []
    finally:
        await context.close()

    # Another reader follows the tracked link under the post: the sub-ID travels with the click.
    context = await browser.new_context(user_agent=OTHER_READER_UA)
    context.set_default_timeout(TIMEOUT_MS)
    await context.route("https://shop.example.com/**", advertiser)
    try:
        page = await context.new_page()
        await page.goto(post_url)
        link = page.locator(".affnet-link a")
        assert await link.get_attribute("rel") == "sponsored noopener"
        assert await link.get_attribute("href") == tracked_url
        await link.click()
        await page.wait_for_url("https://shop.example.com/**")
        [link_click_id] = parse_qs(urlsplit(page.url).query)["click_id"]
        await eventually(lambda: stored(link_click_id), "the tracked link's click stored")
        assert await stored(link_click_id) == {"reason": "valid", "slot": None, "sub1": "wp-post"}
    finally:
        await context.close()

    # A reader without JavaScript gets the <noscript> image ad: its view counts by the no-script rule
    # (the image was fetched), and its link goes through the same ad's signed click.
    context = await browser.new_context(user_agent=NO_SCRIPT_READER_UA, java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    await context.route("https://shop.example.com/**", advertiser)
    try:
        page = await context.new_page()
        await page.goto(post_url)
        image = page.locator(f"a[href='{live_server.url}/ads/n/{s['public_key']}/go'] img")
        await image.wait_for()
        await eventually(lambda: image.evaluate("img => img.complete && img.naturalWidth === 300"), "the image ad")

        async def two_valid_views() -> bool:
            rows = await Impression.select(Impression.slot, Impression.reason)
            return rows == [{"slot": s["id"], "reason": "valid"}] * 2

        await eventually(two_valid_views, "the no-script view counted")
        async with context.expect_page() as opened:
            await image.click()
        tab = await opened.value
        await tab.wait_for_url("https://shop.example.com/**", wait_until="load")
        [no_script_click_id] = parse_qs(urlsplit(tab.url).query)["click_id"]
        await eventually(lambda: stored(no_script_click_id), "the no-script ad's click stored")
        assert await stored(no_script_click_id) == {"reason": "valid", "slot": s["id"], "sub1": ""}
    finally:
        await context.close()


@pytest.mark.browser
async def test_an_author_places_both_blocks_in_the_editor(live_server, browser, wordpress_site, settings):
    """The block editor as an Author sees it: the slot block lists the publisher's slots (the plugin's
    REST route, with WordPress's nonce, asking affnet), and the link block builds a tracked link and
    shows affnet's refusal of a deep link off the campaign's domains. The screenshot is README's."""
    site = wordpress_site
    camp, s, api_key = await _blog_with_the_plugin(site, live_server, settings, "Sidebar")
    login = f"eve{live_server.port}"
    user_id, _ = _author(site, login)
    site.php(f"wp_set_password('a long author password', {user_id});")

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{site.url}/wp-login.php")
        await page.fill("#user_login", login)
        await page.fill("#user_pass", "a long author password")
        await page.click("#wp-submit")
        await page.wait_for_url("**/wp-admin/**")
        await page.goto(f"{site.url}/wp-admin/post-new.php")
        await page.wait_for_function(
            "window.wp && wp.data && wp.blocks && wp.blocks.getBlockType('affnet/ad-slot')"
            " && wp.blocks.getBlockType('affnet/tracked-link')",
            timeout=30_000,
        )
        # Their names and attributes come from the PHP registration, in the plugin's words.
        assert await page.evaluate("wp.blocks.getBlockType('affnet/ad-slot').title") == "affnet ad slot"
        attributes = await page.evaluate("Object.keys(wp.blocks.getBlockType('affnet/tracked-link').attributes)")
        assert {"campaignId", "url", "text", "sub1", "sub2", "sub3", "sub4", "sub5", "deepLink"} <= set(attributes)
        await page.evaluate(
            "wp.data.select('core/edit-post').isFeatureActive('welcomeGuide')"
            " && wp.data.dispatch('core/edit-post').toggleFeature('welcomeGuide')"
        )
        await page.evaluate(
            "wp.data.dispatch('core/block-editor').insertBlocks("
            "[wp.blocks.createBlock('affnet/ad-slot'), wp.blocks.createBlock('affnet/tracked-link')])"
        )
        await page.locator(f".affnet-slot-editor select option[value='{s['public_key']}']").wait_for(state="attached")
        await page.locator(".affnet-slot-editor select").select_option(s["public_key"])
        assert "Sidebar (300x250)" in await page.locator(".affnet-slot-preview").inner_text()

        editor = page.locator(".affnet-link-editor")
        await editor.locator(f"select option[value='{camp.campaign_id}']").wait_for(state="attached")
        await editor.locator("select").select_option(str(camp.campaign_id))
        await editor.get_by_label("Link text").fill("The boots I wear")
        await page.get_by_label("Sub-ID 1").fill("wp-post")
        await editor.get_by_role("button").click()
        built = await editor.locator("code").inner_text()
        assert built.startswith(f"{live_server.url}/c/") and built.endswith("?sub1=wp-post")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "wordpress-editor.png")

        blocks = json.loads(
            await page.evaluate(
                "JSON.stringify(wp.data.select('core/block-editor').getBlocks().map(b => [b.name, b.attributes]))"
            )
        )
        assert blocks[0] == ["affnet/ad-slot", {"key": s["public_key"], "format": "300x250"}]
        assert blocks[1][0] == "affnet/tracked-link"
        assert {
            "campaignId": camp.campaign_id,
            "url": built,
            "text": "The boots I wear",
            "sub1": "wp-post",
        }.items() <= (blocks[1][1].items())

        await page.get_by_label("Deep link", exact=False).fill("https://evil.example.net/")
        await editor.get_by_role("button").click()
        refusal = await editor.locator(".components-notice").inner_text()
        affnets = await _affnet_refusal(
            live_server,
            api_key,
            {"campaign_id": camp.campaign_id, "sub1": "wp-post", "url": "https://evil.example.net/"},
        )
        assert affnets["message"] in refusal
        assert errors == []
    finally:
        await context.close()


@pytest.mark.browser
async def test_the_administrator_saves_the_address_and_key_which_is_never_shown_again(
    live_server, browser, wordpress_site, settings
):
    """Settings → affnet as the blog's administrator: the address and the key are saved through
    WordPress's options (its nonce), the key never comes back in the page, an empty field keeps it,
    and the page says whether affnet accepts it."""
    site = wordpress_site
    _plugin_active(site)
    site.php("delete_option('affnet_base_url'); delete_option('affnet_api_key');")
    pub = await publisher(settings)
    _, api_key = await accounts.create_api_key(pub, "WordPress")

    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        await page.goto(f"{site.url}/wp-login.php")
        await page.fill("#user_login", site.admin_user)
        await page.fill("#user_pass", site.admin_password)
        await page.click("#wp-submit")
        await page.wait_for_url("**/wp-admin/**")
        await page.goto(f"{site.url}/wp-admin/options-general.php?page=affnet")
        await page.fill("#affnet_base_url", live_server.url + "/")
        await page.fill("#affnet_api_key", api_key)
        await page.click("#submit")
        await page.wait_for_url("**page=affnet**")
        assert "Connection check: OK" in await page.locator(".wrap").inner_text()
        assert api_key not in await page.content()
        assert await page.input_value("#affnet_api_key") == ""
        assert await page.input_value("#affnet_base_url") == live_server.url  # stored without the slash
        saved = site.php("echo get_option('affnet_api_key');")
        assert saved == api_key

        # Saved again with the key field left empty: the key stays.
        await page.click("#submit")
        await page.wait_for_url("**page=affnet**")
        assert site.php("echo get_option('affnet_api_key');") == api_key

        # A key affnet does not know: the check says so, in affnet's words.
        await page.fill("#affnet_api_key", "afn_pub_0000_nottherealkey")
        await page.click("#submit")
        await page.wait_for_url("**page=affnet**")
        notice = await page.locator(".notice-error").inner_text()
        async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as api:
            unknown = await api.get(
                "/api/v1/publisher/slots", headers={"authorization": "Bearer afn_pub_0000_nottherealkey"}
            )
        assert unknown.status_code == 401
        assert notice.startswith("Connection check:") and unknown.json()["error"]["message"] in notice
        assert "afn_pub_0000_nottherealkey" not in await page.content()
    finally:
        await context.close()
