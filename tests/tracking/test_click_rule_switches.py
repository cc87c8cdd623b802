"""The click-quality rules switched off per campaign by its advertiser and network-wide by an admin
(issue 18): the switches reach the redirect with the link's terms (never a query per click), a
switched-off rule's clicks are classified as without it, other campaigns keep their rules, and each
change is audited."""

from __future__ import annotations

import json

from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.tracking.tables import Click
from tests.factories import login, post_form, staff_client
from tests.tracking.browsers import CHROME_DESKTOP, navigation_headers
from tests.tracking.factories import campaign_with_link

HTTPS = "https://affnet.example"
AWS = "3.120.0.10"
ALL_CONVERSION_RULES = {
    "too_fast.enabled": "1",
    "rate_anomaly.enabled": "1",
    "conversion_rate.enabled": "1",
    "self_conversion.enabled": "1",
}


def chrome(**extra: str) -> dict[str, str]:
    return {**navigation_headers("chrome", CHROME_DESKTOP, "fr-FR,fr;q=0.9"), **extra}


async def reasons_by_campaign(app) -> dict[int, list[str]]:
    await app.state.click_buffer.flush()
    found: dict[int, list[str]] = {}
    for row in await Click.select(Click.campaign, Click.reason).order_by(Click.id):
        found.setdefault(row["campaign"], []).append(row["reason"])
    return found


async def clicks(new_client, code: str) -> None:
    """From a cloud network, a prefetch, and a client claiming Chrome without its headers."""
    cloud = new_client(HTTPS)
    cloud._transport.client = (AWS, 40000)
    assert (await cloud.get(f"/c/{code}", headers=chrome(), follow_redirects=False)).status_code == 302
    reader = new_client(HTTPS)
    reader._transport.client = ("93.64.1.20", 40000)
    prefetch = chrome(**{"sec-purpose": "prefetch"})
    assert (await reader.get(f"/c/{code}", headers=prefetch, follow_redirects=False)).status_code == 302
    forged = new_client(HTTPS)
    forged._transport.client = ("93.64.2.20", 40000)
    headers = {"user-agent": CHROME_DESKTOP}
    assert (await forged.get(f"/c/{code}", headers=headers, follow_redirects=False)).status_code == 302


async def test_an_advertiser_switches_datacenter_off_for_their_campaign_only(app, new_client, settings):
    mine = await campaign_with_link(settings)
    other = await campaign_with_link(settings, name="Other Shop")
    await clicks(new_client, mine.code)  # the link's terms are cached now: the switch must reach them
    advertiser = new_client()
    await login(advertiser, mine.advertiser.email)
    page = await advertiser.get(f"/advertiser/campaigns/{mine.campaign_id}/rules")
    assert 'data-testid="click-rules"' in page.text and 'name="click.datacenter" value="1" checked' in page.text
    form = {**ALL_CONVERSION_RULES, "click_rules_form": "1", "click.prefetch": "1", "click.suspicious_headers": "1"}
    saved = await post_form(advertiser, f"/advertiser/campaigns/{mine.campaign_id}/rules", form)
    assert saved.status_code == 200 and "click rules" in saved.text, saved.text
    assert 'name="click.datacenter" value="1">' in saved.text  # unticked now
    await clicks(new_client, mine.code)
    await clicks(new_client, other.code)
    found = await reasons_by_campaign(app)
    assert found[mine.campaign_id] == [
        "datacenter",
        "prefetch",
        "suspicious_headers",
        "valid",
        "prefetch",
        "suspicious_headers",
    ]
    assert found[other.campaign_id] == ["datacenter", "prefetch", "suspicious_headers"]
    [event] = await AuditEvent.select().where(AuditEvent.action == "click_rules.changed")
    assert (event["object_type"], event["object_id"]) == ("campaign", mine.campaign_id)
    assert json.loads(event["detail"]) == {"after": ["datacenter"], "before": []}
    # Another advertiser cannot switch it.
    stranger = new_client()
    await login(stranger, other.advertiser.email)
    refused = await post_form(stranger, f"/advertiser/campaigns/{mine.campaign_id}/rules", {"click_rules_form": "1"})
    assert refused.status_code == 404


async def test_an_admin_switches_prefetch_and_suspicious_headers_off_network_wide(app, new_client, settings):
    s = await campaign_with_link(settings)
    await clicks(new_client, s.code)
    admin, _ = await staff_client(new_client, Role.admin, first_page="/admin/conversion-rules")
    form = {**ALL_CONVERSION_RULES, "click_rules_form": "1", "click.datacenter": "1"}
    saved = await post_form(admin, "/admin/conversion-rules", form)
    assert saved.status_code == 200 and "click rules" in saved.text, saved.text
    await clicks(new_client, s.code)
    found = await reasons_by_campaign(app)
    # The reader's prefetch is now an ordinary click, and so is the forged one (another /24: no duplicate).
    assert found[s.campaign_id] == ["datacenter", "prefetch", "suspicious_headers", "datacenter", "valid", "valid"]
    advertiser = new_client()
    await login(advertiser, s.advertiser.email)
    page = await advertiser.get(f"/advertiser/campaigns/{s.campaign_id}/rules")
    assert "off network-wide" in page.text
    # Only an admin switches them network-wide: finance cannot reach the page.
    finance, _ = await staff_client(new_client, Role.finance, first_page="/finance/review")
    assert (await post_form(finance, "/admin/conversion-rules", form)).status_code in (401, 403)
