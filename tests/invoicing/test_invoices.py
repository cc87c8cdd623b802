"""Advertisers' VAT invoices and credit notes, through the whole top-up flow: the billing page, the Stripe
stand-in over the real SDK, Stripe's signed events, the worker's processing. The network is French
(Settings' defaults): a French business pays French VAT, an Italian business with a valid partita IVA none
(reverse charge), a French individual French VAT, an Italian individual Italian VAT (OSS)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.billing import funding_events, stripe_api
from server.billing import service as billing
from server.billing.tables import Funding
from server.core import db
from server.invoicing import documents, identity
from server.invoicing.tables import Document, DocumentKind
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.mail.tables import MailOutbox
from tests.billing.test_with_stripe_local import deliver_new, event_ids, pay, process, start_funding
from tests.factories import (
    FRENCH_BUSINESS,
    FRENCH_INDIVIDUAL,
    ITALIAN_BUSINESS,
    give_billing_profile,
    login,
    make_advertiser,
    post_form,
)

ITALIAN_INDIVIDUAL = {
    "kind": "individual",
    "legal_name": "Mario Rossi",
    "address": "Via Garibaldi 2",
    "postcode": "10122",
    "city": "Torino",
    "country": "IT",
    "tax_code": "RSSMRA85T10A562S",
}


async def _invoices(kind: DocumentKind = DocumentKind.invoice) -> list[dict]:
    rows = await Document.select().where(Document.kind == kind.value).order_by(Document.id)
    return [documents.parsed(r) for r in rows]


async def _paid_top_up(client, stripe_local, settings, profile: dict, amount: str = "100.00") -> tuple[int, dict]:
    """An advertiser with `profile` tops up `amount` through the billing page; Stripe's events processed."""
    user_id, email = await make_advertiser(billing_profile=False)
    await give_billing_profile(user_id, **profile)
    seen = set(await event_ids(stripe_local))
    _, funding = await start_funding(client, email, amount)
    await pay(stripe_local, funding["checkout_session_id"])
    await deliver_new(client, stripe_local, seen)
    assert "credited" in await process(settings)
    return user_id, await Funding.select().where(Funding.id == funding["id"]).first()


CASES = [
    # profile, VAT charged on 100.00, treatment, rate, the mention's words
    (FRENCH_BUSINESS, 2_000, "domestic", 2000, None),
    (ITALIAN_BUSINESS, 0, "reverse_charge", 0, "2006/112"),
    (FRENCH_INDIVIDUAL, 2_000, "domestic", 2000, None),
    (ITALIAN_INDIVIDUAL, 2_200, "eu_consumer", 2200, "(OSS)"),
]


async def test_each_buyer_is_invoiced_the_vat_of_their_case_and_the_ledger_owes_the_invoices_vat(
    new_client, settings, stripe_local
):
    for profile, vat, treatment, rate, mention in CASES:
        client = new_client()
        user_id, funding = await _paid_top_up(client, stripe_local, settings, profile)
        # Stripe charged the VAT on top; the balance is credited the net amount.
        assert (funding["amount_minor"], funding["vat_minor"]) == (10_000 + vat, vat), profile["legal_name"]
        assert await ledger.balance(K.advertiser_balance, "EUR", user_id) == 10_000
        [invoice] = [d for d in await _invoices() if d["owner"] == user_id]
        assert (invoice["net_minor"], invoice["vat_minor"], invoice["total_minor"]) == (10_000, vat, 10_000 + vat)
        assert (invoice["treatment"], invoice["vat_rate_bp"], invoice["funding"]) == (treatment, rate, funding["id"])
        assert invoice["seller"]["vat_number"] == settings.network_vat_number
        assert invoice["buyer"]["name"] == profile["legal_name"]
        assert invoice["buyer"].get("vat_number", "") == profile.get("vat_number", "")
        assert sum(line["amount_minor"] for line in invoice["lines"]) == invoice["net_minor"]
        # Written in the buyer's language (no language chosen: their country's).
        assert invoice["locale"] == {"FR": "fr", "IT": "it"}[profile["country"]]
        if mention:
            assert any(mention in m for m in invoice["mentions"]), invoice["mentions"]
        if treatment == "reverse_charge":
            assert any(profile["vat_number"] in m for m in invoice["mentions"])
        # The billing page shows what was charged, its VAT and what was credited.
        page = await client.get("/advertiser/billing")
        assert 'data-testid="funding-credited"' in page.text
    issued = await _invoices()
    # Each advertiser is told by mail, in their language, with the PDF's address.
    mails = await MailOutbox.select().where(MailOutbox.kind == "invoice_issued").order_by(MailOutbox.id)
    assert [m["user"] for m in mails] == [d["owner"] for d in issued]
    assert issued[0]["reference"] in mails[0]["subject"] and "120.00" in mails[0]["text_body"]
    assert f"/documents/{issued[0]['id']}.pdf" in mails[0]["text_body"]
    assert [d["number"] for d in issued] == [1, 2, 3, 4]
    assert [d["reference"] for d in issued] == [f"AF-{issued[0]['year']}-00000{n}" for n in (1, 2, 3, 4)]
    assert await ledger.balance(K.vat_payable, "EUR") == sum(d["vat_minor"] for d in issued) == 6_200
    assert await ledger.check() == []


