"""Click quality: browsers' prefetches and browser User-Agents without a browser's headers are
never billed, and no real browser's navigation is ever flagged (issue 18)."""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from server.accounts.tables import Role
from server.core import i18n
from server.tracking import datacenter
from server.tracking.classify import Reason, request_reason
from server.tracking.counting import NEAR_SECONDS
from server.tracking.tables import Click
from tests.ads.factories import path_of, served_ad, view
from tests.factories import login, make_staff
from tests.tracking.browsers import (
    CHROME_ANDROID,
    CHROME_DESKTOP,
    CURL_LIKE,
    GO_LIKE,
    LANGUAGES,
    REQUESTS_LIKE,
    USER_AGENTS,
    navigation_headers,
)
from tests.tracking.factories import another_reader, campaign_with_link

HTTPS = "https://affnet.example"


async def stored_reasons(app) -> list[str]:
    await app.state.click_buffer.flush()
    return [row["reason"] for row in await Click.select(Click.reason).order_by(Click.id)]


async def click(client, code: str, headers: dict[str, str]):
    return await client.get(f"/c/{code}", headers=headers, follow_redirects=False)


def chrome(**extra: str) -> dict[str, str]:
    return {**navigation_headers("chrome", CHROME_DESKTOP, "fr-FR,fr;q=0.9"), **extra}


def lands(response) -> bool:
    parts = urlsplit(response.headers["location"])
    return response.status_code == 302 and (parts.hostname, parts.path) == ("shop.example.com", "/boots")


# --- prefetch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "purpose",
    [
        {"sec-purpose": "prefetch"},
        {"sec-purpose": "prefetch;prerender"},
        {"sec-purpose": "prefetch; anonymous-client-ip"},
        {"purpose": "prefetch"},
        {"x-moz": "prefetch"},
        {"x-purpose": "preview"},
    ],
)
async def test_a_prefetch_redirects_to_the_landing_page_and_is_never_billed(app, new_client, settings, purpose):
    s = await campaign_with_link(settings)
    client = new_client(HTTPS)
    response = await click(client, s.code, chrome(**purpose))
    assert lands(response) and "click_id=" in response.headers["location"]
    assert await stored_reasons(app) == ["prefetch"]


async def test_the_reader_who_clicks_after_the_prefetch_is_a_valid_click(app, new_client, settings):
    s = await campaign_with_link(settings)
    client = new_client(HTTPS)
    await click(client, s.code, chrome(**{"sec-purpose": "prefetch;prerender"}))
    assert lands(await click(client, s.code, chrome()))
    assert await stored_reasons(app) == ["prefetch", "valid"]  # the prefetch made no "duplicate"


async def test_a_prefetch_over_plain_http_is_a_prefetch_too(app, client, settings):
    s = await campaign_with_link(settings)
    assert lands(await click(client, s.code, {"user-agent": CHROME_DESKTOP, "purpose": "prefetch"}))
    assert await stored_reasons(app) == ["prefetch"]


# --- suspicious headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("tool", [CURL_LIKE, REQUESTS_LIKE, GO_LIKE])
@pytest.mark.parametrize("ua", [CHROME_DESKTOP, CHROME_ANDROID, dict(USER_AGENTS)["firefox"]])
async def test_a_browser_user_agent_with_an_http_tools_headers_is_suspicious(app, new_client, settings, tool, ua):
    s = await campaign_with_link(settings)
    response = await click(new_client(HTTPS), s.code, {**tool, "user-agent": ua})
    assert lands(response)  # the answer never says what was spotted
    assert await stored_reasons(app) == ["suspicious_headers"]


async def test_chrome_without_accept_language_or_fetch_metadata_is_suspicious(app, new_client, settings):
    s = await campaign_with_link(settings)
    client = new_client(HTTPS)
    no_language = {k: v for k, v in chrome().items() if k != "accept-language"}
    no_fetch = {k: v for k, v in chrome().items() if not k.startswith("sec-fetch")}
    visitors = [("198.51.100.1", 1), ("198.51.101.1", 2)]  # two networks: no duplicate between them
    for (ip, port), headers in zip(visitors, (no_language, no_fetch), strict=True):
        client._transport.client = (ip, port)
        assert lands(await click(client, s.code, headers))
    assert await stored_reasons(app) == ["suspicious_headers", "suspicious_headers"]


