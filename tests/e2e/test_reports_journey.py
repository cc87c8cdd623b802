"""The reporting dashboards in headless Chromium against the real server, on each database engine: the
publisher (/publisher/reports), the advertiser (/advertiser/reports) and finance (/finance) each log in,
choose a date range and a time zone that is not UTC in the range form, and see their figures counted
right, the chart drawn by Chart.js served from the site itself (no request leaves the loopback server,
no console error, no CSP violation), and a "Download CSV" that downloads exactly the table the page
shows, header row included. A preset ("Last 7 days") fills the dates in the chosen zone and reloads the
page. The publisher never sees another publisher's sub-ID."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect

from server.accounts.tables import Role
from server.campaigns.tables import Campaign
from server.ledger import engine, postings
from server.ledger import service as ledger
from server.ledger.engine import Line
from server.ledger.tables import AccountKind as K
from server.reports import rollup
from tests.e2e.pages import log_in
from tests.factories import make_staff
from tests.reports.test_publisher_reports import machine
from tests.reports.world import BASE, Event, World, build

FROM, TO, ZONE = "2026-10-30", "2026-11-05", "America/New_York"
NEW_YORK = ZoneInfo(ZONE)
# 2 Nov 03:30 UTC is 1 Nov 22:30 in New York: the days in the zone differ from UTC's.
EVENING = BASE + timedelta(days=1, hours=3, minutes=30)
SECRET_SUB_ID = "b-secret"  # the other publisher's sub-ID: never on the first publisher's page


async def world_with_traffic(settings) -> World:
    """Two publishers in a CPA campaign (and a CPM one); publisher B's traffic carries a sub-ID of its own."""
    world = await build(settings)
    a, b = world.publishers
    cpa, cpm = world.cpa_campaign, world.cpm_campaign
    await world.add(
        [
            Event("click", a, cpa, EVENING, sub1="post-1", country="US"),
            Event("click", a, cpa, EVENING + timedelta(minutes=1), sub1="post-1", country="US"),
            Event("click", a, cpa, EVENING + timedelta(hours=2), sub1="post-2", country="DE"),
            Event("click", a, cpa, EVENING + timedelta(hours=2), reason="bot"),
            Event("click", a, cpm, EVENING, slot=world.slots[a], country="US"),
            Event("impression", a, cpm, EVENING, slot=world.slots[a], country="US"),
            Event("impression", a, cpm, EVENING, slot=world.slots[a], reason="frequency_capped"),
            Event(
                "conversion",
                a,
                cpa,
                EVENING + timedelta(minutes=5),
                sub1="post-1",
                status="pending",
                payout=700,
                price=1000,
            ),
            Event(
                "conversion",
                a,
                cpa,
                EVENING + timedelta(hours=2, minutes=5),
                sub1="post-2",
                status="released",
                payout=300,
                price=450,
                sale=9_000,
            ),
            Event("click", b, cpa, EVENING, sub1=SECRET_SUB_ID),
            Event("conversion", b, cpa, EVENING, sub1=SECRET_SUB_ID, status="released", payout=5_000, price=6_000),
        ]
    )
    await rollup.rebuild_all()
    return world


async def cpa_advertiser(world: World) -> int:
    row = await Campaign.select(Campaign.advertiser).where(Campaign.id == world.cpa_campaign).first()
    return row["advertiser"]


def valid(world: World, kind: str, **where) -> int:
    return sum(
        1
        for e in world.events
        if e.kind == kind and e.reason == "valid" and all(getattr(e, k) == v for k, v in where.items())
    )


@dataclass
class Watch:
    """Everything a page asked for and complained about, from the moment it opened."""

    base_url: str
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        away = [u for u in self.requests if not u.startswith(self.base_url + "/")]
        assert away == [], f"requests that left the server: {away}"
        assert self.base_url + "/static/vendor/chart.umd.js" in self.requests, "Chart.js was not loaded from the site"
        assert self.problems == [], f"console errors: {self.problems}"


