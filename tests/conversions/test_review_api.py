"""The review queue's JSON API (/api/v1, API keys): the advertiser lists their held conversions
with the evidence and decides them; finance lists and decides held publishers; nobody decides
what they may not see; a rejection needs a reason; a decided item answers 409."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.conversions import approval, holds
from server.conversions.tables import Conversion, PublisherRule
from server.ledger import service as ledger
from server.ledger.tables import LedgerTxn
from tests.conversions.test_self_and_shared import own_and_readers_conversion
from tests.factories import login, make_advertiser, make_staff


async def key_of(user_id: int, email: str, role: Role) -> dict[str, str]:
    key = (await accounts.create_api_key(CurrentUser(id=user_id, email=email, role=role, via="test"), "review"))[1]
    return {"Authorization": f"Bearer {key}"}


async def test_the_advertiser_reviews_a_self_conversion_through_the_api(app, client, new_client, settings):
    setup, own, theirs = await own_and_readers_conversion(app, client, new_client, settings, hold_days=0)
    await app.state.click_buffer.flush()
    await approval.run(now=datetime.now(UTC) + timedelta(seconds=5))
    mine = await key_of(setup.advertiser.id, setup.advertiser.email, Role.advertiser)
    listed = await client.get("/api/v1/review/conversions", headers=mine)
    assert listed.status_code == 200, listed.text
    [held] = listed.json()["held"]
    assert held["id"] == own and held["publisher_id"] == setup.publisher.id
    assert [f["rule"] for f in held["flags"]] == ["self_conversion"]
    assert held["flags"][0]["evidence"]["click_visitor_hash_prefix"] == held["visitor_hash_prefix"] != ""
    other_id, other_email = await make_advertiser()
    other = await key_of(other_id, other_email, Role.advertiser)
    assert (await client.get("/api/v1/review/conversions", headers=other)).json() == {"held": []}
    stranger = await client.post(f"/api/v1/review/conversions/{own}/reject", json={"reason": "x"}, headers=other)
    assert stranger.status_code == 404 and stranger.json()["error"]["code"]
    blank = await client.post(f"/api/v1/review/conversions/{own}/reject", json={"reason": "   "}, headers=mine)
    assert blank.status_code == 400 and (await Conversion.select().where(Conversion.id == own).first())["held"]
    done = await client.post(f"/api/v1/review/conversions/{own}/reject", json={"reason": "Own order"}, headers=mine)
    assert done.status_code == 200 and done.json() == {"id": own, "decision": "rejected", "rejected_conversions": 0}
    again = await client.post(f"/api/v1/review/conversions/{own}/release", json={}, headers=mine)
    assert again.status_code == 409
    row = await Conversion.select().where(Conversion.id == own).first()
    assert (row["status"], row["status_reason"]) == ("rejected", "Own order")
    assert await LedgerTxn.count().where(LedgerTxn.reference_type == "conversion", LedgerTxn.reference_id == own) == 0
    assert await ledger.check() == []


async def test_advertisers_read_conversions_by_publishers_public_names_and_sites_never_their_email(
    app, client, new_client, settings
):
    setup, own, theirs = await own_and_readers_conversion(app, client, new_client, settings, hold_days=0)
    await app.state.click_buffer.flush()
    await approval.run(now=datetime.now(UTC) + timedelta(seconds=5))  # `own` is held for review
    browser = new_client()
    await login(browser, setup.advertiser.email)
    for path in ("/advertiser/conversions", "/advertiser/review"):
        page = await browser.get(path)
        assert page.status_code == 200, page.text
        assert setup.publisher_email not in page.text, path
        assert "Cooking Blog" in page.text and 'href="https://blog.affnet.example"' in page.text, path
    # The list's publisher filter reads names and sites: it cannot tell an advertiser whose address it is.
    found = await browser.get("/advertiser/conversions", params={"publisher": setup.publisher_email})
    assert f'data-conversion-id="{theirs}"' not in found.text
    found = await browser.get("/advertiser/conversions", params={"publisher": "cooking blog"})
    assert f'data-conversion-id="{theirs}"' in found.text

    answer = await client.get(
        "/api/v1/review/conversions", headers=await key_of(setup.advertiser.id, setup.advertiser.email, Role.advertiser)
    )
    assert answer.status_code == 200, answer.text
    assert setup.publisher_email not in answer.text
    [held] = answer.json()["held"]
    assert held["id"] == own and "publisher_email" not in held
    assert (held["publisher_name"], held["publisher_site"]) == ("Cooking Blog", "https://blog.affnet.example")


async def test_finance_reviews_held_publishers_through_the_api_and_advertisers_cannot(app, client, settings):
    from tests.factories import make_publisher

    publisher_id, _ = await make_publisher(settings)
    evidence = {publisher_id: {"shared_with": [{"publisher_id": 999, "email": "x@example.com"}]}}
    assert await holds.hold([publisher_id], PublisherRule.shared_payout_account, evidence) == [publisher_id]
    finance_id, finance_email = await make_staff(Role.finance)
    finance = await key_of(finance_id, finance_email, Role.finance)
    listed = await client.get("/api/v1/finance/review/publishers", headers=finance)
    assert listed.status_code == 200, listed.text
    [held] = listed.json()["held"]
    assert held["publisher_id"] == publisher_id and held["rule"] == "shared_payout_account"
    assert held["evidence"]["shared_with"][0]["email"] == "x@example.com"
    advertiser_id, advertiser_email = await make_advertiser()
    advertiser = await key_of(advertiser_id, advertiser_email, Role.advertiser)
    assert (await client.get("/api/v1/finance/review/publishers", headers=advertiser)).status_code == 403
    released = await client.post(
        f"/api/v1/finance/review/publishers/{held['id']}/release", json={"reason": "Checked"}, headers=finance
    )
    assert released.status_code == 200 and released.json()["decision"] == "released"
    assert await holds.held_publishers([publisher_id]) == set()
    assert (await client.get("/api/v1/finance/review/publishers", headers=finance)).json() == {"held": []}