@pytest.mark.parametrize(("family", "ua"), USER_AGENTS)
async def test_real_browsers_navigations_are_valid(app, new_client, settings, family, ua):
    s = await campaign_with_link(settings)
    client = new_client(HTTPS)
    client._transport.client = ("90.12.34.56", 51000)  # Orange France
    assert lands(await click(client, s.code, navigation_headers(family, ua, "fr-FR,fr;q=0.9")))
    assert await stored_reasons(app) == ["valid"]


async def test_plain_http_is_never_judged_on_its_headers(app, client, settings):
    """Browsers send Fetch Metadata to secure origins only: over HTTP its absence proves nothing."""
    s = await campaign_with_link(settings)
    assert lands(await click(client, s.code, {**CURL_LIKE, "user-agent": CHROME_DESKTOP}))
    assert await stored_reasons(app) == ["valid"]


async def test_switched_off_the_header_rules_leave_clicks_as_before(app, new_client, settings):
    s = await campaign_with_link(settings)
    client = new_client(HTTPS)
    redirector = app.state.redirector
    redirector.quality_checks = False
    try:
        await click(client, s.code, chrome(**{"sec-purpose": "prefetch"}))
        client._transport.client = ("198.51.100.1", 1)
        another_reader(client)
        await click(client, s.code, {**CURL_LIKE, "user-agent": CHROME_DESKTOP})
    finally:
        redirector.quality_checks = True
    assert await stored_reasons(app) == ["valid", "valid"]


# --- data centres ---------------------------------------------------------------------------------

CLOUD_ADDRESSES = [
    "3.120.0.10",  # AWS eu-central-1
    "52.95.110.1",  # AWS
    "2600:1f18::1",  # AWS us-east-1, IPv6
    "35.190.27.1",  # Google Cloud
    "34.64.1.1",  # Google Cloud
    "20.61.1.1",  # Microsoft Azure
    "5.9.10.20",  # Hetzner
    "2a01:4f8:c0c::1",  # Hetzner, IPv6
    "51.38.1.1",  # OVHcloud
    "2001:41d0:303::1",  # OVHcloud, IPv6
]


@pytest.mark.parametrize("ip", CLOUD_ADDRESSES)
async def test_a_browser_from_a_cloud_or_hosting_network_is_a_datacenter_click(app, new_client, settings, ip):
    s = await campaign_with_link(settings)
    client = new_client(HTTPS)
    client._transport.client = (ip, 40000)
    assert lands(await click(client, s.code, chrome()))
    assert await stored_reasons(app) == ["datacenter"]


def test_the_bundled_snapshot_is_dated_and_covers_both_ip_versions():
    snap = datacenter.snapshot()
    assert snap.day is not None and snap.source.startswith("@ip-location-db/asn ")
    assert len(snap.v4[0]) > 1000 and len(snap.v6[0]) > 100
    for starts, ends in (snap.v4, snap.v6):  # sorted, disjoint: what bisection needs
        assert all(a <= b for a, b in zip(starts, ends, strict=True))
        assert all(ends[i] < starts[i + 1] for i in range(len(starts) - 1))