async def watched_page(new_page, base_url: str):
    page = await new_page()
    watch = Watch(base_url)
    page.on("request", lambda request: watch.requests.append(request.url))

    def console(msg) -> None:
        where = msg.location.get("url", "")
        if msg.type in ("error", "warning"):
            watch.problems.append(f"{msg.type}: {msg.text} ({where})")

    page.on("console", console)
    page.on("pageerror", lambda exc: watch.problems.append(f"pageerror: {exc}"))
    # A load cut short because the page went on (a form submitted, a download started) is aborted,
    # not failed; any other failure is a problem.
    page.on(
        "requestfailed",
        lambda request: (
            None
            if request.failure == "net::ERR_ABORTED"
            else watch.problems.append(f"failed: {request.url} {request.failure}")
        ),
    )
    page.on(
        "response",
        lambda response: (
            watch.problems.append(f"{response.status}: {response.url}") if response.status >= 400 else None
        ),
    )
    return page, watch


async def show_range(page, path: str, start: str = FROM, end: str = TO, zone: str = ZONE) -> None:
    """Open the dashboard, type the dates, pick the zone, Show: the page reloads on that range."""
    response = await page.goto(path)
    assert response.status == 200, f"{path}: {response.status}"
    form = page.locator("form.range-form")
    await form.locator("input[name=from]").fill(start)
    await form.locator("input[name=to]").fill(end)
    await form.locator("select[name=tz]").select_option(zone)
    async with page.expect_navigation() as navigation:
        await form.get_by_role("button", name="Show", exact=True).click()
    response = await navigation.value
    assert response.status == 200, await response.text()
    assert f"from={start}" in page.url and f"to={end}" in page.url, page.url
    await expect(form.locator("input[name=from]")).to_have_value(start)
    await expect(form.locator("select[name=tz]")).to_have_value(zone)


async def charts_drawn(page) -> int:
    """Chart.js (from /static/vendor/) drew every chart: each figure is shown, its canvas has a size."""
    figures = page.locator("figure.chart")
    await expect(figures.first).to_be_visible()
    for figure in await figures.all():
        await expect(figure).to_be_visible()
        canvas = figure.locator("canvas[data-chart]")
        await expect(canvas).to_have_attribute("data-chart-drawn", "")
        box = await canvas.bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0, box
        size = await canvas.evaluate("c => [c.width, c.height]")
        assert size[0] > 0 and size[1] > 0, size
    return await figures.count()


async def page_table(page, name: str) -> list[list[str]]:
    """The cells of the page's report table, header row first, as a person reads them."""
    table = page.locator(f'table.report-table[data-table="{name}"]')
    await expect(table).to_be_visible()
    return await table.evaluate("t => Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.innerText.trim()))")


async def download_csv(page, name: str, role: str) -> list[list[str]]:
    """Click the table's "Download CSV" and read the file the browser saved."""
    link = page.locator(f'a.csv[data-table="{name}"]')
    await expect(link).to_have_text("Download CSV")
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename == f"affnet-{role}-{name}-{FROM}-{TO}.csv", download.suggested_filename
    assert await download.failure() is None
    saved = await asyncio.to_thread(Path(await download.path()).read_bytes)
    return list(csv.reader(io.StringIO(saved.decode("utf-8"), newline="")))


async def csv_equals_the_table(page, name: str, role: str) -> list[list[str]]:
    shown = await page_table(page, name)
    downloaded = await download_csv(page, name, role)
    assert len(shown) > 1, f"{name}: no rows on the page"
    # The same rows: the page writes them for a person, the CSV in machine formats.
    assert downloaded == [shown[0], *map(machine, shown[1:])], (
        f"{name}: the CSV differs from the page\n{downloaded}\n{shown}"
    )
    return downloaded


