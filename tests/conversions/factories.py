"""Real click ids (through the redirect) and conversion reports, for intake tests."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from server.accounts import service as accounts
from server.campaigns.tables import Campaign
from server.conversions.tables import Conversion
from tests.tracking.factories import Setup, campaign_with_link

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


async def click_id_of(client: httpx.AsyncClient, code: str) -> str:
    """Follow a tracked link as a browser and keep the click id the landing page receives."""
    response = await client.get(f"/c/{code}", headers={"user-agent": BROWSER}, follow_redirects=False)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["click_id"][0]


async def secrets_of(campaign_id: int) -> dict[str, Any]:
    return (
        await Campaign.select(Campaign.postback_secret, Campaign.public_key).where(Campaign.id == campaign_id).first()
    )


async def campaign_and_click(settings, client: httpx.AsyncClient, **overrides: Any) -> tuple[Setup, str, str]:
    """A campaign with a joined publisher, a real click on their link, and the campaign's postback token."""
    setup = await campaign_with_link(settings, **overrides)
    click_id = await click_id_of(client, setup.code)
    return setup, click_id, (await secrets_of(setup.campaign_id))["postback_secret"]


async def postback(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await client.get("/postback", params={k: str(v) for k, v in params.items() if v is not None})


async def api_key(user) -> str:
    return (await accounts.create_api_key(user, "conversions test"))[1]


async def conversions() -> list[dict[str, Any]]:
    return await Conversion.select().order_by(Conversion.id)


_readers = itertools.count()


def next_reader() -> tuple[str, int]:
    """A new reader's address (198.51.100.10-249, round and round: each test starts from an empty
    database and Redis), for a click that must not be anyone's earlier one."""
    return f"198.51.100.{10 + next(_readers) % 240}", 4000


async def pending_conversions(settings, client, n: int, *, fund: int | None = None, name: str = "Spring Boots"):
    """n pending CPA conversions (10.00, publisher 8.00) held 30 days; optionally fund the advertiser."""
    from server.ledger import postings

    client._transport.client = next_reader()
    setup, click_id, token = await campaign_and_click(settings, client, hold_days=30, name=name)
    for i in range(n):
        if i:
            client._transport.client = next_reader()
            click_id = await click_id_of(client, setup.code)
        response = await postback(client, click_id=click_id, txn_id=f"{name}-order-{i}", token=token)
        assert response.json()["status"] == "accepted", response.text
    if fund is not None:
        await postings.fund_advertiser(
            setup.advertiser.id, fund, "EUR", reference_id=1, key=f"fund-{setup.campaign_id}"
        )
    return setup