def test_the_refresh_command_regenerates_the_bundled_file_from_the_package(tmp_path):
    """A miniature @ip-location-db/asn package: only the listed ASNs' ranges are kept, merged."""
    package = tmp_path / "asn"
    package.mkdir()
    (package / "package.json").write_text('{"name": "@ip-location-db/asn", "version": "2.3.2026120106"}')
    (package / "asn-ipv4-num.csv").write_text(
        "84475904,84476927,24940,Hetzner Online GmbH\n"  # 5.9.0.0-5.9.3.255
        "84476928,84477951,24940,Hetzner Online GmbH\n"  # adjacent: merged
        "1509949440,1512046591,3215,Orange S.A.\n"  # 90.0.0.0/11: an ISP, left out
    )
    (package / "asn-ipv6-num.csv").write_text(
        '50511294496000416714471912900497768448,50511294496000416714471912900497833983,16509,"Amazon.com, Inc."\n'
    )
    out = tmp_path / "ranges.txt.gz"
    from click.testing import CliRunner

    from server.cli import main

    result = CliRunner().invoke(main, ["datacenter-ranges", "refresh", "--source", str(package), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 ranges" in result.output and "(2026-12-01)" in result.output
    snap = datacenter.load(out)
    assert snap.day.isoformat() == "2026-12-01" and snap.ranges == 2
    assert snap.contains("5.9.0.1") and snap.contains("5.9.7.255") and not snap.contains("5.9.8.0")
    assert not snap.contains("90.1.2.3")
    assert snap.contains("2600:1f18::1") and not snap.contains("2600:1f18::1:0")


async def test_admins_see_the_snapshots_date_source_and_size(client):
    _, email = await make_staff(Role.admin)
    await login(client, email)
    page = await client.get("/admin/settings")
    snap = datacenter.snapshot()
    assert page.status_code == 200
    assert f'<time datetime="{snap.day.isoformat()}">{i18n.date_text(snap.day)}</time>' in page.text
    assert snap.source in page.text and f"{i18n.number_text(snap.ranges)} ranges" in page.text


# Residential ranges as their ISPs announce them (the snapshot's own source, same date).
RESIDENTIAL = [
    ("90.0.0.0", "90.31.255.255"),  # Orange France AS3215
    ("88.160.0.0", "88.191.255.255"),  # Free AS12322
    ("82.224.0.0", "82.255.255.255"),  # Free
    ("93.0.0.0", "93.31.255.255"),  # SFR AS15557
    ("109.0.0.0", "109.31.255.255"),  # SFR
    ("89.80.0.0", "89.95.255.255"),  # Bouygues Telecom AS5410
    ("79.0.0.0", "79.63.255.255"),  # TIM AS3269
    ("87.0.0.0", "87.31.255.255"),  # TIM
    ("93.64.0.0", "93.71.255.255"),  # Vodafone Italia AS30722
    ("5.88.0.0", "5.95.255.255"),  # Vodafone Italia
    ("151.16.0.0", "151.31.255.255"),  # WindTre AS1267
    ("2a01:cb00::", "2a01:cbff:ffff:ffff:ffff:ffff:ffff:ffff"),  # Orange France
    ("2a01:e00::", "2a01:e03:ffff:ffff:ffff:ffff:ffff:ffff"),  # Free
    ("2a02:8400::", "2a02:847f:ffff:ffff:ffff:ffff:ffff:ffff"),  # SFR
    ("2a01:2000::", "2a01:2fff:ffff:ffff:ffff:ffff:ffff:ffff"),  # TIM
    ("2a02:b000::", "2a02:b1ff:ffff:ffff:ffff:ffff:ffff:ffff"),  # WindTre
]


def _span(first: str, last: str) -> tuple[int, int]:
    return int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))


def test_no_residential_range_meets_the_snapshot():
    snap = datacenter.snapshot()
    for first, last in RESIDENTIAL:
        low, high = _span(first, last)
        starts, ends = snap.v6 if ":" in first else snap.v4
        assert not any(s <= high and low <= e for s, e in zip(starts, ends, strict=True)), (first, last)


residential_addresses = st.sampled_from(RESIDENTIAL).flatmap(
    lambda span: st.integers(*_span(*span)).map(
        lambda n, v6=":" in span[0]: str(ipaddress.IPv6Address(n) if v6 else ipaddress.IPv4Address(n))
    )
)


# --- no real browser is ever flagged --------------------------------------------------------------


def _case(name: str, upper: bool) -> str:
    return name.title() if upper else name