async def use_preset(page, path: str, zone: str = ZONE) -> None:
    """ "Last 7 days" fills the dates as the last 7 days in the chosen zone and reloads the page with a 200."""
    form = page.locator("form.range-form")
    await expect(form.locator("[data-range-presets]")).to_be_visible()
    today = datetime.now(ZoneInfo(zone)).date()
    async with page.expect_navigation() as navigation:
        await form.get_by_role("button", name="Last 7 days").click()
    response = await navigation.value
    assert response.status == 200 and path in response.url, (response.status, response.url)
    start, end = (today - timedelta(days=6)).isoformat(), today.isoformat()
    assert f"from={start}" in page.url and f"to={end}" in page.url, page.url
    await expect(form.locator("input[name=from]")).to_have_value(start)
    await expect(form.locator("input[name=to]")).to_have_value(end)
    await expect(form.locator("select[name=tz]")).to_have_value(zone)


def column(table: list[list[str]], label: str) -> list[str]:
    header = table[0]
    assert label in header, (label, header)
    return [row[header.index(label)] for row in table[1:]]


@pytest.mark.browser
async def test_the_publisher_reads_their_reports_and_downloads_each_table(live_server, new_page, settings):
    started = time.monotonic()
    world = await world_with_traffic(settings)
    a = world.publishers[0]
    page, watch = await watched_page(new_page, live_server.url)
    await log_in(page, world.emails[a])
    await page.wait_for_url(lambda url: "/login" not in url)
    await show_range(page, "/publisher/reports")

    await expect(page.get_by_test_id("report-period")).to_contain_text(f"From 10/30/2026 to 11/5/2026, days in {ZONE}")
    figures = page.get_by_test_id("figures")
    await expect(figures.get_by_test_id("clicks")).to_have_text(str(valid(world, "click", publisher=a)))
    await expect(figures.get_by_test_id("impressions")).to_have_text(str(valid(world, "impression", publisher=a)))
    await expect(figures.get_by_test_id("invalid-clicks")).to_have_text("1")
    await expect(figures.get_by_test_id("conversions")).to_have_text("2")
    await expect(figures.get_by_test_id("earnings-pending")).to_have_text("€7.00")
    await expect(figures.get_by_test_id("earnings-confirmed")).to_have_text("€3.00")
    await charts_drawn(page)

    # Each table downloads as the CSV of exactly what the page shows.
    names = await page.locator("table.report-table").evaluate_all("ts => ts.map(t => t.dataset.table)")
    assert {"by_day", "by_campaign", "by_sub_id"} <= set(names), names
    tables = {name: await csv_equals_the_table(page, name, "publisher") for name in names}
    # The days are New York's: all of it on 1 and 2 November there.
    assert {
        d for d, c in zip(column(tables["by_day"], "Day"), column(tables["by_day"], "Clicks"), strict=True) if c != "0"
    } == {"2026-11-01", "2026-11-02"}

    # Isolation: the other publisher's sub-ID is nowhere on the page, in a table or a download.
    subs = {row[0] for row in tables["by_sub_id"][1:]}
    assert {"post-1", "post-2"} <= subs and SECRET_SUB_ID not in subs
    await expect(page.locator("body")).not_to_contain_text(SECRET_SUB_ID)
    assert SECRET_SUB_ID not in await page.content()

    await use_preset(page, "/publisher/reports")
    watch.assert_clean()
    print(f"publisher journey: {time.monotonic() - started:.1f} s")


