"""Publishers' payout history: each of their own payout lines with its status in words and its amounts
(paid with the Stripe transfer, failed with the reason, held with finance's reason, on its way), the
periods they were carried over and why, one line's own page, and the same as JSON with an API key.
Never another publisher's lines, nor finance's internal flags."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role, User
from server.billing import stripe_api
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.payouts import execute, history, reversals, review
from server.payouts import service as payouts
from server.payouts.account_tables import PayoutAccount
from server.payouts.tables import PayoutLine
from tests.conversions.factories import api_key
from tests.factories import login, make_advertiser, make_staff
from tests.payouts.factories import (
    after_next_cutoff,
    connected_account,
    earning_publisher,
    fresh_line_ids,
    made,
    transfer_posts,
)

API = "/api/v1/publisher/payouts"


async def email_of(user_id: int) -> str:
    return (await User.select(User.email).where(User.id == user_id).first())["email"]


async def signed_in(new_client, publisher_id: int):
    client = new_client()
    await login(client, await email_of(publisher_id))
    return client


async def staff(role: Role = Role.finance) -> CurrentUser:
    user_id, email = await make_staff(role)
    return CurrentUser(id=user_id, email=email, role=role, via="test")


async def publisher_key(publisher_id: int) -> dict[str, str]:
    user = CurrentUser(id=publisher_id, email=await email_of(publisher_id), role=Role.publisher, via="test")
    return {"authorization": f"Bearer {await api_key(user)}"}


async def ready_publisher(settings, stripe_local, available: int, *, owed: int = 0) -> tuple[int, str]:
    """A publisher with money to be paid and a real (stand-in) connected account that can receive it."""
    publisher_id = await earning_publisher(settings, available, owed=owed)
    account = await connected_account(stripe_local)
    await PayoutAccount.update({PayoutAccount.stripe_account_id: account}).where(
        PayoutAccount.publisher == publisher_id
    )
    return publisher_id, account


async def line_of(publisher_id: int) -> dict:
    return (
        await PayoutLine.select()
        .where(PayoutLine.publisher == publisher_id)
        .order_by(PayoutLine.id, ascending=False)
        .first()
    )


def rows(page_html: str, testid: str = "payout-history-line") -> list[dict[str, str]]:
    """Each history row of the page: its data attributes and its text, as a person reads it."""
    found = []
    for match in re.finditer(rf'<tr data-testid="{testid}" ([^>]*)>(.*?)</tr>', page_html, re.S):
        attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', match.group(1)))
        text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(2)))).strip()
        found.append({**attrs, "text": text, "html": match.group(2)})
    return found


def text_of(page_html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</', page_html, re.S)
    return html.unescape(match.group(1)).strip() if match else ""


async def test_each_publisher_sees_their_payout_paid_failed_held_or_carried_over_in_words(
    new_client, settings, stripe_local
):
    await fresh_line_ids()
    paid, _ = await ready_publisher(settings, stripe_local, 9_000, owed=1_500)
    refused, refused_account = await ready_publisher(settings, stripe_local, 12_000)
    held, _ = await ready_publisher(settings, stripe_local, 20_000)
    small = await earning_publisher(settings, 1_000)
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    editor, approver = await staff(), await staff()
    await review.hold_line(editor, batch_id, (await line_of(held))["id"], "traffic under review")
    await review.approve(approver, batch_id)
    stripe_local.control(
        "POST", f"/_local/accounts/{refused_account}/fail_next_transfer", code="transfers_not_allowed", status="400"
    )
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"

    # Paid: 90.00 available less the 15.00 owed, with the Stripe transfer.
    line = await line_of(paid)
    page = (await (await signed_in(new_client, paid)).get("/publisher/payouts")).text
    [row] = rows(page)
    assert (row["id"], row["status"], row["currency"]) == (str(line["id"]), "paid", "EUR")
    assert line["stripe_transfer_id"].startswith("tr_")
    assert "Paid" in row["text"] and "€75.00" in row["text"] and "€15.00" in row["text"]
    assert line["stripe_transfer_id"] in row["text"]
    assert len(made(transfer_posts(stripe_local, line["id"]))) == 1

    # Failed: the reason in words, the money back in the balance, no transfer.
    line = await line_of(refused)
    page = (await (await signed_in(new_client, refused)).get("/publisher/payouts")).text
    [row] = rows(page)
    assert (row["id"], row["status"]) == (str(line["id"]), "failed")
    assert "€120.00" in row["text"] and "Failed" in row["text"]
    assert "Stripe does not allow transfers to your account right now" in row["text"]
    assert "back in your available balance" in row["text"] and "tr_" not in row["text"]
    assert await ledger.balance(K.publisher_available, "EUR", refused) == 12_000

    # Held: finance's reason, the money back in the balance.
    page = (await (await signed_in(new_client, held)).get("/publisher/payouts")).text
    [row] = rows(page)
    assert row["status"] == "held" and "€200.00" in row["text"]
    assert "Held by finance" in row["text"] and "traffic under review" in row["text"]
    assert await ledger.balance(K.publisher_available, "EUR", held) == 20_000

    # Carried over: no line, the period and why.
    page = (await (await signed_in(new_client, small)).get("/publisher/payouts")).text
    assert rows(page) == [] and 'data-testid="payout-history-none"' in page
    [carried] = rows(page, "payout-carried")
    assert carried["reason"] == "below_minimum"
    assert "below the minimum payout" in carried["text"]
    assert "€10.00" in carried["text"] and "€50.00" in carried["text"]
    assert await ledger.check() == []


async def test_one_payout_has_its_own_page_with_the_amounts_and_the_transfer(new_client, settings, stripe_local):
    await fresh_line_ids()
    publisher, _ = await ready_publisher(settings, stripe_local, 9_000, owed=1_500)
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    await review.approve(await staff(), batch_id)
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
    line = await line_of(publisher)
    browser = await signed_in(new_client, publisher)

    listing = (await browser.get("/publisher/payouts")).text
    assert f'href="/publisher/payouts/lines/{line["id"]}"' in listing
    page = await browser.get(f"/publisher/payouts/lines/{line['id']}")
    assert page.status_code == 200
    assert f'data-id="{line["id"]}" data-status="paid"' in page.text
    assert text_of(page.text, "payout-line-status") == "Paid"
    assert text_of(page.text, "payout-line-amount") == "€75.00"
    assert text_of(page.text, "payout-line-available") == "€90.00"
    assert text_of(page.text, "payout-line-netted") == "€15.00"
    assert text_of(page.text, "payout-line-transfer") == line["stripe_transfer_id"]
    assert await ledger.check() == []


async def test_a_payout_waiting_for_approval_or_being_sent_is_on_its_way(new_client, settings):
    publisher = await earning_publisher(settings, 10_000)
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    line = await line_of(publisher)
    browser = await signed_in(new_client, publisher)
    [row] = rows((await browser.get("/publisher/payouts")).text)
    assert row["status"] == "processing" and "On its way" in row["text"] and "€100.00" in row["text"]
    assert "Finance is reviewing" in row["text"]

    await review.approve(await staff(), batch_id)
    page = await browser.get(f"/publisher/payouts/lines/{line['id']}")
    assert 'data-status="processing"' in page.text
    assert "being sent to your Stripe account" in text_of(page.text, "payout-line-detail")
    assert 'data-testid="payout-line-transfer"' not in page.text


async def test_another_publishers_payouts_are_not_on_the_page_the_line_page_or_the_api(new_client, settings):
    mine = await earning_publisher(settings, 10_000)
    theirs = await earning_publisher(settings, 30_000)
    theirs_small = await earning_publisher(settings, 2_000)
    await payouts.prepare_due(after_next_cutoff())
    my_line, their_line = await line_of(mine), await line_of(theirs)
    browser = await signed_in(new_client, mine)

    page = (await browser.get("/publisher/payouts")).text
    assert [r["id"] for r in rows(page)] == [str(my_line["id"])]
    assert rows(page, "payout-carried") == [] and "€300.00" not in page and "€20.00" not in page
    refused = await browser.get(f"/publisher/payouts/lines/{their_line['id']}")
    assert refused.status_code == 404 and "€300.00" not in refused.text
    assert (await browser.get("/publisher/payouts/lines/999999")).status_code == 404

    body = (await new_client().get(API, headers=await publisher_key(mine))).json()
    assert [line["id"] for line in body["lines"]] == [my_line["id"]] and body["carried_over"] == []
    body = (await new_client().get(API, headers=await publisher_key(theirs_small))).json()
    assert body["lines"] == [] and [c["balance_minor"] for c in body["carried_over"]] == [2_000]


async def test_the_api_lists_the_same_payouts_and_carry_overs_without_finances_flags(new_client, settings):
    netted = await earning_publisher(settings, 9_000, owed=1_500)
    on_hold = await earning_publisher(settings, 40_000)
    await payouts.set_publisher_terms(on_hold, actor_id=None, on_hold=True, hold_reason="identity check")
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    line = await line_of(netted)
    assert line["first_payout"] is True  # a flag finance sees; the publisher never does

    response = await new_client().get(API, headers=await publisher_key(netted))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["page"], body["per_page"], body["has_more"], body["carried_over"]) == (1, history.PAGE_SIZE, False, [])
    [item] = body["lines"]
    assert set(item) == {
        "id",
        "period_start",
        "period_end",
        "currency",
        "available_minor",
        "netted_minor",
        "amount_minor",
        "status",
        "status_words",
        "detail",
        "stripe_transfer_id",
        "prepared_at",
        "updated_at",
        "returned_minor",
    }
    assert (
        item["id"],
        item["currency"],
        item["available_minor"],
        item["netted_minor"],
        item["amount_minor"],
        item["status"],
        item["status_words"],
        item["stripe_transfer_id"],
    ) == (line["id"], "EUR", 9_000, 1_500, 7_500, "processing", "On its way", "")
    batch = await review.batch(batch_id)
    assert item["period_end"].startswith(batch["period_end"].strftime("%Y-%m-%dT%H:%M"))
    for internal in ("first_payout", "large_change", "previous_amount", "attempt", "acct_", "batch"):
        assert internal not in response.text

    # The page shows the same line the API lists.
    page = (await (await signed_in(new_client, netted)).get("/publisher/payouts")).text
    assert [r["id"] for r in rows(page)] == [str(item["id"])]

    # Carried over on hold: the reason in words, never finance's own note.
    body = (await new_client().get(API, headers=await publisher_key(on_hold))).json()
    assert body["lines"] == []
    [carried] = body["carried_over"]
    assert (carried["currency"], carried["balance_minor"], carried["reason"], carried["reason_words"]) == (
        "EUR",
        40_000,
        "on_hold",
        "payouts are on hold",
    )
    page = (await (await signed_in(new_client, on_hold)).get("/publisher/payouts")).text
    [row] = rows(page, "payout-carried")
    assert row["reason"] == "on_hold" and "payouts are on hold" in row["text"]
    assert await ledger.check() == []


async def test_the_api_answers_only_a_publisher_key(new_client, settings):
    publisher = await earning_publisher(settings, 10_000)
    advertiser_id, advertiser_email = await make_advertiser()
    advertiser = CurrentUser(id=advertiser_id, email=advertiser_email, role=Role.advertiser, via="test")
    api = new_client()
    refused = await api.get(API, headers={"authorization": f"Bearer {await api_key(advertiser)}"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "wrong_role"
    assert (await api.get(API)).status_code == 401
    bad_page = await api.get(API, params={"page": "0"}, headers=await publisher_key(publisher))
    assert bad_page.status_code == 400 and "page" in bad_page.json()["error"]["message"]
    # The session cookie is no API credential.
    browser = await signed_in(new_client, publisher)
    assert (await browser.get(API)).status_code == 401


async def more_available(publisher_id: int, amount: int, n: int) -> None:
    """`amount` more for the publisher to be paid, earned and released through the ledger's postings."""
    advertiser_id, _ = await make_advertiser()
    await postings.fund_advertiser(advertiser_id, amount, "EUR", reference_id=n, key=f"history-fund:{n}")
    await postings.approve_earning(
        advertiser_id=advertiser_id,
        publisher_id=publisher_id,
        price=amount,
        payout=amount,
        currency="EUR",
        reference_type="manual",
        reference_id=n,
        key=f"history-earn:{n}",
    )
    await postings.release_earning(
        publisher_id, amount, "EUR", reference_type="manual", reference_id=n, key=f"history-release:{n}"
    )