async def test_the_confirmation_shows_the_vat_and_a_top_up_needs_billing_details(client, settings, stripe_local):
    user_id, email = await make_advertiser(billing_profile=False)
    await login(client, email)
    page = await client.get("/advertiser/billing")
    assert 'data-testid="billing-details-needed"' in page.text and 'href="/account/billing-profile"' in page.text
    refused = await post_form(client, "/advertiser/billing/fund", {"amount": "100.00", "currency": "EUR"})
    assert refused.status_code == 409 and "billing details" in refused.text
    assert await Funding.count() == 0
    await give_billing_profile(user_id, **FRENCH_BUSINESS)
    page = await client.get("/advertiser/billing")
    assert "billing-details-needed" not in page.text and "On each top-up: VAT 20 % (FR)" in page.text
    shown = await post_form(client, "/advertiser/billing/fund", {"amount": "100.00", "currency": "EUR"})
    assert shown.status_code == 200
    assert "€100.00" in shown.text and "VAT 20 % (FR)" in shown.text and "€120.00" in shown.text
    assert await Funding.count() == 0  # shown, not started


async def test_refunds_and_chargebacks_give_credit_notes_that_net_to_zero(client, settings, stripe_local):
    user_id, funding = await _paid_top_up(client, stripe_local, settings, FRENCH_BUSINESS, "100.00")
    seen = set(await event_ids(stripe_local))
    sdk = stripe_local.client()
    charge = funding["charge_id"]
    # A third refunded, then the rest: the credit notes' VAT shares add up to the invoice's VAT exactly.
    sdk.v1.refunds.create({"charge": charge, "amount": 4_001}, {"idempotency_key": f"test-refund-1-{charge}"})
    await deliver_new(client, stripe_local, seen, times=2)  # each event twice: one credit note still
    await process(settings)
    [first] = await _invoices(DocumentKind.credit_note)
    assert (first["total_minor"], first["vat_minor"]) == (-4_001, -667)  # 4001 × 2000 / 12000 = 666.8
    [invoice] = await _invoices()
    assert first["corrects"] == invoice["id"] and invoice["reference"] in " ".join(first["mentions"])
    sdk.v1.refunds.create({"charge": charge, "amount": 7_999}, {"idempotency_key": f"test-refund-2-{charge}"})
    await deliver_new(client, stripe_local, seen)
    await process(settings)
    notes = await _invoices(DocumentKind.credit_note)
    assert len(notes) == 2
    every = [invoice, *notes]
    assert sum(d["total_minor"] for d in every) == 0
    assert sum(d["vat_minor"] for d in every) == 0
    assert sum(d["net_minor"] for d in every) == 0
    assert await ledger.balance(K.vat_payable, "EUR") == 0
    assert await ledger.balance(K.advertiser_balance, "EUR", user_id) == 0
    # Credit notes are numbered in the invoices' series, after them.
    assert [d["number"] for d in every] == [1, 2, 3]
    assert await ledger.check() == []


