"""The finance dashboard tells the truth about the network's money: its figures are the ledger's,
revenue counts exactly the margins approved in the dates asked for (in the reader's zone), every
table downloads as the CSV of what it shows, the ledger check is recorded, and nobody but finance
reads any of it (page, CSV or API)."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.conversions import approval
from server.conversions.tables import Conversion
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerAccount, LedgerTxn
from server.payouts import service as payouts
from server.payouts.tables import PayoutBatch
from server.reports import finance
from server.reports.period import Period
from tests.conversions.factories import campaign_and_click, click_id_of, postback
from tests.factories import error_text, login, make_advertiser, make_publisher, make_staff, post_form, staff_client
from tests.payouts.factories import after_next_cutoff, earning_publisher
from tests.reports.test_publisher_reports import machine
from workers.jobs.ledger import check_ledger

_ip = itertools.count(1)
_key = itertools.count(1)


async def approved_conversions(settings, client, n: int, *, hold_days: int, fund: int = 100_000):
    """n pending CPA conversions (10.00, publisher 8.00) on a new funded campaign with this hold."""
    client._transport.client = (f"198.51.100.{next(_ip) % 250 + 1}", 4000)
    setup, click_id, token = await campaign_and_click(settings, client, hold_days=hold_days)
    for i in range(n):
        if i:
            client._transport.client = (f"198.51.100.{next(_ip) % 250 + 1}", 4000)
            click_id = await click_id_of(client, setup.code)
        response = await postback(client, click_id=click_id, txn_id=f"order-{i}", token=token)
        assert response.json()["status"] == "accepted", response.text
    await postings.fund_advertiser(setup.advertiser.id, fund, "EUR", reference_id=1, key=f"fund-{setup.campaign_id}")
    return setup


async def margin_of(campaign_id: int) -> int:
    rows = await Conversion.select(Conversion.advertiser_amount_minor, Conversion.publisher_amount_minor).where(
        Conversion.campaign == campaign_id, Conversion.status == "approved"
    )
    return sum(r["advertiser_amount_minor"] - r["publisher_amount_minor"] for r in rows)


def utc_period(start: date, end: date, tz: str = "UTC") -> Period:
    return Period(start=start, end=end, tz_name=tz)


def query(period: Period) -> str:
    return f"from={period.start.isoformat()}&to={period.end.isoformat()}&tz={period.tz_name}"


async def finance_api_key(monkeypatch) -> str:
    """A finance user's API key (finance may hold keys: its reports are its one API)."""
    assert Role.finance in accounts.API_KEY_ROLES
    user_id, email = await make_staff(Role.finance)
    return (
        await accounts.create_api_key(
            CurrentUser(id=user_id, email=email, role=Role.finance, via="test"), "finance reports"
        )
    )[1]


async def test_revenue_counts_the_margin_of_conversions_approved_in_the_dates_and_nothing_else(
    client, new_client, settings
):
    inside = await approved_conversions(settings, client, 2, hold_days=0)
    later_inside = await approved_conversions(settings, client, 1, hold_days=3)
    outside = await approved_conversions(settings, client, 3, hold_days=10)
    # Taken once every conversion is in: on a loaded machine the setup can outlast the first run's 5 s,
    # and a conversion reported after `now + 5 s` would wait for the second run (the fresh-clone run of
    # 2026-12-07 saw one of `inside` booked on the day of the second).
    now = datetime.now(UTC)
    today = now.date()
    for moment in (now + timedelta(seconds=5), now + timedelta(days=4), now + timedelta(days=11)):
        await approval.run(now=moment)  # the job's clock is each approval's effective date
    first, second, third = [await margin_of(s.campaign_id) for s in (inside, later_inside, outside)]
    assert first > 0 and second > 0 and third > 0

    report = await finance.report(utc_period(today, today + timedelta(days=5)))
    assert report.figures["EUR"]["revenue_minor"] == first + second
    by_day = {r["day"]: r["revenue_minor"] for r in report.table("revenue_by_day").rows}
    assert by_day[today] == first and by_day[(now + timedelta(days=4)).date()] == second
    assert sum(by_day.values()) == first + second and len(by_day) == 6  # every day, quiet ones as 0
    # The edges: a range that starts after the first approvals and ends before the last.
    report = await finance.report(utc_period(today + timedelta(days=1), today + timedelta(days=10)))
    assert report.figures["EUR"]["revenue_minor"] == second
    # All three, and the network's whole revenue account agrees.
    report = await finance.report(utc_period(today - timedelta(days=1), today + timedelta(days=12)))
    assert (
        report.figures["EUR"]["revenue_minor"]
        == first + second + third
        == await ledger.balance(K.network_revenue, "EUR")
    )
    # Days are the reader's: the approval at now+4d falls on its Tokyo date in Asia/Tokyo.
    tokyo = await finance.report(utc_period(today - timedelta(days=1), today + timedelta(days=12), "Asia/Tokyo"))
    tokyo_days = {r["day"]: r["revenue_minor"] for r in tokyo.table("revenue_by_day").rows if r["revenue_minor"]}
    expected: dict[date, int] = defaultdict(int)
    for moment, margin in (
        (now + timedelta(seconds=5), first),
        (now + timedelta(days=4), second),
        (now + timedelta(days=11), third),
    ):
        expected[tokyo.period.day_of(moment)] += margin
    assert tokyo_days == expected

    finance_client, _ = await staff_client(new_client, Role.finance)
    page = await finance_client.get(
        f"/finance?from={today.isoformat()}&to={(today + timedelta(days=5)).isoformat()}&tz=UTC"
    )
    assert page.status_code == 200, page.text
    shown = re.search(r'data-figure="revenue">([^<]+)<', page.text).group(1)
    assert shown == f"€{(first + second) // 100}.{(first + second) % 100:02d}"
    assert "data-chart=" in page.text and "/static/vendor/chart.umd.js" in page.text


