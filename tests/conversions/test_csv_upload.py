"""Advertisers decide on conversions with a CSV: a preview that changes nothing and names every bad
line, then an apply that charges once, re-prices RevShare sales by the one rounding rule, reverses
approved ones, and never reaches another advertiser's conversions."""

from __future__ import annotations

import re
from html import unescape

from server.audit.tables import AuditEvent
from server.campaigns import service as campaigns
from server.campaigns.tables import Link
from server.conversions import csv_upload
from server.conversions.tables import Conversion
from server.core import money
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerTxn
from tests.conversions.factories import campaign_and_click, click_id_of, next_reader, postback, secrets_of
from tests.conversions.test_review import browser_of, conversion_txns, decide, ids_of, pending_conversions
from tests.factories import csrf, error_text, login
from tests.tracking.factories import campaign_form

UPLOAD = "/advertiser/conversions/upload"
APPLY = "/advertiser/conversions/upload/apply"


async def upload(
    browser,
    text: str | bytes = "",
    *,
    as_file: bool = True,
    campaign: str = "",
    reason: str = "",
    with_csrf: bool = True,
):
    """Submit the upload form as a browser does: multipart, the CSV as a file or pasted."""
    await browser.get("/advertiser/conversions")
    data = {"campaign": campaign, "reason": reason, "text": "" if as_file else text}
    if with_csrf:
        data["_csrf_token"] = csrf(browser)
    body = text.encode() if isinstance(text, str) else text
    files = {"file": ("conversions.csv" if as_file else "", body if as_file else b"", "text/csv")}
    return await browser.post(UPLOAD, data=data, files=files, follow_redirects=False)


def apply_fields(html: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="/advertiser/conversions/upload/apply".*?</form>', html, re.S)
    assert form, "the preview has no Apply form"
    return {unescape(n): unescape(v) for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(0))}


async def apply(browser, preview_html: str, **changes: str):
    return await browser.post(APPLY, data={**apply_fields(preview_html), **changes}, follow_redirects=False)


def flat(html: str) -> str:
    """The page's text with runs of whitespace as one space, as a person reads it."""
    return " ".join(unescape(html).split())


def outcomes(html: str) -> dict[int, str]:
    """Line number -> outcome, from the line-by-line table."""
    return {
        int(line): outcome
        for line, outcome in re.findall(r'data-testid="upload-row" data-line="(\d+)" data-outcome="(\w+)"', html)
    }


def line_text(html: str, line: int) -> str:
    match = re.search(rf'data-testid="upload-row" data-line="{line}".*?</tr>', html, re.S)
    assert match, f"no line {line}"
    return flat(re.sub(r"<[^>]+>", " ", match.group(0)))


def errors_of(html: str) -> dict[int, str]:
    return {
        int(line): unescape(message)
        for line, message in re.findall(
            r'data-testid="upload-error" data-line="(\d+)"><td>\d+</td><td><code>.*?</code></td><td>(.*?)</td>', html
        )
    }


def count(html: str, name: str) -> int:
    return int(re.search(rf'data-testid="count-{name}">(\d+)<', html).group(1))


async def state() -> tuple:
    """Everything an upload could change: statuses, amounts, ledger transactions, audit events."""
    rows = await Conversion.select(
        Conversion.id,
        Conversion.status,
        Conversion.status_reason,
        Conversion.advertiser_amount_minor,
        Conversion.sale_amount_minor,
    ).order_by(Conversion.id)
    balances = await ledger.summary()
    return rows, await LedgerTxn.count(), await AuditEvent.count(), balances["balances"]


async def another_campaign(settings, client, setup, *, name: str, **overrides) -> tuple[int, str, str]:
    """A second campaign of the same advertiser, joined by the same publisher: (id, link code, token)."""
    campaign_id = await campaigns.create_campaign(setup.advertiser, campaign_form(name=name, **overrides))
    await campaigns.join(setup.publisher, campaign_id)
    link = await Link.select(Link.code).where(Link.campaign == campaign_id).first()
    return campaign_id, link["code"], (await secrets_of(campaign_id))["postback_secret"]