@st.composite
def browser_navigations(draw) -> tuple[str, dict[str, str], bool]:
    family, ua = draw(st.sampled_from(USER_AGENTS))
    headers = navigation_headers(
        family, ua, draw(st.sampled_from(LANGUAGES)), site=draw(st.sampled_from(["cross-site", "none", "same-site"]))
    )
    # Headers a browser may or may not send on a navigation: no referrer (typed, bookmarked,
    # referrer policy), no sec-fetch-user (script-started), privacy signals, an extension's DNT.
    for optional in ("referer", "sec-fetch-user", "upgrade-insecure-requests", "priority"):
        if optional in headers and draw(st.booleans()):
            del headers[optional]
    if draw(st.booleans()):
        headers["sec-gpc"] = "1"
    if draw(st.booleans()):
        headers["dnt"] = "1"
    if draw(st.booleans()):
        headers["cache-control"] = "max-age=0"
    upper = draw(st.booleans())  # HTTP/1.1 clients and proxies may send any case
    return ua, {_case(k, upper): v for k, v in headers.items()}, draw(st.booleans())


@hsettings(max_examples=500, deadline=None)
@given(browser_navigations(), residential_addresses)
def test_no_real_browser_navigation_from_a_home_is_ever_flagged(navigation, ip):
    """What the redirect checks before a click is valid: its headers, then its address."""
    ua, headers, secure = navigation
    assert request_reason(ua, headers, secure=secure) is None
    assert not datacenter.snapshot().contains(ip)


async def test_readers_at_home_over_http_are_valid(app, new_client, settings):
    s = await campaign_with_link(settings)
    homes = ["90.12.34.56", "88.170.1.2", "79.20.30.40", "5.90.1.2", "2a01:cb00:1234::1", "2a01:e0a:5:6::1"]
    for n, ip in enumerate(homes):
        family, ua = USER_AGENTS[n * 3 % len(USER_AGENTS)]
        client = new_client(HTTPS)
        client._transport.client = (ip, 50000)
        assert lands(await click(client, s.code, navigation_headers(family, ua, LANGUAGES[n % len(LANGUAGES)])))
    assert await stored_reasons(app) == ["valid"] * len(homes)


@pytest.mark.parametrize("tool", [CURL_LIKE, REQUESTS_LIKE, GO_LIKE])
def test_tools_with_a_chromium_or_firefox_user_agent_are_flagged_over_https(tool):
    for family, ua in USER_AGENTS:
        expected = Reason.suspicious_headers if family not in {"safari"} else None
        assert request_reason(ua, {**tool, "user-agent": ua}, secure=True) == expected, ua


# --- no collateral damage: many readers behind one mobile carrier's NAT ---------------------------

_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/{s} Mobile/15E148 Safari/604.1"
)
_ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"
)
# The phone browsers of an Italian carrier's readers, each build with its share of 100 readers.
PHONES: list[tuple[str, str, int]] = [
    ("chrome", _ANDROID_CHROME.format(v=142), 30),
    ("chrome", _ANDROID_CHROME.format(v=141), 10),
    ("chrome", _ANDROID_CHROME.format(v=140), 4),
    ("safari", _IOS.format(v="18_6", s="18.6"), 20),
    ("safari", _IOS.format(v="18_5", s="18.5"), 6),
    ("safari", _IOS.format(v="26_1", s="26.1"), 10),
    ("safari", _IOS.format(v="26_0", s="26.0"), 3),
    ("samsung", dict(USER_AGENTS)["samsung"], 8),
    ("firefox", "Mozilla/5.0 (Android 15; Mobile; rv:145.0) Gecko/145.0 Firefox/145.0", 3),
    ("edge", dict(USER_AGENTS)["edge"].replace("Windows NT 10.0; Win64; x64", "Linux; Android 10; K"), 2),
    ("safari", USER_AGENTS[18][1], 4),  # Chrome on iOS
]


def carrier_readers() -> list[tuple[str, str, str, str]]:
    """100 readers of one article on one /24 of Vodafone Italia's mobile network (its carrier-grade
    NAT hands out 40 public addresses), with the phone browsers such a crowd has: (address, family,
    User-Agent, Accept-Language) each. Readers of one build sit on different addresses (a build's
    30 readers on 40 addresses), but every address is shared by readers of other builds."""
    assert sum(share for *_, share in PHONES) == 100
    builds = [(family, ua) for family, ua, share in PHONES for _ in range(share)]
    return [
        (f"5.90.12.{n % 40 + 2}", family, ua, LANGUAGES[n % len(LANGUAGES)]) for n, (family, ua) in enumerate(builds)
    ]