async def test_a_chargeback_won_back_is_invoiced_again(client, settings, stripe_local):
    user_id, funding = await _paid_top_up(client, stripe_local, settings, FRENCH_INDIVIDUAL, "50.00")
    seen = set(await event_ids(stripe_local))
    dispute = stripe_local.control("POST", f"/_local/charges/{funding['charge_id']}/dispute").json()
    await deliver_new(client, stripe_local, seen)
    await process(settings)
    [note] = await _invoices(DocumentKind.credit_note)
    assert (note["total_minor"], note["vat_minor"]) == (-6_000, -1_000)
    assert await ledger.balance(K.vat_payable, "EUR") == 0
    stripe_local.control("POST", f"/_local/disputes/{dispute['id']}/close", outcome="won")
    await deliver_new(client, stripe_local, seen, times=2)
    await process(settings)
    invoices = await _invoices()
    assert [(d["total_minor"], d["vat_minor"]) for d in invoices] == [(6_000, 1_000), (6_000, 1_000)]
    assert await ledger.balance(K.vat_payable, "EUR") == 1_000
    assert await ledger.balance(K.advertiser_balance, "EUR", user_id) == 5_000
    assert await ledger.check() == []


def _stored_document(n: int) -> dict:
    party = identity.network_party()
    return {
        "kind": DocumentKind.invoice,
        "series": identity.series(DocumentKind.invoice),
        "source_key": f"test:failing:{n}",
        "issued_at": datetime.now(UTC),
        "currency": "EUR",
        "net_minor": 100,
        "vat_minor": 20,
        "vat_rate_bp": 2000,
        "vat_country": "FR",
        "treatment": documents.VatTreatment.domestic,
        "locale": "en",
        "seller": party,
        "buyer": party,
        "lines": [{"description": "x", "quantity": 1, "unit_minor": 100, "amount_minor": 100}],
        "mentions": [],
    }


class Boom(Exception):
    pass


@pytest.mark.engine("postgres")
async def test_200_concurrent_top_ups_are_numbered_1_to_200_and_failures_leave_no_hole(settings, stripe_local, clean):
    """200 top-ups credited at once (the worker's processing of 200 paid Checkout Sessions, concurrently on
    PostgreSQL's pool), while 20 other transactions take an invoice number and then fail."""
    users = [await make_advertiser(billing_profile=False) for _ in range(10)]
    for user_id, _ in users:
        await give_billing_profile(user_id, **FRENCH_BUSINESS)
    sdk = stripe_local.client()
    sessions = []
    async with stripe_api.gateway(settings) as gateway:
        for n in range(200):
            user_id, email = users[n % len(users)]
            who = CurrentUser(id=user_id, email=email, role=Role.advertiser, via="test")
            await billing.start_funding(who, {"amount": "50.00", "currency": "EUR"}, gateway, settings.base_url)
        rows = await Funding.select(Funding.id, Funding.checkout_session_id).order_by(Funding.id)
        for row in rows:
            stripe_local.control("POST", f"/_local/checkout/sessions/{row['checkout_session_id']}/pay")
            session = sdk.v1.checkout.sessions.retrieve(row["checkout_session_id"])
            sessions.append(
                {
                    "id": session.id,
                    "payment_status": session.payment_status,
                    "payment_intent": session.payment_intent,
                    "metadata": {"funding_id": str(row["id"])},
                }
            )

        async def credit(obj: dict) -> str | None:
            return await funding_events.apply("checkout.session.completed", obj, gateway)

        async def fail(n: int) -> None:
            async with db.transaction():
                await documents.issue(owner=users[0][0], **_stored_document(n))
                await asyncio.sleep(0.01)
                raise Boom  # after taking a number: the transaction gives it back

        tasks = [credit(s) for s in sessions]
        for n in range(20):
            tasks.insert(n * 10 + 5, fail(n))
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(o, Boom) for o in outcomes) == 20
    assert [o for o in outcomes if not isinstance(o, Boom)] == ["credited"] * 200
    issued = await Document.select(Document.number, Document.funding, Document.source_key).where(
        Document.kind == DocumentKind.invoice.value
    )
    assert sorted(d["number"] for d in issued) == list(range(1, 201))
    assert len({d["funding"] for d in issued}) == 200
    assert not any(d["source_key"].startswith("test:failing") for d in issued)
    assert await ledger.balance(K.vat_payable, "EUR") == 200 * 1_000
    assert await ledger.check() == []
    again = json.loads(json.dumps(sessions[0]))
    assert await funding_events.apply("checkout.session.completed", again, gateway=None) == "already credited"  # type: ignore[arg-type]
    assert await Document.count().where(Document.kind == DocumentKind.invoice.value) == 200