async def test_the_history_is_newest_first_a_page_at_a_time(new_client, settings, monkeypatch):
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    publisher = await earning_publisher(settings, 10_000)
    first_period = after_next_cutoff()
    for n in range(3):  # three monthly periods, one payout in each
        if n:
            await more_available(publisher, 10_000 + n * 1_000, n)
        assert (await payouts.prepare_due(first_period + timedelta(days=32 * n))).lines == 1
    ids = await PayoutLine.select(PayoutLine.id).order_by(PayoutLine.id).output(as_list=True)
    browser = await signed_in(new_client, publisher)

    first = (await browser.get("/publisher/payouts")).text
    assert [(r["id"], r["status"]) for r in rows(first)] == [(str(ids[2]), "processing"), (str(ids[1]), "processing")]
    assert "€120.00" in first and "€110.00" in first and "€100.00" not in first
    assert 'href="/publisher/payouts?page=2"' in first and "?page=0" not in first
    second = (await browser.get("/publisher/payouts", params={"page": "2"})).text
    assert [r["id"] for r in rows(second)] == [str(ids[0])] and "€100.00" in second
    assert 'href="/publisher/payouts?page=1"' in second and "?page=3" not in second
    assert (await browser.get("/publisher/payouts", params={"page": "0"})).status_code == 400

    body = (await new_client().get(API, params={"page": "2"}, headers=await publisher_key(publisher))).json()
    assert ([line["amount_minor"] for line in body["lines"]], body["page"], body["has_more"]) == ([10_000], 2, False)
    assert await ledger.check() == []


