"""GET/POST /postback: a reported conversion is attributed, priced and stored pending once; every
refusal says why with a stable code and changes nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.campaigns import service as campaigns
from server.conversions.tables import Conversion
from server.core import money
from server.tracking.tokens import issue_click_id
from tests.conversions.factories import (
    api_key,
    campaign_and_click,
    click_id_of,
    conversions,
    postback,
)
from tests.factories import make_publisher
from tests.tracking.factories import campaign_with_link


def refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "refused" and body["code"] == code and body["duplicate"] is False, body
    assert body["message"] and body["conversion_id"] is None
    return body


async def test_a_cpa_postback_is_accepted_pending_attributed_and_priced(app, client, settings):
    before = datetime.now(UTC).replace(microsecond=0)  # click ids carry whole seconds
    s, click_id, token = await campaign_and_click(settings, client)
    response = await postback(client, click_id=click_id, txn_id="order-1", token=token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "accepted" and body["duplicate"] is False and body["code"] is None
    assert body["conversion_status"] == "pending" and body["goal"] == "sale" and body["txn_id"] == "order-1"
    # 10.00 EUR per sale; the publisher's share left empty: the network's default 20 % margin.
    assert body["payout"] == {
        "currency": "EUR",
        "price_minor": 1000,
        "publisher_minor": 800,
        "network_minor": 200,
        "sale_amount_minor": None,
    }
    assert response.headers["cache-control"].startswith("no-store")

    [row] = await conversions()
    assert row["id"] == body["conversion_id"]
    assert (row["campaign"], row["publisher"], row["link"]) == (s.campaign_id, s.publisher.id, s.link_id)
    assert (row["click_id"], row["txn_id"], row["source"], row["status"]) == (
        click_id,
        "order-1",
        "postback",
        "pending",
    )
    assert (row["advertiser_amount_minor"], row["publisher_amount_minor"], row["network_amount_minor"]) == (
        1000,
        800,
        200,
    )
    assert row["sale_amount_minor"] is None and row["currency"] == "EUR"
    assert before <= row["clicked_at"] <= row["converted_at"]
    assert row["hold_until"] == row["converted_at"] + timedelta(days=30)


async def test_a_post_form_body_and_an_advertiser_api_key_work_as_well(app, client, settings):
    s, click_id, token = await campaign_and_click(
        settings,
        client,
        goal_0_model="cpl",
        goal_0_advertiser="2.50",
        goal_0_publisher="2.00",
        hold_days="7",
        goal_0_per_click="2",
    )  # two reports on one click
    response = await client.post(
        "/postback", data={"click_id": click_id, "txn_id": "lead-1", "token": token, "goal": "sale"}
    )
    assert response.status_code == 200 and response.json()["payout"]["publisher_minor"] == 200, response.text
    key = await api_key(s.advertiser)
    response = await client.post(
        "/postback", params={"click_id": click_id, "txn_id": "lead-2"}, headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    rows = await conversions()
    assert [r["txn_id"] for r in rows] == ["lead-1", "lead-2"]
    assert all(r["hold_until"] - r["converted_at"] == timedelta(days=7) for r in rows)


async def test_campaigns_get_a_postback_secret_and_a_pixel_key_at_creation(app, settings):
    a = await campaign_with_link(settings)
    b = await campaign_with_link(settings)
    from tests.conversions.factories import secrets_of

    sa, sb = await secrets_of(a.campaign_id), await secrets_of(b.campaign_id)
    assert len(sa["postback_secret"]) >= 32 and len(sa["public_key"]) >= 12
    assert sa["postback_secret"] != sb["postback_secret"] and sa["public_key"] != sb["public_key"]


# --- refusals: one per reason, each changing nothing -------------------------------------------------------


async def test_a_missing_or_wrong_token_is_refused(app, client, settings):
    _, click_id, token = await campaign_and_click(settings, client)
    refused(await postback(client, click_id=click_id, txn_id="t1"), 401, "bad_token")
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")  # one character off, never the token itself
    refused(await postback(client, click_id=click_id, txn_id="t1", token=wrong), 401, "bad_token")
    refused(
        await client.get(
            "/postback",
            params={"click_id": click_id, "txn_id": "t1"},
            headers={"authorization": "Bearer afn_adv_nope_" + "0" * 64},
        ),
        401,
        "bad_token",
    )
    assert await Conversion.count() == 0


async def test_another_campaigns_token_or_advertisers_key_cannot_report_this_click(app, client, settings):
    _, click_id, _ = await campaign_and_click(settings, client)
    other, _, other_token = await campaign_and_click(settings, client)
    refused(await postback(client, click_id=click_id, txn_id="t1", token=other_token), 401, "bad_token")
    key = await api_key(other.advertiser)
    refused(
        await client.get(
            "/postback", params={"click_id": click_id, "txn_id": "t1"}, headers={"authorization": f"Bearer {key}"}
        ),
        401,
        "bad_token",
    )
    publisher_key = await api_key(other.publisher)
    refused(
        await client.get(
            "/postback",
            params={"click_id": click_id, "txn_id": "t1"},
            headers={"authorization": f"Bearer {publisher_key}"},
        ),
        401,
        "bad_token",
    )
    assert await Conversion.count() == 0


async def test_a_forged_edited_or_unknown_click_id_is_refused(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client)
    edited = click_id[:-2] + ("AA" if click_id[-2:] != "AA" else "BB")
    key = app.state.redirector.token_key
    for bad in (
        edited,
        "not-a-click-id",
        "",
        issue_click_id(b"another key", s.link_id, int(time.time())),
        issue_click_id(key, s.link_id + 10_000, int(time.time())),
    ):  # signed, but no such link
        refused(await postback(client, click_id=bad, txn_id="t1", token=token), 404, "unknown_click")
    assert await Conversion.count() == 0


async def test_a_click_outside_the_attribution_window_is_refused(app, client, settings):
    s, _, token = await campaign_and_click(settings, client, attribution_window_days="30")
    old = issue_click_id(app.state.redirector.token_key, s.link_id, int(time.time()) - 31 * 86400)
    body = refused(await postback(client, click_id=old, txn_id="t1", token=token), 422, "outside_attribution_window")
    assert "30 days" in body["message"]
    recent = issue_click_id(app.state.redirector.token_key, s.link_id, int(time.time()) - 29 * 86400)
    assert (await postback(client, click_id=recent, txn_id="t2", token=token)).status_code == 200
    assert await Conversion.count() == 1


async def test_a_conversion_faster_than_the_minimum_time_is_refused(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client, min_conversion_seconds="3600")
    refused(await postback(client, click_id=click_id, txn_id="t1", token=token), 422, "too_fast")
    assert await Conversion.count() == 0
    earlier = issue_click_id(app.state.redirector.token_key, s.link_id, int(time.time()) - 3700)
    assert (await postback(client, click_id=earlier, txn_id="t1", token=token)).status_code == 200


async def test_an_unknown_goal_or_a_click_priced_goal_is_refused(app, client, settings):
    _, click_id, token = await campaign_and_click(
        settings, client, goal_1_name="visit", goal_1_model="cpc", goal_1_advertiser="0.10"
    )
    refused(await postback(client, click_id=click_id, txn_id="t1", token=token, goal="signup"), 422, "unknown_goal")
    body = refused(
        await postback(client, click_id=click_id, txn_id="t1", token=token, goal="visit"), 422, "unknown_goal"
    )
    assert "per click" in body["message"]
    assert await Conversion.count() == 0


async def test_a_campaign_that_pays_only_per_click_takes_no_conversion(app, client, settings):
    _, click_id, token = await campaign_and_click(settings, client, goal_0_model="cpc", goal_0_advertiser="0.10")
    refused(await postback(client, click_id=click_id, txn_id="t1", token=token), 422, "unknown_goal")
    assert await Conversion.count() == 0


async def test_the_default_goal_is_the_first_conversion_goal(app, client, settings):
    _, click_id, token = await campaign_and_click(
        settings,
        client,
        goal_0_name="visit",
        goal_0_model="cpc",
        goal_0_advertiser="0.10",
        goal_1_name="lead",
        goal_1_model="cpl",
        goal_1_advertiser="3.00",
        goal_2_name="sale",
        goal_2_model="cpa",
        goal_2_advertiser="20.00",
    )
    body = (await postback(client, click_id=click_id, txn_id="t1", token=token)).json()
    assert body["goal"] == "lead" and body["payout"]["price_minor"] == 300


async def test_an_ended_campaign_refuses_and_a_paused_one_accepts(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client)
    await campaigns.change_status(s.advertiser, s.campaign_id, "pause")
    assert (await postback(client, click_id=click_id, txn_id="t1", token=token)).status_code == 200
    await campaigns.change_status(s.advertiser, s.campaign_id, "end")
    refused(await postback(client, click_id=click_id, txn_id="t2", token=token), 409, "campaign_ended")
    assert await Conversion.count() == 1


async def test_revshare_needs_a_valid_amount_in_the_campaign_currency(app, client, settings):
    # The goal accepts sales up to the intake's own limit (10**12 minor units), which this test probes.
    _, click_id, token = await campaign_and_click(
        settings, client, goal_0_model="revshare", goal_0_advertiser="10", goal_0_max_sale=str(10**10)
    )
    refused(await postback(client, click_id=click_id, txn_id="t1", token=token), 422, "amount_required")
    for amount in ("-5", "12.50", "1e3", "abc", str(10**12 + 1), " 1 2"):
        refused(await postback(client, click_id=click_id, txn_id="t1", token=token, amount=amount), 422, "bad_amount")
    refused(
        await postback(client, click_id=click_id, txn_id="t1", token=token, amount="1000", currency="USD"),
        422,
        "bad_currency",
    )
    refused(await postback(client, click_id=click_id, txn_id="", token=token, amount="1000"), 422, "txn_id_required")
    refused(await postback(client, click_id=click_id, txn_id="x" * 101, token=token, amount="1000"), 422, "bad_txn_id")
    assert await Conversion.count() == 0
    ok = await postback(client, click_id=click_id, txn_id="t1", token=token, amount=str(10**12), currency="eur")
    assert ok.status_code == 200 and ok.json()["payout"]["price_minor"] == 10**11


async def test_caps_on_conversions_per_day_are_enforced(app, client, settings):
    s, click_id, token = await campaign_and_click(
        settings, client, cap_conversions_daily="2", goal_0_per_click="5"
    )  # the cap binds, not the click's limit
    for txn in ("t1", "t2"):
        assert (await postback(client, click_id=click_id, txn_id=txn, token=token)).status_code == 200
    body = refused(await postback(client, click_id=click_id, txn_id="t3", token=token), 409, "cap_reached")
    assert "2 conversions a day" in body["message"]
    # A retry of a conversion already counted is still answered, cap or not.
    again = await postback(client, click_id=click_id, txn_id="t2", token=token)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert await Conversion.count() == 2


async def test_caps_per_publisher_leave_other_publishers_free(app, client, settings):
    s, click_id, token = await campaign_and_click(
        settings, client, cap_publisher_conversions_daily="1", cap_conversions_monthly="3"
    )
    pub_id, pub_email = await make_publisher(settings)
    other = CurrentUser(id=pub_id, email=pub_email, role=Role.publisher, via="test")
    await campaigns.join(other, s.campaign_id)
    from server.campaigns.tables import Link

    other_code = (await Link.select(Link.code).where(Link.publisher == pub_id).first())["code"]
    other_click = await click_id_of(client, other_code)
    assert (await postback(client, click_id=click_id, txn_id="t1", token=token)).status_code == 200
    refused(await postback(client, click_id=click_id, txn_id="t2", token=token), 409, "cap_reached")
    assert (await postback(client, click_id=other_click, txn_id="t3", token=token)).status_code == 200
    assert await Conversion.count() == 2


# --- duplicates ---------------------------------------------------------------------------------------------


async def test_a_duplicate_txn_id_returns_the_first_result_and_counts_once(app, client, settings):
    _, click_id, token = await campaign_and_click(
        settings,
        client,
        goal_0_model="revshare",
        goal_0_advertiser="10",
        goal_1_name="lead",
        goal_1_model="cpl",
        goal_1_advertiser="1.00",
    )
    first = (await postback(client, click_id=click_id, txn_id="order-9", token=token, amount="5000")).json()
    again = await postback(client, click_id=click_id, txn_id="order-9", token=token, amount="9999", goal="lead")
    assert again.status_code == 200
    body = again.json()
    assert body["status"] == "duplicate" and body["duplicate"] is True
    assert {k: v for k, v in body.items() if k not in ("status", "duplicate", "message")} == {
        k: v for k, v in first.items() if k not in ("status", "duplicate", "message")
    }
    assert body["payout"]["sale_amount_minor"] == 5000
    assert await Conversion.count() == 1


async def _concurrent_duplicates(client, click_id: str, token: str) -> None:
    responses = await asyncio.gather(
        *(postback(client, click_id=click_id, txn_id="same-order", token=token) for _ in range(10))
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert sorted(b["status"] for b in bodies) == ["accepted"] + ["duplicate"] * 9
    assert len({b["conversion_id"] for b in bodies}) == 1
    assert await Conversion.count() == 1


async def test_concurrent_duplicates_count_once(app, client, settings):
    _, click_id, token = await campaign_and_click(settings, client)
    await _concurrent_duplicates(client, click_id, token)


async def test_concurrent_duplicates_count_once_on_a_capped_campaign(app, client, settings):
    _, click_id, token = await campaign_and_click(settings, client, cap_conversions_daily="5")
    await _concurrent_duplicates(client, click_id, token)


async def test_concurrent_reports_never_exceed_a_cap(app, client, settings):
    _, click_id, token = await campaign_and_click(
        settings, client, cap_conversions_daily="3", goal_0_per_click="10"
    )  # the cap binds, not the click's limit
    responses = await asyncio.gather(
        *(postback(client, click_id=click_id, txn_id=f"o{i}", token=token) for i in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 3 + [409] * 5
    assert await Conversion.count() == 3


# --- RevShare rounding --------------------------------------------------------------------------------------


def _sale_amounts() -> list[int]:
    """Sale amounts drawn by Hypothesis (edges included): collected, then sent through HTTP below."""
    drawn: list[int] = []

    @given(st.one_of(st.integers(0, 10**12), st.integers(0, 10_000)))
    @hsettings(max_examples=40, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    def collect(amount: int) -> None:
        drawn.append(amount)

    collect()
    return sorted(set(drawn) | {0, 1, 9_999, 10**12})


async def test_revshare_rounding_conserves_every_cent(app, client, settings):
    # 12.34 % from the advertiser, 7.77 % to the publisher: both rarely land on a whole cent.
    # Every sale on one click, up to the intake's own limit of 10**12 minor units.
    _, click_id, token = await campaign_and_click(
        settings,
        client,
        goal_0_model="revshare",
        goal_0_advertiser="12.34",
        goal_0_publisher="7.77",
        goal_0_per_click="100",
        goal_0_max_sale=str(10**10),
    )
    amounts = _sale_amounts()
    for i, sale in enumerate(amounts):
        body = (await postback(client, click_id=click_id, txn_id=f"sale-{i}", token=token, amount=sale)).json()
        payout = body["payout"]
        assert (payout["price_minor"], payout["publisher_minor"], payout["network_minor"]) == money.revshare_split(
            sale, 1234, 777
        )
        assert payout["price_minor"] == payout["publisher_minor"] + payout["network_minor"]
        assert payout["price_minor"] == sale * 1234 // 10_000 and payout["network_minor"] >= 0
    rows = await conversions()
    assert [r["sale_amount_minor"] for r in rows] == amounts
    for r in rows:
        assert (r["advertiser_amount_minor"], r["publisher_amount_minor"], r["network_amount_minor"]) == (
            money.revshare_split(r["sale_amount_minor"], 1234, 777)
        )
    assert sum(r["advertiser_amount_minor"] for r in rows) == sum(
        r["publisher_amount_minor"] + r["network_amount_minor"] for r in rows
    )