async def test_preview_says_what_each_line_will_do_and_changes_nothing(client, new_client, settings):
    setup = await pending_conversions(settings, client, 3, fund=5_000)
    browser = await browser_of(new_client, setup)
    before = await state()
    csv = (
        "txn_id,status,amount,reason\n"
        "Spring Boots-order-0,approved\n"
        "Spring Boots-order-1,rejected,,Order cancelled\n"
        "Spring Boots-order-2,reversed\n"
    )  # reversing a pending one rejects it, with the form's reason
    preview = await upload(browser, csv, reason="Returned")
    assert preview.status_code == 200, preview.text
    assert outcomes(preview.text) == {2: "approve", 3: "reject", 4: "reject"}
    assert "pending → approved, charges €10.00" in line_text(preview.text, 2)
    assert "pending → rejected" in line_text(preview.text, 3)
    assert "EUR: charges €10.00, refunds €0.00; your balance is €50.00" in flat(preview.text)
    assert "Apply 3 changes" in preview.text
    assert await state() == before
    assert await ledger.check() == []


async def test_apply_charges_once_and_a_second_apply_of_the_same_file_changes_nothing(client, new_client, settings):
    setup = await pending_conversions(settings, client, 3, fund=5_000)
    ids = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    csv = "Spring Boots-order-0,approved\nSpring Boots-order-1,approved\nSpring Boots-order-2,rejected,,Duplicate\n"
    preview = await upload(browser, csv, as_file=False)
    result = await apply(browser, preview.text)
    assert result.status_code == 200, result.text
    assert (count(result.text, "approved"), count(result.text, "rejected"), count(result.text, "skipped")) == (2, 1, 0)
    statuses = {
        r["id"]: (r["status"], r["status_reason"])
        for r in await Conversion.select(Conversion.id, Conversion.status, Conversion.status_reason)
    }
    assert statuses == {ids[0]: ("approved", ""), ids[1]: ("approved", ""), ids[2]: ("rejected", "Duplicate")}
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 3_000
    assert await conversion_txns() == 2
    assert await ledger.check() == []

    after_first = await state()
    again = await apply(browser, preview.text)
    assert again.status_code == 200
    assert (count(again.text, "approved"), count(again.text, "rejected"), count(again.text, "skipped")) == (0, 0, 3)
    assert await state() == after_first
    assert await ledger.check() == []


async def test_header_bom_crlf_spaces_and_case_are_tolerated(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=5_000)
    browser = await browser_of(new_client, setup)
    csv = "\ufeff Status , TXN_ID \r\n APPROVE ,  Spring Boots-order-0 \r\n\r\nReject,Spring Boots-order-1\r\n"
    preview = await upload(browser, csv.encode("utf-8"), reason="Test order")
    assert preview.status_code == 200, preview.text
    assert outcomes(preview.text) == {2: "approve", 4: "reject"}
    assert errors_of(preview.text) == {}


