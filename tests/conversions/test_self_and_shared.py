"""The publisher-side fraud rules of issue 18: a publisher converting on their own link
(self_conversion: the click's visitor hash is one their own logged-in session had that day) and two
publishers paid into one bank account (shared_payout_account: both held as a whole). Real requests:
the publisher's browser logs in and clicks through the redirect, the advertiser's postback reports,
Stripe's signed Connect webhook tells the bank account; the approval job and the review queue decide.
Money: a held conversion is never charged, a released one once, a rejected one never; the ledger
checks clean."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.campaigns import service as campaigns
from server.campaigns.tables import Link
from server.conversions import approval
from server.conversions.tables import Conversion, ConversionFlag, PublisherHold, PublisherVisitor
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from server.payouts import service as payouts
from server.payouts.tables import CarryReason
from tests.billing.helpers import sign
from tests.conversions.factories import BROWSER, postback, secrets_of
from tests.factories import error_text, login, post_form, staff_client
from tests.tracking.factories import campaign_with_link

PHONE = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36"
)
FINANCE_QUEUE = "/finance/review"


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


async def click(browser, code: str) -> str:
    response = await browser.get(f"/c/{code}", follow_redirects=False)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["click_id"][0]


async def report(client, click_id: str, txn_id: str, token: str) -> int:
    response = await postback(client, click_id=click_id, txn_id=txn_id, token=token)
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    return response.json()["conversion_id"]


async def row(conversion_id: int) -> dict:
    return await Conversion.select().where(Conversion.id == conversion_id).first()


async def charged(conversion_id: int) -> int:
    return await LedgerTxn.count().where(
        LedgerTxn.reference_type == "conversion", LedgerTxn.reference_id == conversion_id
    )


def browser_at(new_client, ip: str, user_agent: str):
    browser = new_client()
    browser._transport.client = (ip, 51000)
    browser.headers["user-agent"] = user_agent
    return browser


async def own_and_readers_conversion(app, client, new_client, settings, **campaign):
    """A funded campaign; its publisher, logged in on their phone, clicks their own link; a reader
    on another network clicks it too; both convert at once (before the click batch is stored)."""
    setup = await campaign_with_link(settings, **campaign)
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    await postings.fund_advertiser(setup.advertiser.id, 100_000, "EUR", reference_id=1, key="fund-self")
    phone = browser_at(new_client, "192.0.2.44", PHONE)
    await login(phone, setup.publisher_email)
    assert (await phone.get("/publisher")).status_code == 200
    own = await report(client, await click(phone, setup.code), "own-order", token)
    reader = browser_at(new_client, "198.51.100.9", PHONE)  # the same phone browser on another network
    theirs = await report(client, await click(reader, setup.code), "reader-order", token)
    return setup, own, theirs


async def test_a_publisher_converting_on_their_own_link_is_held_and_never_charged(app, client, new_client, settings):
    # The click buffer's flush waits on its lock: the clicks stay unstored until the first approval has run,
    # however slowly a loaded machine gets there (its background flush comes every 0.5 s otherwise).
    async with app.state.click_buffer._lock:
        setup, own, theirs = await own_and_readers_conversion(app, client, new_client, settings, hold_days=0)
        [seen] = await PublisherVisitor.select().where(PublisherVisitor.publisher == setup.publisher.id)
        # The conversions came before their clicks were stored: the approval waits rather than pay unchecked.
        outcome = await approval.run(now=datetime.now(UTC))
    assert outcome.approved == 0 and (await row(own))["status"] == (await row(theirs))["status"] == "pending"
    assert await charged(own) == await charged(theirs) == 0
    await app.state.click_buffer.flush()
    outcome = await approval.run(now=later())
    assert outcome.approved == 1 and (await row(theirs))["status"] == "approved"
    mine = await row(own)
    assert (mine["status"], mine["held"]) == ("pending", True) and await charged(own) == 0
    [flag] = await ConversionFlag.select().where(ConversionFlag.conversion == own)
    evidence = json.loads(flag["evidence"])
    assert flag["rule"] == "self_conversion" and evidence["click_visitor_hash_prefix"] == seen["visitor_hash"][:8]
    assert await ledger.balance(K.publisher_available, "EUR", setup.publisher.id) == 800
    assert await ledger.check() == []

    # Finance (and the advertiser) see it with its evidence, and reject it; the publisher sees why.
    finance, _ = await staff_client(new_client, Role.finance, first_page=FINANCE_QUEUE)
    page = await finance.get(FINANCE_QUEUE)
    assert f'data-conversion-id="{own}"' in page.text and 'data-rule="self_conversion"' in page.text
    rejected = await post_form(finance, f"{FINANCE_QUEUE}/{own}/reject", {"reason": "Ordered on your own link"})
    assert rejected.status_code == 200, rejected.text
    assert (await row(own))["status"] == "rejected"
    assert (await approval.run(now=later())).approved == 0 and await charged(own) == 0
    assert await ledger.check() == []
    phone = browser_at(new_client, "192.0.2.44", PHONE)
    await login(phone, setup.publisher_email)
    assert "Ordered on your own link" in (await phone.get("/publisher/conversions")).text


async def test_the_reconcile_job_holds_a_self_conversion_before_its_hold_ends(app, client, new_client, settings):
    setup, own, theirs = await own_and_readers_conversion(app, client, new_client, settings, hold_days=30)
    await app.state.click_buffer.flush()
    outcome = await approval.run(now=later())
    assert outcome.self_held == 1 and outcome.approved == 0
    assert (await row(own))["held"] is True and (await row(theirs))["held"] is False
    advertiser = new_client()
    await login(advertiser, setup.advertiser.email)
    page = await advertiser.get("/advertiser/review")
    assert re.findall(r'data-testid="held" data-conversion-id="(\d+)"', page.text) == [str(own)]
    # A second run adds no second flag.
    assert (await approval.run(now=later())).self_held == 0
    assert await ConversionFlag.count().where(ConversionFlag.conversion == own) == 1


async def test_the_advertiser_can_switch_self_conversion_off_for_their_campaign(app, client, new_client, settings):
    setup, own, theirs = await own_and_readers_conversion(app, client, new_client, settings, hold_days=0)
    advertiser = new_client()
    await login(advertiser, setup.advertiser.email)
    await advertiser.get(f"/advertiser/campaigns/{setup.campaign_id}/rules")
    form = {
        "too_fast.enabled": "1",
        "rate_anomaly.enabled": "1",
        "conversion_rate.enabled": "1",
    }  # self_conversion unticked
    saved = await post_form(advertiser, f"/advertiser/campaigns/{setup.campaign_id}/rules", form)
    assert saved.status_code == 200 and "self_conversion.enabled" in saved.text
    await app.state.click_buffer.flush()
    assert (await approval.run(now=later())).approved == 2
    assert await ConversionFlag.count() == 0 and await ledger.check() == []


async def test_an_ordinary_reader_on_the_publishers_own_browser_build_elsewhere_is_not_held(
    app, client, new_client, settings
):
    """Same browser build, another /24: another visitor. (Same /24 and build: the same visitor, which
    is what the README says the identity cannot tell apart.)"""
    setup = await campaign_with_link(settings, hold_days=0)
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    await postings.fund_advertiser(setup.advertiser.id, 10_000, "EUR", reference_id=1, key="fund-reader")
    phone = browser_at(new_client, "192.0.2.44", BROWSER)
    await login(phone, setup.publisher_email)
    await phone.get("/publisher")
    ids = [
        await report(client, await click(browser_at(new_client, f"192.0.{n}.44", BROWSER), setup.code), f"o{n}", token)
        for n in (3, 4)
    ]
    await app.state.click_buffer.flush()
    assert (await approval.run(now=later())).approved == 2
    assert [(await row(i))["held"] for i in ids] == [False, False]


# --- shared payout account ------------------------------------------------------------------------


async def connected_publisher(new_client, settings, stripe_local):
    """A publisher who set up payouts (a Connect account at the stand-in); their browser and ids."""
    from tests.payouts.test_connect import publisher_client, set_up, stored

    browser, publisher_id = await publisher_client(new_client, settings)
    await set_up(browser)
    return browser, publisher_id, (await stored(publisher_id))["stripe_account_id"]


async def bank_account_event(client, settings, account_id: str, fingerprint: str, n: int) -> None:
    """Stripe's signed account.updated for a connected account whose bank account has `fingerprint`."""
    account = {
        "id": account_id,
        "object": "account",
        "country": "DE",
        "default_currency": "eur",
        "details_submitted": True,
        "payouts_enabled": True,
        "requirements": {"currently_due": [], "disabled_reason": None},
        "external_accounts": {
            "object": "list",
            "data": [{"id": f"ba_{n}", "object": "bank_account", "last4": "3000", "fingerprint": fingerprint}],
        },
    }
    payload = json.dumps(
        {
            "id": f"evt_bank_{n}",
            "object": "event",
            "type": "account.updated",
            "account": account_id,
            "created": int(datetime.now(UTC).timestamp()),
            "data": {"object": account},
            "livemode": False,
            "api_version": "2024-06-20",
        }
    ).encode()
    answer = await client.post(
        "/stripe/connect-webhook",
        content=payload,
        headers={"stripe-signature": sign(payload, settings.stripe_connect_webhook_secret)},
    )
    assert answer.status_code == 200, answer.text


