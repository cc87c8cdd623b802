"""Publishers' statements and self-billed invoices (server/payouts/statements.py), on both engines: a
publisher paid in a batch (through the real SDK against the Stripe stand-in) gets a statement whose
total is the line's amount and the transfer the stand-in made; its lines (conversions, CPC clicks,
CPM impressions, a reversal, a netted debt) add up to it, as the ledger has them; a self-billing
agreement in force at the payment adds a self-billed invoice with the publisher's VAT treatment
(French franchise, Italian reverse charge, French VAT-inclusive); none, or a revoked one, does not;
issuing again issues nothing, and statements are numbered 1..n."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from server.accounts.tables import Role, User
from server.billing import stripe_api
from server.campaigns.tables import Goal
from server.conversions import approval, reversal
from server.conversions.tables import Conversion
from server.earnings.tables import ClickEarning, ImpressionEarning
from server.invoicing import documents, identity
from server.invoicing.tables import BillingProfile, Document
from server.ledger import postings
from server.ledger import service as ledger
from server.payouts import execute, reversals, statements
from server.payouts import service as payouts
from server.payouts.account_tables import PayoutAccount
from server.payouts.tables import PayoutBatch
from tests.conversions.factories import pending_conversions
from tests.factories import make_advertiser, post_form, staff_client
from tests.payouts.factories import after_next_cutoff, approved_batch, connected_account, fresh_line_ids, lines_of
from workers.jobs.payouts import execute_payout_batch
from workers.jobs.statements import issue_batch_statements, issue_statements


async def pay(settings, batch_id: int) -> None:
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"


async def transfer_amount(stripe_local, transfer_id: str) -> int:
    return (await stripe_local.client().v1.transfers.retrieve_async(transfer_id)).amount


async def documents_of(line_id: int) -> dict[str, dict]:
    rows = await Document.select().where(Document.payout_line == line_id).order_by(Document.id)
    return {row["kind"]: documents.parsed(row) for row in rows}


def adds_up(document: dict) -> None:
    assert sum(line["amount_minor"] for line in document["lines"]) == document["net_minor"]
    assert document["net_minor"] + document["vat_minor"] == document["total_minor"]


async def test_a_paid_publisher_gets_a_statement_of_the_transfer_once_numbered_without_gap(
    new_client, settings, stripe_local
):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000, 25_000, 7_500)
    assert await statements.due() == []  # approved, not paid: nothing yet
    await pay(settings, batch_id)
    assert await issue_statements({}) == 3
    assert await statements.issue_due() == 0  # again: nothing more
    lines = await lines_of(batch_id)
    for line in lines:  # asked again: answers the documents issued, issues none
        assert [d["id"] for d in await statements.issue_for_line(line["id"])] == [
            d["id"] for d in (await documents_of(line["id"])).values()
        ]
    assert await Document.count() == 3
    for line in lines:
        issued = await documents_of(line["id"])
        assert list(issued) == ["statement"]
        statement = issued["statement"]
        assert statement["owner"] == line["publisher"]
        assert statement["source_key"] == f"payout-line:{line['id']}:statement"
        assert (
            statement["total_minor"]
            == line["amount_minor"]
            == await transfer_amount(stripe_local, line["stripe_transfer_id"])
        )
        assert (statement["vat_minor"], statement["treatment"], statement["currency"]) == (0, "not_subject", "EUR")
        adds_up(statement)
        assert statement["seller"] == identity.network_party()
        # No billing profile: the publisher's account names them.
        assert statement["buyer"]["kind"] == "individual" and statement["buyer"]["name"] == "Cooking Blog"
        assert statement["buyer"]["country"] == "" and "@" in statement["buyer"]["email"]
        assert statement["locale"] == "en"
        assert any(line["stripe_transfer_id"] in mention for mention in statement["mentions"])
    numbers = await Document.select(Document.series, Document.number).order_by(Document.number)
    assert numbers == [{"series": settings.statement_series, "number": n} for n in (1, 2, 3)]


async def _cpc_hour(publisher_id: int, campaign_id: int, hour: datetime, clicks: int, payout_each: int) -> int:
    goal = (
        await Goal.insert(
            Goal(
                campaign=campaign_id,
                name="click",
                payout_model="cpc",
                advertiser_amount=payout_each + 10,
                publisher_amount=payout_each,
                position=1,
            )
        ).returning(Goal.id)
    )[0]["id"]
    payout = clicks * payout_each
    return (
        await ClickEarning.insert(
            ClickEarning(
                publisher=publisher_id,
                campaign=campaign_id,
                goal=goal,
                hour=hour,
                valid_clicks=clicks + 3,
                paid_clicks=clicks,
                over_cap_clicks=3,
                currency="EUR",
                price_minor=payout + 10 * clicks,
                payout_minor=payout,
                margin_minor=10 * clicks,
                status="released",
                hold_until=hour,
                created_at=hour,
                approved_at=hour,
                released_at=hour,
            )
        ).returning(ClickEarning.id)
    )[0]["id"]


async def _cpm_hour(publisher_id: int, campaign_id: int, hour: datetime, impressions: int, payout: int) -> int:
    goal = (
        await Goal.insert(
            Goal(
                campaign=campaign_id,
                name="view",
                payout_model="cpm",
                advertiser_amount=200,
                publisher_amount=100,
                position=2,
            )
        ).returning(Goal.id)
    )[0]["id"]
    return (
        await ImpressionEarning.insert(
            ImpressionEarning(
                publisher=publisher_id,
                campaign=campaign_id,
                goal=goal,
                hour=hour,
                valid_impressions=impressions,
                paid_impressions=impressions,
                currency="EUR",
                price_minor=2 * payout,
                payout_minor=payout,
                margin_minor=payout,
                status="released",
                hold_until=hour,
                created_at=hour,
                approved_at=hour,
                released_at=hour,
            )
        ).returning(ImpressionEarning.id)
    )[0]["id"]


async def test_conversions_clicks_impressions_a_reversal_and_a_netted_debt_add_up_to_the_transfer(
    app, new_client, client, settings, stripe_local, monkeypatch
):
    await fresh_line_ids()
    # Three sales of 10.00 (the publisher earns 8.00 each) on "Spring Boots", funded.
    setup = await pending_conversions(settings, client, 3, fund=100_000)
    publisher_id, advertiser_id = setup.publisher.id, setup.advertiser.id
    now = datetime.now(UTC)
    # A clawback after an earlier payout: the publisher owes 3.00 (a receivable), netted by this payout.
    other_advertiser, _ = await make_advertiser()
    await postings.fund_advertiser(other_advertiser, 1_000, "EUR", reference_id=1, key="fund-other")
    await postings.reverse_earning(
        advertiser_id=other_advertiser,
        publisher_id=publisher_id,
        price=300,
        payout=300,
        currency="EUR",
        released=True,
        reference_type="manual",
        reference_id=1,
        key="clawback-1",
    )
    # The sales' hold is over: approved straight into the available balance.
    await Conversion.update({Conversion.hold_until: now - timedelta(days=1)}).where(
        Conversion.campaign == setup.campaign_id
    )
    await app.state.click_buffer.flush()  # their clicks' rows are stored (the approval checks them)
    assert (await approval.run(now=now)).approved == 3
    # One of them refunded by the shop afterwards: reversed, out of the available balance.
    refunded = (await Conversion.select(Conversion.id).order_by(Conversion.id).first())["id"]
    assert await reversal.reverse_one(
        refunded, "refunded", advertiser_id=advertiser_id, actor_id=advertiser_id, source="api"
    )
    # An hour of 40 paid CPC clicks at 1.00, and an hour of 5,000 CPM impressions for 2.50, charged.
    hour = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    clicks = await _cpc_hour(publisher_id, setup.campaign_id, hour, 40, 100)
    views = await _cpm_hour(publisher_id, setup.campaign_id, hour, 5_000, 250)
    for reference_type, reference_id, price, payout in (
        ("click_hour", clicks, 4_400, 4_000),
        ("impression_hour", views, 500, 250),
    ):
        await postings.approve_earning(
            advertiser_id=advertiser_id,
            publisher_id=publisher_id,
            price=price,
            payout=payout,
            currency="EUR",
            reference_type=reference_type,
            reference_id=reference_id,
            key=f"{reference_type}:{reference_id}:approved",
            available=True,
        )
    account = await connected_account(stripe_local)
    now = datetime.now(UTC)
    await PayoutAccount.insert(
        PayoutAccount(
            publisher=publisher_id,
            stripe_account_id=account,
            payouts_enabled=True,
            details_submitted=True,
            created_at=now,
            updated_at=now,
        )
    )
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    finance, _ = await staff_client(new_client, Role.finance, first_page="/finance/payouts")
    assert (await post_form(finance, f"/finance/payouts/{batch_id}/approve")).status_code == 303
    await pay(settings, batch_id)
    [line] = await lines_of(batch_id)
    # 3 × 8.00 − 8.00 + 40.00 + 2.50 = 58.50 available, less the 3.00 owed: 55.50 transferred.
    assert (line["available_minor"], line["netted_minor"], line["amount_minor"]) == (5_850, 300, 5_550)

    [statement] = await statements.issue_for_line(line["id"])
    statement = documents.parsed(statement)
    assert statement["total_minor"] == 5_550 == await transfer_amount(stripe_local, line["stripe_transfer_id"])
    adds_up(statement)
    by_text = {item["description"]: item for item in statement["lines"]}
    day = now.date().isoformat()
    assert by_text["Conversions: Spring Boots, sale"] | {"date": day} == {
        "description": "Conversions: Spring Boots, sale",
        "quantity": 3,
        "unit_minor": 800,
        "amount_minor": 2_400,
        "date": day,
    }
    assert (
        by_text["Reversed conversions: Spring Boots, sale"]["quantity"],
        by_text["Reversed conversions: Spring Boots, sale"]["amount_minor"],
    ) == (1, -800)
    cpc = by_text["Clicks (CPC): Spring Boots, click"]
    assert (cpc["quantity"], cpc["unit_minor"], cpc["amount_minor"], cpc["date"]) == (
        40,
        100,
        4_000,
        hour.date().isoformat(),
    )
    cpm = by_text["Impressions (CPM): Spring Boots, view"]
    assert (cpm["quantity"], cpm["amount_minor"]) == (5_000, 250)
    debt = by_text["Debt netted: earnings reversed after an earlier payment"]
    assert debt["amount_minor"] == -300
    assert len(statement["lines"]) == 5  # nothing else: the ledger's entries, grouped, tie exactly
    assert await ledger.check() == []
    assert await statements.issue_due() == 0  # issued already

    # However many groups there are, a statement lists at most MAX_LINES lines, and still adds up.
    batch = await PayoutBatch.select(PayoutBatch.period_end).where(PayoutBatch.id == batch_id).first()
    for most in (6, 5):
        monkeypatch.setattr(statements, "MAX_LINES", most)
        short = await statements.statement_lines(line, batch["period_end"])
        assert len(short) <= most and sum(item["amount_minor"] for item in short) == 5_550
    assert any(item["description"] == "Other earnings and adjustments" for item in short)


async def _profile(user_id: int, **fields) -> None:
    now = datetime.now(UTC)
    values = {
        "kind": "business",
        "address": "1 via Roma",
        "postcode": "00100",
        "city": "Roma",
        "company_number": "",
        "tax_code": "",
        "vat_number": "",
        "vat_regime": "standard",
    } | fields
    await BillingProfile.insert(BillingProfile(user=user_id, **values, created_at=now, updated_at=now))


async def test_self_billed_invoices_follow_the_publishers_vat_position_and_agreement(
    new_client, settings, stripe_local
):
    batch_id, accounts = await approved_batch(
        new_client, settings, stripe_local, 10_000, 20_000, 12_345, 15_000, 16_000
    )
    franchise, italian, domestic, no_agreement, revoked = accounts
    await _profile(
        franchise, legal_name="Marie Cuisine EI", country="FR", vat_regime="franchise", company_number="73282932000074"
    )
    await _profile(italian, legal_name="Cucina Srl", country="IT", vat_number="IT00743110157")
    await _profile(
        domestic,
        legal_name="Blog Gourmand SARL",
        country="FR",
        company_number="73282932000074",
        vat_number="FR44732829320",
    )
    await _profile(no_agreement, legal_name="Sans Accord SAS", country="FR", company_number="73282932000074")
    await _profile(revoked, legal_name="Révoqué SAS", country="FR", company_number="73282932000074")
    await User.update({User.language: "en"}).where(User.id == no_agreement)  # their own choice wins
    earlier = datetime.now(UTC) - timedelta(hours=1)
    for publisher_id in (franchise, italian, domestic, revoked):
        await identity.accept_agreement(publisher_id, now=earlier)
    await identity.revoke_agreement(revoked, now=earlier + timedelta(minutes=30))  # before the payment
    await pay(settings, batch_id)
    assert await statements.issue_due() == 5
    lines = {line["publisher"]: line for line in await lines_of(batch_id)}
    issued = {publisher_id: await documents_of(line["id"]) for publisher_id, line in lines.items()}

    for publisher_id, line in lines.items():
        statement = issued[publisher_id]["statement"]
        assert (
            statement["total_minor"]
            == line["amount_minor"]
            == await transfer_amount(stripe_local, line["stripe_transfer_id"])
        )
        adds_up(statement)
    assert list(issued[no_agreement]) == ["statement"] and issued[no_agreement]["statement"]["locale"] == "en"
    assert list(issued[revoked]) == ["statement"]
    assert issued[revoked]["statement"]["buyer"]["name"] == "Révoqué SAS"

    fr = issued[franchise]["self_billed_invoice"]
    assert (fr["locale"], fr["treatment"], fr["vat_minor"], fr["total_minor"]) == ("fr", "franchise", 0, 10_000)
    assert fr["seller"]["name"] == "Marie Cuisine EI" and fr["buyer"] == identity.network_party()
    assert fr["series"] == settings.self_billing_series and fr["number"] == 1
    assert fr["source_key"] == f"payout-line:{lines[franchise]['id']}:self-billed"
    assert "TVA non applicable, art. 293 B du CGI" in fr["mentions"]
    assert "Autofacturation" in fr["mentions"]
    assert f"Facture émise par {settings.network_name} au nom et pour le compte de Marie Cuisine EI" in fr["mentions"]
    adds_up(fr)

    it = issued[italian]["self_billed_invoice"]
    assert (it["locale"], it["treatment"], it["vat_minor"], it["total_minor"]) == ("it", "reverse_charge", 0, 20_000)
    assert "Autofattura" in it["mentions"]
    assert f"Fattura emessa da {settings.network_name} in nome e per conto di Cucina Srl" in it["mentions"]
    assert any("Inversione contabile" in mention for mention in it["mentions"])
    adds_up(it)

    dom = issued[domestic]["self_billed_invoice"]
    # The transfer is the price VAT included: 123.45 = 102.88 + 20.57 at 20 %.
    assert (dom["treatment"], dom["vat_rate_bp"], dom["vat_country"]) == ("domestic", 2000, "FR")
    assert (dom["net_minor"], dom["vat_minor"], dom["total_minor"]) == (10_288, 2_057, 12_345)
    assert "Autofacturation" in dom["mentions"]
    adds_up(dom)

    self_billed = await Document.select(Document.number).where(Document.kind == "self_billed_invoice")
    assert sorted(r["number"] for r in self_billed) == [1, 2, 3]
    assert await statements.issue_due() == 0
    assert await Document.count() == 8


async def test_a_line_not_paid_gets_nothing(new_client, settings, stripe_local):
    batch_id, _ = await approved_batch(new_client, settings, stripe_local, 10_000)
    [line] = await lines_of(batch_id)
    with pytest.raises(ValueError, match="only a paid line"):
        await statements.issue_for_line(line["id"])
    assert await statements.issue_due() == 0
    assert await Document.count() == 0


async def _earn(publisher_id: int, advertiser_id: int, amount: int, key: str, effective_at: datetime | None = None):
    await postings.approve_earning(
        advertiser_id=advertiser_id,
        publisher_id=publisher_id,
        price=amount,
        payout=amount,
        currency="EUR",
        reference_type="manual",
        reference_id=1,
        key=key,
        available=True,
        effective_at=effective_at,
    )


async def test_each_payment_states_what_it_paid_and_money_after_its_cut_off_waits_for_the_next(
    new_client, settings, stripe_local
):
    batch_id, accounts = await approved_batch(new_client, settings, stripe_local, 10_000)
    [publisher_id] = accounts
    await pay(settings, batch_id)
    # The first transfer comes back (reversed at Stripe): its money is paid again next time.
    [first] = await lines_of(batch_id)
    await reversals.transfer_reversed(
        {
            "id": first["stripe_transfer_id"],
            "metadata": {"payout_line_id": str(first["id"])},
            "reversals": {"data": [{"id": f"trr_{first['id']}", "amount": 10_000}]},
            "reversed": True,
        }
    )
    advertiser_id, _ = await make_advertiser()
    await postings.fund_advertiser(advertiser_id, 100_000, "EUR", reference_id=1, key="fund-more")
    terms = await payouts.schedule_terms()
    later, last = after_next_cutoff() + timedelta(days=32), after_next_cutoff() + timedelta(days=64)
    cutoff = payouts.last_cutoff(terms, later)[1]
    await _earn(publisher_id, advertiser_id, 6_000, "more-1")  # in the second period
    await _earn(publisher_id, advertiser_id, 7_000, "more-2", effective_at=cutoff + timedelta(hours=1))  # the third's
    finance, _ = await staff_client(new_client, Role.finance, first_page="/finance/payouts")
    paid = []
    for moment in (later, last):
        batch = (await payouts.prepare_due(moment)).batches[0]
        assert (await post_form(finance, f"/finance/payouts/{batch}/approve")).status_code == 303
        await pay(settings, batch)
        paid += await lines_of(batch)
    assert [line["amount_minor"] for line in paid] == [16_000, 7_000]
    assert await statements.issue_due() == 3
    totals = []
    for line in [*(await lines_of(batch_id)), *paid]:
        statement = (await documents_of(line["id"]))["statement"]
        adds_up(statement)
        assert not any("Balance" in item["description"] for item in statement["lines"])  # tied without a plug
        totals.append(statement["total_minor"])
    assert totals == [10_000, 16_000, 7_000]
    second = (await documents_of(paid[0]["id"]))["statement"]
    assert [(item["description"], item["amount_minor"]) for item in second["lines"]] == [
        ("Earlier payment returned (transfer reversed)", 10_000),
        ("Adjustments", 6_000),
    ]
    assert [r["number"] for r in await Document.select(Document.number).order_by(Document.id)] == [1, 2, 3]


async def test_the_batch_job_queues_the_statements_job_which_issues_them(new_client, settings, stripe_local):
    batch_id, _ = await approved_batch(new_client, settings, stripe_local, 10_000)
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        ctx = {"settings": settings, "job_try": 1, "redis": pool}
        assert await execute_payout_batch(ctx, batch_id) == "done"
        queued = [(j.function, j.args) for j in await pool.queued_jobs()]
        assert ("issue_batch_statements", (batch_id,)) in queued
        assert await Document.count() == 0  # the payment did not wait for it
        assert await issue_batch_statements(ctx, batch_id) == 1
    finally:
        await pool.aclose()
    [line] = await lines_of(batch_id)
    assert (await documents_of(line["id"]))["statement"]["total_minor"] == line["amount_minor"]


@pytest.mark.engine("postgres")
async def test_two_runs_at_once_issue_each_statement_once_numbered_without_gap(new_client, settings, stripe_local):
    batch_id, _ = await approved_batch(new_client, settings, stripe_local, 10_000, 11_000, 12_000, 13_000)
    await pay(settings, batch_id)
    # Two workers past the cron lock (a Redis failover): the database still issues each document once.
    runs = await asyncio.gather(statements.issue_due(), statements.issue_due())
    assert sum(runs) == 4
    rows = await Document.select(Document.payout_line, Document.number).order_by(Document.number)
    assert [r["number"] for r in rows] == [1, 2, 3, 4]
    assert sorted(r["payout_line"] for r in rows) == sorted(line["id"] for line in await lines_of(batch_id))