async def test_every_bad_line_is_reported_with_its_line_number_and_the_good_ones_still_apply(
    client, new_client, settings
):
    setup = await pending_conversions(settings, client, 5, fund=5_000)
    ids = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    await decide(browser, [ids[3]], "reject", "Test order")
    csv = "\n".join(
        [
            "txn_id,status,amount,reason",  # 1
            "Spring Boots-order-0,approved",  # 2 fine
            "no-such-order,approved",  # 3 unknown txn id
            "Spring Boots-order-1,paid",  # 4 bad status
            "Spring Boots-order-0,approved",  # 5 duplicate of line 2
            "Spring Boots-order-4,approved,8.00",  # 6 amount on a flat goal
            "Spring Boots-order-2,rejected",  # 7 no reason anywhere
            "Spring Boots-order-2,rejected,1.00,x",  # 8 duplicate of line 7
            "Spring Boots-order-3,approved",  # 9 rejected already: cannot approve
            ",approved",  # 10 empty txn id
            "a,b,c,d,e",  # 11 too many columns
            "Spring Boots-order-3,rejected,,Again",  # 12 duplicate of line 9
            "",
        ]
    )
    before = await state()
    preview = await upload(browser, csv)
    assert preview.status_code == 200, preview.text
    errors = errors_of(preview.text)
    assert set(errors) == {3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
    assert "No conversion of yours has this txn id" in errors[3]
    assert "“paid”" in errors[4] and "approved, rejected or reversed" in errors[4]
    assert "Line 2 already names this txn id" in errors[5]
    assert "flat €10.00" in errors[6]
    assert "reason is required" in errors[7]
    assert "Line 7 already names" in errors[8]
    assert "rejected: it cannot be approved" in errors[9]
    assert "txn id is empty" in errors[10]
    assert "5 columns" in errors[11]
    assert outcomes(preview.text)[2] == "approve"
    assert await state() == before

    result = await apply(browser, preview.text)
    assert count(result.text, "approved") == 1 and count(result.text, "errors") == 10
    statuses = [r["status"] for r in await Conversion.select(Conversion.status).order_by(Conversion.id)]
    assert statuses == ["approved", "pending", "pending", "rejected", "pending"]
    assert await ledger.check() == []


async def test_amount_errors_on_a_revshare_goal(client, new_client, settings):
    # 10 % of the sale from the advertiser, 8 % to the publisher; the sale reported was 100.00.
    setup = await revshare_conversions(settings, client, [10_000, 10_000, 10_000])
    browser = await browser_of(new_client, setup)
    csv = (
        "order-0,approved,abc\n"  # 1 not an amount
        "order-1,approved,12.345\n"  # 2 too many decimals
        "order-2,approved,100.01\n"  # 3 more than the sale reported
        "order-0,rejected,5.00,Nope\n"
    )  # 4 duplicate (and an amount on a rejection)
    preview = await upload(browser, csv)
    errors = errors_of(preview.text)
    assert "must be an amount such as 12.50" in errors[1]
    assert "more decimals than EUR allows" in errors[2]
    assert "more than the sale reported (€100.00)" in errors[3]
    assert "Line 1 already names" in errors[4]
    preview = await upload(browser, "order-1,rejected,5.00,Refunded\norder-2,approved,0\norder-2x,approved\n")
    errors = errors_of(preview.text)
    assert "leave it empty when rejecting" in errors[1]
    assert "would cost nothing" in errors[2]
    assert "No conversion of yours" in errors[3]
    assert "Apply" not in preview.text


async def revshare_conversions(settings, client, sales: list[int], *, fund: int = 100_000):
    client._transport.client = next_reader()
    setup, click_id, token = await campaign_and_click(
        settings, client, hold_days=30, goal_0_model="revshare", goal_0_advertiser="10", goal_0_publisher="8"
    )
    for i, sale in enumerate(sales):
        if i:
            client._transport.client = next_reader()
            click_id = await click_id_of(client, setup.code)
        response = await postback(client, click_id=click_id, txn_id=f"order-{i}", token=token, amount=sale)
        assert response.json()["status"] == "accepted", response.text
    await postings.fund_advertiser(setup.advertiser.id, fund, "EUR", reference_id=1, key=f"fund-{setup.campaign_id}")
    return setup


async def test_a_corrected_revshare_amount_reprices_before_approval_and_conserves_cents(client, new_client, settings):
    setup = await revshare_conversions(settings, client, [10_000, 10_000], fund=100_000)
    browser = await browser_of(new_client, setup)
    preview = await upload(browser, "order-0,approved,33.33\norder-1,approved,100.00\n")
    assert "corrected sale of €33.33 (was €100.00), charges €3.33 instead of €10.00" in line_text(preview.text, 1)
    assert "charges €10.00" in line_text(preview.text, 2)
    result = await apply(browser, preview.text)
    assert count(result.text, "approved") == 2
    rows = await Conversion.select().order_by(Conversion.id)
    assert [
        (r["sale_amount_minor"], r["advertiser_amount_minor"], r["publisher_amount_minor"], r["network_amount_minor"])
        for r in rows
    ] == [(3_333, *money.revshare_split(3_333, 1_000, 800)), (10_000, 1_000, 800, 200)]
    assert money.revshare_split(3_333, 1_000, 800) == (333, 266, 67)
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 100_000 - 333 - 1_000
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 266 + 800
    assert await ledger.balance(K.network_revenue, "EUR") == 67 + 200
    assert await AuditEvent.count().where(AuditEvent.action == "conversion.repriced") == 1
    assert await ledger.check() == []
    # The same file again: order-0's amount now is its sale amount; nothing is charged twice.
    again = await apply(browser, preview.text)
    assert count(again.text, "approved") == 0
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 100_000 - 333 - 1_000


async def test_rejecting_an_approved_conversion_in_the_file_reverses_it(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=5_000)
    ids = await ids_of(setup)
    browser = await browser_of(new_client, setup)
    await decide(browser, [ids[0]], "approve")
    preview = await upload(
        browser, "Spring Boots-order-0,rejected,,Customer refund\nSpring Boots-order-1,rejected,,Cancelled\n"
    )
    assert "approved → reversed, refunds €10.00" in line_text(preview.text, 1)
    assert "EUR: charges €0.00, refunds €10.00" in flat(preview.text)
    result = await apply(browser, preview.text)
    assert (count(result.text, "reversed"), count(result.text, "rejected")) == (1, 1)
    rows = await Conversion.select(Conversion.status, Conversion.status_reason).order_by(Conversion.id)
    assert [(r["status"], r["status_reason"]) for r in rows] == [
        ("reversed", "Customer refund"),
        ("rejected", "Cancelled"),
    ]
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 5_000
    assert await ledger.balance(K.publisher_pending, "EUR", setup.publisher.id) == 0
    assert await ledger.check() == []


async def test_approvals_the_balance_cannot_cover_stay_pending(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=1_500)
    browser = await browser_of(new_client, setup)
    preview = await upload(browser, "Spring Boots-order-0,approved\nSpring Boots-order-1,approved\n")
    assert "may not cover every approval" in preview.text
    result = await apply(browser, preview.text)
    assert (count(result.text, "approved"), count(result.text, "unfunded")) == (1, 1)
    assert await ledger.balance(K.advertiser_balance, "EUR", setup.advertiser.id) == 500
    assert await ledger.check() == []


async def test_a_txn_id_in_two_campaigns_is_ambiguous_until_a_campaign_is_chosen(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    other_id, code, token = await another_campaign(settings, client, setup, name="Winter Hats")
    client._transport.client = ("198.51.100.250", 4000)
    click_id = await click_id_of(client, code)
    assert (await postback(client, click_id=click_id, txn_id="Spring Boots-order-0", token=token)).json()[
        "status"
    ] == "accepted"
    browser = await browser_of(new_client, setup)
    preview = await upload(browser, "Spring Boots-order-0,approved\n")
    assert "in 2 of your campaigns (Spring Boots, Winter Hats)" in errors_of(preview.text)[1]
    chosen = await upload(browser, "Spring Boots-order-0,approved\n", campaign=str(other_id))
    assert outcomes(chosen.text) == {1: "approve"} and "Winter Hats" in line_text(chosen.text, 1)
    await apply(browser, chosen.text)
    statuses = {r["campaign"]: r["status"] for r in await Conversion.select(Conversion.campaign, Conversion.status)}
    assert statuses == {setup.campaign_id: "pending", other_id: "approved"}
    assert await ledger.check() == []


async def test_another_advertisers_conversions_cannot_be_touched(client, new_client, settings):
    mine = await pending_conversions(settings, client, 1, fund=5_000, name="Boots")
    theirs = await pending_conversions(settings, client, 1, fund=5_000, name="Hats")
    browser = await browser_of(new_client, mine)
    before = await state()
    preview = await upload(browser, "Hats-order-0,approved\n")
    assert "No conversion of yours has this txn id" in errors_of(preview.text)[1]
    assert "Apply" not in preview.text
    refused = await upload(browser, "Hats-order-0,approved\n", campaign=str(theirs.campaign_id))
    assert refused.status_code == 422 and "Pick a campaign" in error_text(refused.text)
    # Sealing their campaign into an Apply form by hand does not get past the campaign check either.
    own = await upload(browser, "Boots-order-0,approved\n")
    forged = await apply(browser, own.text, campaign=str(theirs.campaign_id))
    assert forged.status_code == 422
    assert await state() == before


async def test_an_altered_upload_is_refused_at_apply(client, new_client, settings):
    setup = await pending_conversions(settings, client, 2, fund=5_000)
    browser = await browser_of(new_client, setup)
    preview = await upload(browser, "Spring Boots-order-0,approved\n")
    before = await state()
    fields = apply_fields(preview.text)
    altered = csv_upload.seal(
        b"not the key", setup.advertiser.id, None, "", "Spring Boots-order-0,approved\nSpring Boots-order-1,approved\n"
    )[0]
    for changes in ({"content": altered}, {"reason": "changed"}, {"digest": "0" * 64}):
        response = await apply(browser, preview.text, **changes)
        assert response.status_code == 422, changes
        assert "changed after its preview" in error_text(response.text)
    assert fields["content"] != altered
    assert await state() == before


async def test_limits_and_unreadable_files_answer_422_and_change_nothing(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    browser = await browser_of(new_client, setup)
    before = await state()
    cases = {
        "larger than 1024 KB": ("x" * (csv_upload.MAX_BYTES + 1)).encode(),
        "more than 10,000 rows": "".join(f"order-{i},approved\n" for i in range(csv_upload.MAX_ROWS + 1)).encode(),
        "not UTF-8": "Spring Boots-order-0,approved\n".encode("utf-16"),
        "has no rows": b"txn_id,status\n\n",
        "Choose a CSV file": b"",
        "header names a column": b"txn_id,status,colour\nSpring Boots-order-0,approved,red\n",
    }
    for words, body in cases.items():
        response = await upload(browser, body)
        assert response.status_code == 422, words
        assert words in error_text(response.text), (words, error_text(response.text))
    both = await browser.post(
        UPLOAD,
        data={"text": "a,approved", "_csrf_token": csrf(browser)},
        files={"file": ("c.csv", b"b,approved", "text/csv")},
    )
    assert both.status_code == 422 and "not both" in error_text(both.text)
    assert await state() == before


async def test_an_upload_without_the_csrf_token_is_refused(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    browser = await browser_of(new_client, setup)
    before = await state()
    response = await upload(browser, "Spring Boots-order-0,approved\n", with_csrf=False)
    assert response.status_code == 403
    assert await state() == before


async def test_publishers_cannot_upload(client, new_client, settings):
    setup = await pending_conversions(settings, client, 1, fund=5_000)
    browser = new_client()
    await login(browser, setup.publisher_email)
    response = await browser.post(
        UPLOAD,
        data={"text": "Spring Boots-order-0,approved", "_csrf_token": csrf(browser)},
        files={"file": ("", b"", "text/csv")},
    )
    assert response.status_code == 403
    assert (await Conversion.select(Conversion.status).first())["status"] == "pending"


def test_parse_reads_positional_and_named_columns():
    lines, errors = csv_upload.parse('a-1, approved\n"b,2",REJECTED,,"reason, with comma"\n')
    assert errors == []
    assert [(ln.number, ln.txn_id, ln.status, ln.reason) for ln in lines] == [
        (1, "a-1", "approved", ""),
        (2, "b,2", "REJECTED", "reason, with comma"),
    ]
    lines, _ = csv_upload.parse("reason,status,txn_id\nSold out,reject,x-1\n")
    assert [(ln.number, ln.txn_id, ln.status, ln.reason) for ln in lines] == [(2, "x-1", "reject", "Sold out")]