async def test_readers_behind_one_carrier_nat_are_each_one_valid_click(app, new_client, settings):
    """100 readers of one article within a minute, behind one carrier's NAT (many on one address,
    30 with the very same phone build): each is one valid click. Each then goes back and clicks
    again: their browser sends back the visitor cookie its first click was given, so the second
    click is their duplicate, wherever the NAT puts them by then. No reader is rate limited (under
    120 a minute per /24) nor flagged by a click-quality rule, and every one lands with a click id
    (a duplicate still attributes the reader's purchase)."""
    s = await campaign_with_link(settings)
    readers = carrier_readers()
    browsers = []
    for n, (address, family, ua, language) in enumerate(readers):
        browser = new_client(HTTPS)
        browser._transport.client = (address, 30000 + n)
        browsers.append((browser, navigation_headers(family, ua, language)))
        response = await click(browser, s.code, browsers[-1][1])
        assert lands(response) and "click_id=" in response.headers["location"]
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("affnet_v=") and "Path=/c/" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert await stored_reasons(app) == ["valid"] * 100
    for n, (browser, headers) in enumerate(browsers):
        # The NAT pool has moved them to another /24 (and 200 clicks a minute from one /24 would be a flood).
        browser._transport.client = (f"5.90.13.{(n * 7) % 40 + 2}", 40000 + n)
        response = await click(browser, s.code, headers)
        assert lands(response) and "set-cookie" not in response.headers  # it has its id already
    assert await stored_reasons(app) == ["valid"] * 100 + ["duplicate"] * 100


@pytest.mark.parametrize("checks", [True, False], ids=["quality-checks", "no-quality-checks"])
async def test_the_visitor_cookie_is_found_among_split_cookie_headers(app, new_client, settings, checks):
    """A proxy speaking HTTP/2 to the browser may pass its cookies on as several Cookie headers:
    the visitor id is read from any of them, so the reader's second click is their duplicate."""
    s = await campaign_with_link(settings)
    browser = new_client(HTTPS)
    app.state.redirector.quality_checks = checks
    try:
        first = await click(browser, s.code, chrome())
        visitor = first.headers["set-cookie"].split(";")[0]
        another_reader(browser)  # the cookie goes by hand below, split as a proxy would
        browser._transport.client = ("90.12.34.99", 50000)  # another address: only the cookie can tell
        response = await browser.get(
            f"/c/{s.code}",
            headers=[*chrome().items(), ("cookie", "session=x"), ("cookie", visitor), ("cookie", "theme=dark")],
            follow_redirects=False,
        )
    finally:
        app.state.redirector.quality_checks = True
    assert lands(response) and "set-cookie" not in response.headers
    assert await stored_reasons(app) == ["valid", "duplicate"]


async def test_a_reader_without_cookies_double_clicking_is_one_click(app, new_client, settings):
    """A browser that keeps no cookie (or a tool): its clicks within NEAR_SECONDS from the same
    address, build and languages are one click; from another address of the NAT they are another
    reader's (what the visitor identity cannot tell apart, README)."""
    s = await campaign_with_link(settings)
    family, ua, _ = PHONES[0]
    headers = navigation_headers(family, ua, "it-IT,it;q=0.9")
    browser = new_client(HTTPS)
    browser._transport.client = ("5.90.12.9", 30000)
    for _ in range(3):
        another_reader(browser)
        assert lands(await click(browser, s.code, headers))
    browser._transport.client = ("5.90.12.10", 30000)
    another_reader(browser)
    assert lands(await click(browser, s.code, headers))
    assert await stored_reasons(app) == ["valid", "duplicate", "duplicate", "valid"]


