"""The publisher's reports: figures equal a direct count of their own raw events, in their time
zone; the CSV holds exactly the table the page shows; bad input is a 400 that says what to fix."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import unescape
from zoneinfo import ZoneInfo

from server.accounts.tables import Role, User
from server.reports import rollup
from tests.ads.factories import as_user
from tests.conversions.factories import api_key
from tests.factories import PASSWORD, login, post_form, staff_client
from tests.reports.world import BASE, Event, World, build

NEW_YORK = ZoneInfo("America/New_York")


async def _world_with_traffic(settings) -> World:
    """Two publishers; events around New York's midnight, so UTC days and local days differ."""
    world = await build(settings)
    a, b = world.publishers
    evening = BASE + timedelta(days=1, hours=3, minutes=30)  # 2 Nov 03:30 UTC = 1 Nov 22:30 in New York
    events = [
        Event("click", a, world.cpa_campaign, evening, sub1="post-1", country="US"),
        Event("click", a, world.cpa_campaign, evening + timedelta(minutes=1), sub1="post-1", country="US"),
        Event("click", a, world.cpa_campaign, evening + timedelta(hours=2), sub1="post-2", country="DE"),
        Event("click", a, world.cpa_campaign, evening + timedelta(hours=2), reason="bot"),
        Event("click", a, world.cpm_campaign, evening, slot=world.slots[a], country="US"),
        Event("impression", a, world.cpm_campaign, evening, slot=world.slots[a], country="US"),
        Event("impression", a, world.cpm_campaign, evening, slot=world.slots[a], reason="frequency_capped"),
        Event(
            "conversion",
            a,
            world.cpa_campaign,
            evening + timedelta(minutes=5),
            sub1="post-1",
            status="pending",
            payout=700,
            price=1000,
        ),
        Event(
            "conversion",
            a,
            world.cpa_campaign,
            evening + timedelta(hours=2, minutes=5),
            sub1="post-2",
            status="released",
            payout=300,
            price=450,
            sale=9_000,
        ),
        Event("conversion", a, world.cpa_campaign, evening, status="rejected", payout=999, price=1500),
        # Publisher b's own traffic: never in a's report.
        Event("click", b, world.cpa_campaign, evening, sub1="b-secret"),
        Event(
            "conversion", b, world.cpa_campaign, evening, sub1="b-secret", status="released", payout=5_000, price=6_000
        ),
    ]
    await world.add(events)
    await rollup.rebuild_all()
    await rollup.roll_up(datetime.now(UTC))  # the cursor at now: the reports read these hours from the rollups
    return world


async def _as(new_client, world: World, user_id: int, role: Role = Role.publisher):
    """A browser logged in as the user, which calls the JSON API with an API key of theirs."""
    client = new_client()
    await login(client, world.emails[user_id], PASSWORD)
    client.api = new_client()
    client.api.headers["authorization"] = f"Bearer {await api_key(as_user(user_id, world.emails[user_id], role))}"
    return client


def _range(start: str, end: str, tz: str = "America/New_York") -> dict[str, str]:
    return {"from": start, "to": end, "tz": tz}