async def process_events(settings) -> list[str]:
    from tests.payouts.test_connect import process

    return await process(settings)


async def test_two_publishers_paid_into_one_bank_account_are_both_held_until_finance_decides(
    app, client, new_client, settings, stripe_local
):
    alice, alice_id, alice_account = await connected_publisher(new_client, settings, stripe_local)
    bob, bob_id, bob_account = await connected_publisher(new_client, settings, stripe_local)
    carol, carol_id, carol_account = await connected_publisher(new_client, settings, stripe_local)
    await bank_account_event(client, settings, alice_account, "FpSameIban0001", 1)
    await bank_account_event(client, settings, carol_account, "FpOtherIban002", 2)
    assert await process_events(settings) == ["account state stored", "account state stored"]
    assert await PublisherHold.count() == 0  # different bank accounts: nobody held
    await bank_account_event(client, settings, bob_account, "FpSameIban0001", 3)
    assert await process_events(settings) == ["account state stored"]
    holds = await PublisherHold.select().order_by(PublisherHold.publisher)
    assert [(h["publisher"], h["rule"], h["decision"]) for h in holds] == [
        (alice_id, "shared_payout_account", ""),
        (bob_id, "shared_payout_account", ""),
    ]
    assert json.loads(holds[0]["evidence"])["shared_with"][0]["stripe_account_id"] == bob_account
    # The same event again holds nobody twice.
    await bank_account_event(client, settings, bob_account, "FpSameIban0001", 4)
    await process_events(settings)
    assert await PublisherHold.count() == 2

    # Bob's conversions are not approved while he is held, nor paid out; Alice's payout is carried over.
    setup = await campaign_with_link(settings, hold_days=0)
    await campaigns.join(CurrentUser(id=bob_id, email="", role=Role.publisher, via="test"), setup.campaign_id)
    code = (await Link.select(Link.code).where(Link.campaign == setup.campaign_id, Link.publisher == bob_id).first())[
        "code"
    ]
    token = (await secrets_of(setup.campaign_id))["postback_secret"]
    await postings.fund_advertiser(setup.advertiser.id, 10_000, "EUR", reference_id=1, key="fund-shared")
    bobs = [await report(client, await click(browser_at(new_client, "198.51.100.7", BROWSER), code), "b1", token)]
    others = [await report(client, await click(client, setup.code), "o1", token)]
    await app.state.click_buffer.flush()
    assert (await approval.run(now=later())).approved == 1
    assert (await row(others[0]))["status"] == "approved" and (await row(bobs[0]))["status"] == "pending"
    assert await charged(bobs[0]) == 0
    await postings.approve_earning(
        advertiser_id=setup.advertiser.id,
        publisher_id=alice_id,
        price=5_000,
        payout=5_000,
        currency="EUR",
        reference_type="manual",
        reference_id=1,
        key="alice-earned",
        available=True,
    )
    [alice_standing] = [s for s in await payouts.standings("EUR", None) if s.publisher_id == alice_id]
    assert alice_standing.reason == CarryReason.on_hold

    # Finance sees both with the evidence; an advertiser does not see publisher holds.
    finance, _ = await staff_client(new_client, Role.finance, first_page=FINANCE_QUEUE)
    page = (await finance.get(FINANCE_QUEUE)).text
    assert re.findall(r'data-testid="held-publisher" data-hold-id="\d+" data-publisher-id="(\d+)"', page) == [
        str(alice_id),
        str(bob_id),
    ]
    assert "shared_payout_account" in page and 'data-testid="shared-with"' in page
    advertiser = new_client()
    await login(advertiser, setup.advertiser.email)
    assert "held-publisher" not in (await advertiser.get("/advertiser/review")).text
    alice_hold, bob_hold = (h["id"] for h in holds)
    no_reason = await post_form(finance, f"{FINANCE_QUEUE}/publishers/{bob_hold}/reject", {"reason": " "})
    assert no_reason.status_code == 422 and "reason" in error_text(no_reason.text)
    # Bob is rejected: his pending conversion is rejected with the reason, never charged.
    rejected = await post_form(
        finance, f"{FINANCE_QUEUE}/publishers/{bob_hold}/reject", {"reason": "Second account of one person"}
    )
    assert rejected.status_code == 200, rejected.text
    assert (await row(bobs[0]))["status"] == "rejected" and await charged(bobs[0]) == 0
    again = await post_form(finance, f"{FINANCE_QUEUE}/publishers/{bob_hold}/release", {})
    assert again.status_code == 409
    # Alice is released: her payout is no longer carried over for the hold.
    released = await post_form(finance, f"{FINANCE_QUEUE}/publishers/{alice_hold}/release", {"reason": "Family"})
    assert released.status_code == 200, released.text
    [alice_standing] = [s for s in await payouts.standings("EUR", None) if s.publisher_id == alice_id]
    assert alice_standing.reason != CarryReason.on_hold
    assert "Second account of one person" in (await bob.get("/publisher/conversions")).text
    actions = [e["action"] for e in await AuditEvent.select(AuditEvent.action).order_by(AuditEvent.id)]
    assert actions.count("publisher.held") == 2
    assert "publisher.hold_rejected" in actions and "publisher.hold_released" in actions
    assert await ledger.check() == []
    assert carol_id not in {h["publisher"] for h in await PublisherHold.select(PublisherHold.publisher)}