async def test_two_readers_of_one_build_on_one_address_are_told_apart_after_a_short_window(app, new_client, settings):
    """The limit, as the README says it: two readers of the same build and languages on the same
    public address, clicking the same link before either has the cookie, within NEAR_SECONDS, are
    one click. After the window they are two (the counter's window shortened to a second here)."""
    s = await campaign_with_link(settings)
    counter = app.state.redirector.counter
    family, ua, _ = PHONES[3]
    headers = navigation_headers(family, ua, "it-IT,it;q=0.9")
    first, second, third = (new_client(HTTPS) for _ in range(3))
    for browser in (first, second, third):
        browser._transport.client = ("5.90.12.9", 30000)
    counter.near_seconds = 1
    try:
        await click(first, s.code, headers)
        await click(second, s.code, headers)
        await app.state.click_buffer.flush()
        await asyncio.sleep(1.2)  # the address's key expires in Redis
        await click(third, s.code, headers)
        assert await stored_reasons(app) == ["valid", "duplicate", "valid"]
    finally:
        counter.near_seconds = NEAR_SECONDS


async def test_without_the_visitor_cookie_readers_of_one_build_on_one_network_are_one_visitor(
    app, new_client, settings
):
    """AFFNET_VISITOR_COOKIE=off: no cookie is given, and the duplicate check keys on the /24 and
    the User-Agent for the hour, as before the cookie: one valid click per phone build."""
    s = await campaign_with_link(settings)
    redirector = app.state.redirector
    redirector.visitor_cookie = False
    try:
        for n, (address, family, ua, language) in enumerate(carrier_readers()):
            browser = new_client(HTTPS)
            browser._transport.client = (address, 30000 + n)
            response = await click(browser, s.code, navigation_headers(family, ua, language))
            assert lands(response) and "set-cookie" not in response.headers
    finally:
        redirector.visitor_cookie = True
    reasons = await stored_reasons(app)
    assert reasons.count("valid") == len(PHONES) and reasons.count("duplicate") == 100 - len(PHONES)


@pytest.mark.parametrize("cookie", [True, False], ids=["visitor-cookie", "no-visitor-cookie"])
async def test_the_same_readers_on_two_carrier_networks_are_distinct(app, new_client, settings, cookie):
    """One phone build from ten of the carrier's /24s, each a new browser: ten readers, for the
    visitor cookie and, with it off, for the network + User-Agent hash (the /24 is part of it: a
    NAT pool spreads its readers over many /24s)."""
    s = await campaign_with_link(settings)
    family, ua, _ = PHONES[0]
    app.state.redirector.visitor_cookie = cookie
    try:
        for n in range(10):
            client = new_client(HTTPS)
            client._transport.client = (f"5.90.{20 + n}.7", 30000)
            await click(client, s.code, navigation_headers(family, ua, "it-IT,it;q=0.9"))
    finally:
        app.state.redirector.visitor_cookie = True
    assert await stored_reasons(app) == ["valid"] * 10


# --- ad clicks (/c/{code}?o=…) go through the same rules -----------------------------------------


async def test_an_ad_prefetch_is_not_billed_and_leaves_the_readers_click_valid(app, new_client, settings):
    client = new_client(HTTPS)
    *_, answer = await served_ad(client, settings)
    assert (await view(client, answer["view_url"])).status_code == 202
    prefetch = await client.get(path_of(answer["click_url"]), headers=chrome(**{"sec-purpose": "prefetch"}))
    assert lands(prefetch)
    assert lands(await client.get(path_of(answer["click_url"]), headers=chrome()))
    assert await stored_reasons(app) == ["prefetch", "valid"]  # the prefetch did not spend the offer


async def test_an_ad_click_from_a_data_centre_is_a_datacenter_click(app, new_client, settings):
    client = new_client(HTTPS)
    *_, answer = await served_ad(client, settings)
    await view(client, answer["view_url"])
    client._transport.client = ("5.9.10.20", 40000)  # Hetzner
    assert lands(await client.get(path_of(answer["click_url"]), headers=chrome()))
    assert await stored_reasons(app) == ["datacenter"]


async def test_an_ad_click_with_an_http_tools_headers_is_suspicious(app, new_client, settings):
    client = new_client(HTTPS)
    *_, answer = await served_ad(client, settings)
    await view(client, answer["view_url"])
    assert lands(await client.get(path_of(answer["click_url"]), headers={**CURL_LIKE, "user-agent": CHROME_DESKTOP}))
    assert await stored_reasons(app) == ["suspicious_headers"]