async def paid_publisher(settings, stripe_local, amount: int) -> tuple[int, dict]:
    """A publisher paid `amount` in an approved, executed batch: their id and their paid line."""
    await fresh_line_ids()
    publisher, _ = await ready_publisher(settings, stripe_local, amount)
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    await review.approve(await staff(), batch_id)
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
    return publisher, await line_of(publisher)


async def test_a_payout_reversed_at_stripe_shows_as_returned_with_the_money_back(new_client, settings, stripe_local):
    publisher, line = await paid_publisher(settings, stripe_local, 10_000)
    transfer = await stripe_local.client().v1.transfers.reversals.create_async(
        line["stripe_transfer_id"], options={"idempotency_key": f"history-reversal:{line['id']}"}
    )
    reversed_transfer = await stripe_local.client().v1.transfers.retrieve_async(transfer.transfer)
    await reversals.transfer_reversed(reversed_transfer.to_dict())

    page = (await (await signed_in(new_client, publisher)).get("/publisher/payouts")).text
    [row] = rows(page)
    assert row["status"] == "returned" and "Returned (reversed at Stripe)" in row["text"]
    assert "back in your available balance" in row["text"] and line["stripe_transfer_id"] in row["text"]
    assert await ledger.balance(K.publisher_available, "EUR", publisher) == 10_000
    assert await ledger.check() == []


async def test_a_payout_partly_reversed_at_stripe_stays_paid_and_says_how_much_came_back(
    new_client, settings, stripe_local
):
    publisher, line = await paid_publisher(settings, stripe_local, 10_000)
    reversal = await stripe_local.client().v1.transfers.reversals.create_async(
        line["stripe_transfer_id"], {"amount": 2_500}, {"idempotency_key": f"partial-reversal:{line['id']}"}
    )
    partly = await stripe_local.client().v1.transfers.retrieve_async(reversal.transfer)
    await reversals.transfer_reversed(partly.to_dict())

    [row] = rows((await (await signed_in(new_client, publisher)).get("/publisher/payouts")).text)
    assert row["status"] == "paid" and "reversed €25.00 of it" in row["text"]
    answer = await new_client().get(API, headers=await publisher_key(publisher))
    [api_line] = answer.json()["lines"]
    assert (api_line["status"], api_line["amount_minor"], api_line["returned_minor"]) == ("paid", 10_000, 2_500)
    assert await ledger.balance(K.publisher_available, "EUR", publisher) == 2_500
    assert await ledger.check() == []
