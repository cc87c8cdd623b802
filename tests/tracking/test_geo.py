"""Countries from the trusted proxy's header: kept with clicks and impressions, two letters or unknown."""

from __future__ import annotations

import pytest

from server.tracking import geo
from tests.tracking.factories import campaign_with_link
from tests.tracking.test_redirect import click, stored_clicks


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        (" us ", "US"),
        (b"FR", "FR"),
        ("XX", ""),
        ("T1", ""),
        ("DEU", ""),
        ("", ""),
        (None, ""),
        ("1A", ""),
        ("É1", ""),
        ("ZZ", ""),
    ],
)
def test_only_two_letter_country_codes_are_kept(raw, country):
    assert geo.country(raw) == country


def test_the_header_is_read_only_when_configured():
    headers = [(b"cf-ipcountry", b"DE")]
    assert geo.from_headers(headers, geo.header_name("CF-IPCountry")) == "DE"
    assert geo.from_headers(headers, geo.header_name("")) == ""  # not configured: nobody's header is trusted
    assert geo.from_headers(headers, geo.header_name("CloudFront-Viewer-Country")) == ""


async def test_a_click_keeps_the_country_its_proxy_named(app, client, settings):
    s = await campaign_with_link(settings)
    await click(client, s.code, headers={"CF-IPCountry": "nl"})
    await click(client, s.code, "sub1=b", headers={"CF-IPCountry": "XX"})
    await click(client, s.code, "sub1=c")
    assert [r["country"] for r in await stored_clicks(app)] == ["NL", "", ""]