async def test_figures_equal_the_ledger_balances(client, new_client, settings):
    advertiser_a, _ = await make_advertiser()
    advertiser_b, _ = await make_advertiser()
    publisher_a, _ = await make_publisher(settings)
    publisher_b, _ = await make_publisher(settings)
    await postings.fund_advertiser(advertiser_a, 50_000, "EUR", reference_id=1, key="fund-a")
    await postings.fund_advertiser(advertiser_b, 7_000, "EUR", reference_id=2, key="fund-b")
    await postings.fund_advertiser(advertiser_b, 3_000, "USD", reference_id=3, key="fund-b-usd")
    for n, (advertiser, publisher, price, payout) in enumerate(
        [
            (advertiser_a, publisher_a, 1_000, 800),
            (advertiser_a, publisher_b, 2_500, 2_000),
            (advertiser_b, publisher_b, 700, 600),
        ],
        start=1,
    ):
        await postings.approve_earning(
            advertiser_id=advertiser,
            publisher_id=publisher,
            price=price,
            payout=payout,
            currency="EUR",
            reference_type="manual",
            reference_id=n,
            key=f"earn-{n}",
        )
    await postings.release_earning(publisher_b, 2_000, "EUR", reference_type="manual", reference_id=2, key="rel-2")
    await postings.reserve_payout(publisher_b, 1_500, "EUR", reference_id=9, key="reserve-9")
    # A clawback after payout: the publisher owes it (a receivable), shown as a positive amount.
    await postings.reverse_earning(
        advertiser_id=advertiser_a,
        publisher_id=publisher_b,
        price=2_500,
        payout=2_000,
        currency="EUR",
        released=True,
        reference_type="manual",
        reference_id=2,
        key="claw-2",
    )
    assert await ledger.check() == []

    figures = (await finance.report(utc_period(date.today(), date.today()))).figures
    eur = figures["EUR"]
    assert eur["held_for_advertisers_minor"] == sum(
        [await ledger.balance(K.advertiser_balance, "EUR", a) for a in (advertiser_a, advertiser_b)]
    )
    pending = sum([await ledger.balance(K.publisher_pending, "EUR", p) for p in (publisher_a, publisher_b)])
    available = sum([await ledger.balance(K.publisher_available, "EUR", p) for p in (publisher_a, publisher_b)])
    owed = -sum([await ledger.balance(K.publisher_receivable, "EUR", p) for p in (publisher_a, publisher_b)])
    in_transit = await ledger.balance(K.payouts_in_transit, "EUR")
    assert (
        eur["publisher_pending_minor"],
        eur["publisher_available_minor"],
        eur["payouts_in_transit_minor"],
        eur["owed_by_publishers_minor"],
    ) == (pending, available, in_transit, owed)
    assert (pending, available, in_transit, owed) == (1_400, 0, 1_500, 1_500)
    assert eur["owed_to_publishers_minor"] == pending + available + in_transit
    assert figures["USD"]["held_for_advertisers_minor"] == 3_000 and figures["USD"]["revenue_minor"] == 0

    finance_client, _ = await staff_client(new_client, Role.finance)
    page = await finance_client.get("/finance")
    assert page.status_code == 200, page.text
    held = re.search(r'data-currency="EUR".*?data-figure="held">([^<]+)<', page.text, re.S).group(1)
    assert eur["held_for_advertisers_minor"] == 55_300 and held == "€553.00"
    owed_shown = re.search(r'data-currency="EUR".*?data-figure="owed">([^<]+)<', page.text, re.S).group(1)
    assert owed_shown == "€29.00"