async def test_the_figures_count_the_publishers_own_events_in_their_days(app, new_client, settings):
    world = await _world_with_traffic(settings)
    a = world.publishers[0]
    client = await _as(new_client, world, a)
    body = (await client.api.get("/api/v1/publisher/reports", params=_range("2026-11-01", "2026-11-01"))).json()
    assert body["period"]["tz"] == "America/New_York"
    [eur] = body["figures"]
    # 1 Nov in New York: the three valid clicks (two CPA at 22:30, one through the slot), the
    # CPA click at 00:30 the next day is on 2 Nov; the conversions at 22:35 (pending) and the
    # conversion of their own clicks (rollup counts those clicks too).
    counted = [e for e in world.events if e.publisher == a and e.at.astimezone(NEW_YORK).date() == date(2026, 11, 1)]
    valid_clicks = sum(1 for e in counted if e.kind == "click" and e.reason == "valid")
    assert eur["clicks"] == valid_clicks
    assert eur["invalid_clicks"] == sum(1 for e in counted if e.kind == "click" and e.reason != "valid") == 0
    assert (eur["impressions"], eur["invalid_impressions"]) == (1, 1)
    assert (eur["conversions"], eur["rejected"]) == (1, 1)
    assert (eur["payout_pending_minor"], eur["payout_confirmed_minor"], eur["earnings_minor"]) == (700, 0, 700)
    assert eur["conversion_rate"] is not None and float(eur["conversion_rate"]) == 1 / valid_clicks

    both = (await client.api.get("/api/v1/publisher/reports", params=_range("2026-11-01", "2026-11-02"))).json()
    [eur] = both["figures"]
    assert (eur["conversions"], eur["payout_pending_minor"], eur["payout_confirmed_minor"]) == (2, 700, 300)
    assert eur["invalid_clicks"] == 1
    days = {r["label"]: r for r in both["tables"]["by_day"]}
    assert set(days) == {"2026-11-01", "2026-11-02"}
    assert days["2026-11-02"]["payout_confirmed"] == 300
    subs = {r["label"]: r["conversions"] for r in both["tables"]["by_sub_id"]}
    assert subs["post-1"] == 1 and subs["post-2"] == 1 and "b-secret" not in subs
    invalid = {r["reason"]: r["label"] for r in both["tables"]["invalid_traffic"]}
    assert invalid == {
        "bot": "Bot or crawler user agent",
        "frequency_capped": "Over the daily frequency cap for one visitor",
    }
    # In UTC the same events all fall on 2 Nov.
    utc = (await client.api.get("/api/v1/publisher/reports", params=_range("2026-11-02", "2026-11-02", "UTC"))).json()
    assert utc["figures"][0]["conversions"] == 2


async def test_each_publisher_sees_only_their_own_figures(app, new_client, settings):
    world = await _world_with_traffic(settings)
    a, b = world.publishers
    client = await _as(new_client, world, b)
    body = (await client.api.get("/api/v1/publisher/reports", params=_range("2026-11-01", "2026-11-02"))).json()
    [eur] = body["figures"]
    assert (eur["clicks"], eur["conversions"], eur["payout_confirmed_minor"]) == (2, 1, 5_000)
    assert {r["label"] for r in body["tables"]["by_sub_id"]} == {"b-secret"}
    page = await client.get("/publisher/reports", params=_range("2026-11-01", "2026-11-02"))
    assert "post-1" not in page.text and "b-secret" in page.text
    # Other roles are refused the publisher's report, on the page, the CSV and the API.
    advertiser = await _as(
        new_client, world, next(i for i in world.emails if i not in world.publishers), Role.advertiser
    )
    for path in ("/publisher/reports", "/publisher/reports.csv?table=by_day"):
        assert (await advertiser.get(path)).status_code == 403, path
    assert (await advertiser.api.get("/api/v1/publisher/reports")).status_code == 403
    finance, _ = await staff_client(new_client, Role.finance)
    assert (await finance.get("/publisher/reports")).status_code == 403


