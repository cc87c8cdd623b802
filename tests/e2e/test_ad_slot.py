"""A reader opens a blog post with a publisher's ad slot: in headless Chromium, against the real
server, on each database engine. The slot's space is reserved before the embed script runs, the ad
arrives in a sandboxed frame without moving anything, and the impression counts once, when half
the ad has been on screen for a second."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.ads import service as ads
from server.ads.tables import Impression
from tests.ads.factories import ad_campaign, join, publisher, slot
from tests.e2e.conftest import TIMEOUT_MS, headless_chromium

BLOG = "blog.example.test"
# Headless Chromium names itself HeadlessChrome, which affnet rightly takes for a bot.
READER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Five knives</title></head>
<body style="margin:0;font:16px/1.5 serif">
<h1>Five knives every home cook needs</h1>
<div id="above" style="height:1600px">A long introduction…</div>
{snippet}
<p id="below">Text right below the ad.</p>
<div style="height:1600px"></div>
</body></html>"""


def box(selector: str) -> str:
    return (
        f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect(); "
        "return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()"
    )


async def eventually(check: Callable, within: float = TIMEOUT_MS / 1000) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


class Blog:
    """Another site: a real HTTP server on loopback that the browser reaches as http://blog.example.test:PORT
    (so the page and affnet are two origins, as on the web)."""

    def __init__(self) -> None:
        self.html = ""
        blog = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                body = blog.html.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://{BLOG}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def blog() -> Iterator[Blog]:
    site = Blog()
    yield site
    site.server.shutdown()


@pytest.fixture(scope="module")
async def reader_browser(chromium_path: str) -> AsyncIterator:
    """Chromium that resolves blog.example.test to loopback, where the Blog server listens."""
    async with headless_chromium(chromium_path, f"--host-resolver-rules=MAP {BLOG} 127.0.0.1") as chromium:
        yield chromium


async def impressions() -> list[dict]:
    return await Impression.select().order_by(Impression.id)


@pytest.mark.browser
async def test_an_ad_renders_without_layout_shift_and_counts_once_when_seen(
    live_server, reader_browser, blog, settings
):
    camp = await ad_campaign(settings)  # its banner goes where the live server serves /media from
    pub = await publisher(settings)
    await join(pub, camp)
    s = await slot(pub, domains=BLOG)
    blog.html = PAGE.format(snippet=ads.snippet(live_server.url, s))

    context = await reader_browser.new_context(user_agent=READER_UA, viewport={"width": 1000, "height": 700})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        # Hold the embed script back until the page has been measured without it.
        script_gate: asyncio.Future = asyncio.get_running_loop().create_future()

        async def held(route):
            await script_gate
            await route.continue_()

        await context.route("**/static/embed.js", held)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{blog.url}/posts/knives", wait_until="domcontentloaded")
        await page.evaluate("""window.__shifts = 0; new PerformanceObserver(list => {
            for (const e of list.getEntries()) window.__shifts += e.value;
        }).observe({type: 'layout-shift', buffered: true});""")
        slot_before, below_before = await page.evaluate(box(".affnet-slot")), await page.evaluate(box("#below"))
        assert slot_before[2:] == [300, 250]  # reserved before any script of ours has run

        script_gate.set_result(None)
        frame = page.locator(".affnet-slot iframe")
        await frame.wait_for(state="attached")
        assert await page.get_attribute(".affnet-slot", "data-affnet-state") == "ad"
        assert await frame.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
        ad = page.frame_locator(".affnet-slot iframe")
        await ad.locator("img[width='300'][height='250']").wait_for()
        await eventually(
            lambda: page.evaluate("document.querySelector('.affnet-slot iframe').contentWindow.length === 0")
        )  # loaded, no crash
        assert await page.evaluate(box(".affnet-slot")) == slot_before
        assert await page.evaluate(box("#below")) == below_before
        assert await page.evaluate("window.__shifts") == 0

        # Below the fold, nothing is counted however long it waits there.
        await asyncio.sleep(1.5)
        assert await page.get_attribute(".affnet-slot", "data-affnet-viewed") is None
        assert await impressions() == []

        await page.locator(".affnet-slot").scroll_into_view_if_needed()
        await eventually(
            lambda: page.evaluate(
                "document.querySelector('.affnet-slot').getAttribute('data-affnet-viewed') === 'true'"
            )
        )
        await eventually(lambda: _count_is(1))
        # Scrolled away and back, the same offer is never counted again.
        await page.evaluate("window.scrollTo(0, 0)")
        await asyncio.sleep(0.3)
        await page.locator(".affnet-slot").scroll_into_view_if_needed()
        await asyncio.sleep(2.0)
        [row] = await impressions()
        assert (row["slot"], row["campaign"], row["creative"], row["reason"]) == (
            s["id"],
            camp.campaign_id,
            camp.creatives["300x250"],
            "valid",
        )
        assert await page.evaluate("window.__shifts") == 0
        assert errors == []

        # A single-page site asks again after a route change: a new offer, still no shift.
        first_src = await frame.get_attribute("src")
        await page.evaluate("affnet.reload()")
        await eventually(lambda: _src_changed(page, first_src))
        assert await page.evaluate(box(".affnet-slot")) == slot_before
        await eventually(lambda: _count_is(2))
        assert errors == []
    finally:
        await context.close()


async def _count_is(n: int) -> bool:
    return len(await impressions()) == n


async def _src_changed(page, before: str) -> bool:
    src = await page.evaluate("(document.querySelector('.affnet-slot iframe') || {}).src")
    return bool(src) and src != before


@pytest.mark.browser
async def test_an_unreachable_affnet_does_no_harm(live_server, reader_browser, blog):
    snippet = (
        '<div class="affnet-slot" data-affnet-slot="k" data-affnet-format="728x90" '
        'style="display:block;width:728px;max-width:100%;height:90px;overflow:hidden"></div>\n'
        f'<script async src="{live_server.url}/static/embed.js"></script>'
    )
    blog.html = PAGE.format(snippet=snippet)
    context = await reader_browser.new_context(user_agent=READER_UA)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        await context.route("**/ads/decide**", lambda route: route.abort("connectionrefused"))
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{blog.url}/posts/knives")
        await eventually(
            lambda: page.evaluate(
                "document.querySelector('.affnet-slot').getAttribute('data-affnet-state') === 'unavailable'"
            )
        )
        assert (await page.evaluate(box(".affnet-slot")))[2:] == [728, 90]  # the space stays reserved
        assert errors == []
        assert await page.evaluate("typeof affnet.reload") == "function"
        await page.evaluate("affnet.reload()")  # and asking again fails just as quietly
        assert errors == []
    finally:
        await context.close()