@pytest.mark.browser
async def test_the_advertiser_reads_their_reports_and_downloads_each_table(live_server, new_page, settings):
    started = time.monotonic()
    world = await world_with_traffic(settings)
    advertiser = await cpa_advertiser(world)
    page, watch = await watched_page(new_page, live_server.url)
    await log_in(page, world.emails[advertiser])
    await page.wait_for_url(lambda url: "/login" not in url)
    await show_range(page, "/advertiser/reports")

    # Clicks and conversions on the advertiser's CPA campaign, from both publishers.
    figures = page.get_by_test_id("figures")
    await expect(figures.get_by_test_id("clicks")).to_have_text(str(valid(world, "click", campaign=world.cpa_campaign)))
    await expect(figures.get_by_test_id("conversions")).to_have_text("3")
    # Charged: the two approved conversions (4.50 and 60.00); pending: the one not approved yet (10.00).
    await expect(figures.get_by_test_id("approved")).to_have_text("2")
    await expect(figures.get_by_test_id("spend")).to_have_text("€64.50")
    await expect(figures.get_by_test_id("spend-pending")).to_have_text("€10.00")
    assert await charts_drawn(page) >= 1

    names = await page.locator("table.report-table").evaluate_all("ts => ts.map(t => t.dataset.table)")
    assert names, "no report table on the advertiser's page"
    for name in names:
        await csv_equals_the_table(page, name, "advertiser")
    # Only the advertiser's own campaign: the banner campaign belongs to another advertiser.
    await expect(page.locator("body")).not_to_contain_text("Banners")

    await use_preset(page, "/advertiser/reports")
    watch.assert_clean()
    print(f"advertiser journey: {time.monotonic() - started:.1f} s")


async def earning(advertiser_id: int, publisher_id: int, price: int, payout: int, at: datetime, n: int) -> None:
    """An approved earning whose accounting date is `at` (as the reconciliation job dates it)."""
    lines = [
        Line(await ledger.account(K.advertiser_balance, "EUR", advertiser_id), -price, "EUR"),
        Line(await ledger.account(K.publisher_pending, "EUR", publisher_id), payout, "EUR"),
        Line(await ledger.account(K.network_revenue, "EUR"), price - payout, "EUR"),
    ]
    await engine.post(
        kind="earning",
        idempotency_key=f"journey-earning-{n}",
        reference_type="manual",
        reference_id=n,
        lines=lines,
        effective_at=at,
    )


@pytest.mark.browser
async def test_finance_reads_the_dashboard_and_downloads_each_table(live_server, new_page, settings):
    started = time.monotonic()
    world = await world_with_traffic(settings)
    advertiser = await cpa_advertiser(world)
    a, b = world.publishers
    await postings.fund_advertiser(advertiser, 10_000, "EUR", reference_id=1, key="journey-fund")
    # Margins of 3.00 late on 1 November in New York (2 November in UTC) and 1.50 on 3 November.
    await earning(advertiser, a, 1_000, 700, EVENING, 1)
    await earning(advertiser, b, 450, 300, BASE + timedelta(days=2, hours=12), 2)
    assert await ledger.check() == []
    _, email = await make_staff(Role.finance)
    page, watch = await watched_page(new_page, live_server.url)
    await log_in(page, email)
    await page.wait_for_url(lambda url: "/login" not in url)
    await show_range(page, "/finance")

    figures = page.locator('[data-testid=figures][data-currency="EUR"]')
    await expect(figures.locator("[data-figure=revenue]")).to_have_text("€4.50")
    await expect(figures.locator("[data-figure=held]")).to_have_text("€85.50")
    await expect(figures.locator("[data-figure=owed]")).to_have_text("€10.00")
    await charts_drawn(page)

    names = await page.locator("table.report-table").evaluate_all("ts => ts.map(t => t.dataset.table)")
    assert {"revenue_by_day", "balances"} <= set(names), names
    revenue = await csv_equals_the_table(page, "revenue_by_day", "finance")
    days = dict(zip(column(revenue, "Day"), column(revenue, "Net revenue"), strict=True))
    assert days["2026-11-01"] == "3.00" and days["2026-11-03"] == "1.50" and days["2026-11-02"] == "0.00", days
    assert len(days) == 7  # every day of the range, quiet ones as 0
    await csv_equals_the_table(page, "balances", "finance")

    await use_preset(page, "/finance")
    watch.assert_clean()
    print(f"finance journey: {time.monotonic() - started:.1f} s")