async def test_each_csv_holds_exactly_the_rows_the_page_shows(client, new_client, settings):
    await approved_conversions(settings, client, 2, hold_days=0)
    await approval.run(now=datetime.now(UTC) + timedelta(seconds=5))
    publisher_id = await earning_publisher(settings, 6_000)
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    finance_client, _ = await staff_client(new_client, Role.finance)
    # A range around the batch's cut-off, read in Berlin.
    cutoff = (await PayoutBatch.select(PayoutBatch.period_end).where(PayoutBatch.id == batch_id).first())["period_end"]
    period = Period(
        start=date.today() - timedelta(days=1), end=cutoff.date() + timedelta(days=1), tz_name="Europe/Berlin"
    )
    report = await finance.report(period)
    [batch_row] = report.table("payout_batches").rows
    assert (batch_row["batch_id"], batch_row["status"], batch_row["lines"], batch_row["total_minor"]) == (
        batch_id,
        "prepared",
        1,
        6_000,
    )
    assert batch_row["period_end"] == period.local(cutoff).strftime("%Y-%m-%d %H:%M")
    assert (
        report.figures["EUR"]["payouts_in_transit_minor"] == 6_000 == await ledger.balance(K.payouts_in_transit, "EUR")
    )
    assert await ledger.balance(K.publisher_available, "EUR", publisher_id) == 0

    page = await finance_client.get(f"/finance?{query(period)}")
    assert page.status_code == 200, page.text
    hrefs = dict(re.findall(r'href="(/finance/reports\.csv\?[^"]+)" download data-table="([^"]+)"', page.text))
    assert set(hrefs.values()) == set(finance.TABLES)
    for href, name in hrefs.items():
        href = href.replace("&amp;", "&")
        params = parse_qs(urlsplit(href).query)
        assert params["table"] == [name] and params["tz"] == ["Europe/Berlin"]
        response = await finance_client.get(href)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert f"affnet-finance-{name}-" in response.headers["content-disposition"]
        table = report.table(name)
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == [str(c.label) for c in table.columns]
        assert rows[1:] == table.csv_rows() and rows[1:]
        # The page's table holds the same cells, written for a person.
        section = re.search(rf'<table class="report-table" data-table="{name}">(.*?)</table>', page.text, re.S)
        cells = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", section.group(1))]
        assert [machine(c) for c in cells if c] == rows[1:]
    assert (await finance_client.get(f"/finance/reports.csv?table=secrets&{query(period)}")).status_code == 404
    default = await finance_client.get(f"/finance/reports.csv?{query(period)}")  # the first table: revenue
    assert default.status_code == 200 and "affnet-finance-revenue_by_day-" in default.headers["content-disposition"]