def _html_table(html: str, name: str) -> list[list[str]]:
    table = re.search(rf'<table class="report-table" data-table="{name}">(.*?)</table>', html, re.S).group(1)
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        rows.append(
            [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        )
    return rows


def machine(cells: list[str]) -> list[str]:
    """A row of an English page in the CSV's machine formats: 11/2/2026 -> 2026-11-02,
    €1,250.00 -> 1250.00, 20% -> 20.00% (the page's own formats are checked apart)."""
    out = []
    for cell in cells:
        if day := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", cell):
            cell = f"{day[3]}-{int(day[1]):02d}-{int(day[2]):02d}"
        elif re.fullmatch(r"-?[\d,]+(\.\d+)?%", cell):
            cell = f"{Decimal(cell[:-1].replace(',', '')):.2f}%"
        elif re.fullmatch(r"-?€?[\d,]+(\.\d+)?", cell):
            cell = cell.replace("€", "").replace(",", "")
        out.append(cell)
    return out


async def test_every_table_downloads_as_the_csv_of_exactly_what_it_shows(app, new_client, settings):
    world = await _world_with_traffic(settings)
    client = await _as(new_client, world, world.publishers[0])
    params = _range("2026-10-25", "2026-11-05")
    page = (await client.get("/publisher/reports", params=params)).text
    names = re.findall(r'<table class="report-table" data-table="([a-z_]+)">', page)
    assert {"by_day", "by_campaign", "by_sub_id", "by_slot", "by_country", "invalid_traffic"} <= set(names)
    for name in names:
        response = await client.get("/publisher/reports.csv", params={**params, "table": name})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert f"affnet-publisher-{name}-2026-10-25-2026-11-05.csv" in response.headers["content-disposition"]
        shown = _html_table(page, name)
        assert list(csv.reader(io.StringIO(response.text))) == [shown[0], *map(machine, shown[1:])], name


async def test_bad_dates_and_zones_get_a_400_that_says_what_to_fix(app, new_client, settings):
    world = await _world_with_traffic(settings)
    client = await _as(new_client, world, world.publishers[0])
    for params, message in [
        ({"from": "2026-13-01"}, "must look like 2026-11-23"),
        ({"from": "2026-11-05", "to": "2026-11-01"}, "start date is after the end date"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "at most 366 days"),
        ({"tz": "Mars/Olympus_Mons"}, "not a time zone we know"),
    ]:
        page = await client.get("/publisher/reports", params=params)
        assert page.status_code == 400 and message in unescape(page.text), params
        api = await client.api.get("/api/v1/publisher/reports", params=params)
        assert api.status_code == 400 and message in api.json()["error"]["message"], params
        assert (await client.get("/publisher/reports.csv", params={**params, "table": "by_day"})).status_code == 400
    unknown = await client.get("/publisher/reports.csv", params={"table": "salaries"})
    assert unknown.status_code == 404


async def test_a_saved_time_zone_is_the_reports_default_and_the_way_back_stays_on_site(app, new_client, settings):
    world = await _world_with_traffic(settings)
    a = world.publishers[0]
    client = await _as(new_client, world, a)
    await client.get("/publisher/reports")
    refused = await post_form(client, "/account/time-zone", {"tz": "Nowhere/Land", "next": "/publisher/reports"})
    assert refused.status_code == 400
    assert (await User.select(User.time_zone).where(User.id == a).first())["time_zone"] == ""
    saved = await post_form(client, "/account/time-zone", {"tz": "Asia/Tokyo", "next": "//evil.example/x"})
    assert saved.status_code == 303 and saved.headers["location"] == "/"
    body = (await client.api.get("/api/v1/publisher/reports")).json()
    assert body["period"]["tz"] == "Asia/Tokyo"


async def test_the_csv_has_headings_in_the_readers_language_and_values_in_machine_formats(app, new_client, settings):
    world = await _world_with_traffic(settings)
    client = await _as(new_client, world, world.publishers[0])
    client.headers["accept-language"] = "fr-FR"
    params = _range("2026-11-01", "2026-11-02")
    page = (await client.get("/publisher/reports", params=params)).text
    assert "CSV pour tableurs et scripts" in page  # beside every download link
    shown = _html_table(page, "by_day")
    assert shown[0][:3] == ["Jour", "Impressions", "Clics"]
    assert shown[1][0] == "01/11/2026" and "7,00\u00a0€" in shown[1]  # the page: French formats

    response = await client.get("/publisher/reports.csv", params={**params, "table": "by_day"})
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == shown[0]
    assert rows[1][0] == "2026-11-01" and "7.00" in rows[1]  # the file: ISO dates, a decimal point
    assert not any("€" in cell or "," in cell for row in rows[1:] for cell in row)