async def test_publishers_and_advertisers_are_refused_page_csv_api_and_button(
    client, new_client, settings, monkeypatch
):
    publisher_id, publisher_email = await make_publisher(settings)
    advertiser_id, advertiser_email = await make_advertiser()
    for user_id, email, role in (
        (publisher_id, publisher_email, Role.publisher),
        (advertiser_id, advertiser_email, Role.advertiser),
    ):
        browser = new_client()
        await login(browser, email)
        for path in ("/finance", "/finance/reports.csv?table=balances"):
            assert (await browser.get(path)).status_code == 403, (role, path)
        assert (await post_form(browser, "/finance/ledger-check")).status_code == 403
        key = (await accounts.create_api_key(CurrentUser(id=user_id, email=email, role=role, via="test"), "k"))[1]
        response = await new_client().get("/api/v1/finance/reports", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "wrong_role"
    assert (await new_client().get("/api/v1/finance/reports")).status_code == 401
    assert await AuditEvent.count().where(AuditEvent.action == finance.CHECK_ACTION) == 0

    key = await finance_api_key(monkeypatch)
    response = await new_client().get("/api/v1/finance/reports?tz=UTC", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["period"]["tz"] == "UTC" and set(body["tables"]) == set(finance.TABLES)
    assert body["figures"] == [] and body["ledger_check"] is None


async def test_the_api_gives_the_pages_figures_in_minor_units(client, new_client, settings, monkeypatch):
    await approved_conversions(settings, client, 3, hold_days=0)
    await approval.run(now=datetime.now(UTC) + timedelta(seconds=5))
    await finance.check_ledger(None)
    key = await finance_api_key(monkeypatch)
    today = datetime.now(UTC).date()
    response = await new_client().get(
        f"/api/v1/finance/reports?from={today}&to={today}&tz=UTC", headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    report = await finance.report(utc_period(today, today))
    [eur] = body["figures"]
    assert eur == {"currency": "EUR", **report.figures["EUR"]}
    assert eur["revenue_minor"] == await ledger.balance(K.network_revenue, "EUR") and isinstance(
        eur["revenue_minor"], int
    )
    assert body["tables"]["revenue_by_day"] == report.table("revenue_by_day").as_json()
    assert body["tables"]["revenue_by_day"][0]["day"] == today.isoformat()
    assert body["ledger_check"]["ok"] is True and body["ledger_check"]["by"] is None


async def test_bad_dates_answer_400_with_a_message_and_change_nothing(client, new_client, settings, monkeypatch):
    finance_client, _ = await staff_client(new_client, Role.finance)
    key = await finance_api_key(monkeypatch)
    events, txns = await AuditEvent.count(), await LedgerTxn.count()
    for bad, words in {
        "from=2026-13-01": "must look like",
        "from=2026-03-02&to=2026-03-01": "after the end",
        "tz=Mars/Olympus": "not a time zone",
        "from=2020-01-01&to=2026-01-01": "at most",
    }.items():
        page = await finance_client.get(f"/finance?{bad}")
        assert page.status_code == 400, bad
        assert words in error_text(page.text), (bad, error_text(page.text))
        assert "data-figure" not in page.text and 'name="from"' in page.text
        response = await finance_client.get(f"/finance/reports.csv?table=balances&{bad}")
        assert response.status_code == 400 and words in response.text, bad
        response = await new_client().get(f"/api/v1/finance/reports?{bad}", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid" and words in response.json()["error"]["message"]
    assert (await AuditEvent.count(), await LedgerTxn.count()) == (events, txns)


async def test_the_check_button_records_who_checked_and_the_page_says_every_invariant_holds(
    client, new_client, settings
):
    await approved_conversions(settings, client, 1, hold_days=0)
    await approval.run(now=datetime.now(UTC) + timedelta(seconds=5))
    finance_client, email = await staff_client(new_client, Role.finance, first_page="/finance")
    page = await finance_client.get("/finance")
    assert 'data-ok="unknown"' in page.text and "Check the ledger now" in page.text
    response = await post_form(
        finance_client, "/finance/ledger-check", {"from": "2026-01-01", "to": "2026-01-31", "tz": "Europe/Berlin"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/finance?from=2026-01-01&to=2026-01-31&tz=Europe%2FBerlin#ledger-check"
    [event] = await AuditEvent.select(AuditEvent.actor.email.as_alias("email"), AuditEvent.object_type).where(
        AuditEvent.action == finance.CHECK_ACTION
    )
    assert event == {"email": email, "object_type": "ledger"}
    page = await finance_client.get(response.headers["location"])
    assert page.status_code == 200
    assert 'data-ok="yes"' in page.text and "every invariant holds" in page.text and email in page.text
    assert "(Europe/Berlin)" in page.text
    # Without the CSRF token nothing is checked.
    assert (await post_form(finance_client, "/finance/ledger-check", with_csrf=False)).status_code == 403
    assert await AuditEvent.count().where(AuditEvent.action == finance.CHECK_ACTION) == 1


async def test_the_nightly_job_records_each_check_and_the_page_shows_what_it_found(client, new_client, settings):
    await postings.fund_advertiser((await make_advertiser())[0], 1_000, "EUR", reference_id=1, key="fund")
    assert await check_ledger({}) == {"ok": True, "problem_count": 0}
    last = await finance.last_ledger_check()
    assert last is not None and last.ok and last.by is None and last.problems == []
    # Drift (a stored balance that is not the sum of its entries) is found, recorded and shown.
    await LedgerAccount.update({LedgerAccount.balance_minor: LedgerAccount.balance_minor + 1}).where(
        LedgerAccount.kind == K.advertiser_balance.value
    )
    assert await check_ledger({}) == {"ok": False, "problem_count": 1}
    last = await finance.last_ledger_check()
    assert not last.ok and last.problems[0].startswith("I3 account")
    assert await AuditEvent.count().where(AuditEvent.action == finance.CHECK_ACTION) == 2
    finance_client, _ = await staff_client(new_client, Role.finance)
    page = await finance_client.get("/finance")
    assert 'data-ok="no"' in page.text and "1 problem found." in page.text and "the nightly job" in page.text
    assert "stores 1001 but its entries sum to 1000" in page.text


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
async def test_an_empty_network_shows_a_calm_dashboard(new_client, tz):
    finance_client, _ = await staff_client(new_client, Role.finance)
    page = await finance_client.get(f"/finance?tz={tz}")
    assert page.status_code == 200, page.text
    assert "No money has moved yet." in page.text and "The network earned nothing in this period." in page.text
    assert f'<option value="{tz}" selected>' in page.text
