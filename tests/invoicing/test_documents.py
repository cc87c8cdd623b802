"""Documents as their owners and finance get them: a PDF rendered once from the stored document and
served as stored, lists that show only the owner's documents, downloads nobody else can make, and
the accountant's CSV whose VAT ties to the ledger. On both engines."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import inspect
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.accounts.tables import Role
from server.core import clock, db
from server.invoicing import documents, export, render
from server.invoicing.tables import DocumentFile, DocumentKind, VatTreatment
from server.ledger import postings
from tests.accounts.test_api_keys import create_key
from tests.factories import login, make_advertiser, make_publisher, staff_client
from workers.jobs.documents import render_documents

NETWORK = {
    "kind": "business",
    "name": "affnet demo SAS",
    "address": "10 rue de la Paix",
    "postcode": "75002",
    "city": "Paris",
    "country": "FR",
    "company_number": "73282932000074",
    "tax_code": "",
    "vat_number": "FR44732829320",
    "vat_regime": "standard",
    "email": "",
}
BOULANGERIE = {
    **NETWORK,
    "name": "Boulangerie Dupont SARL",
    "address": "12 place Bellecour\nBâtiment B",
    "postcode": "69002",
    "city": "Lyon",
    "company_number": "40483304800022",
    "vat_number": "FR83404833048",
    "email": "compta@dupont.example",
}
PASTIFICIO = {
    **NETWORK,
    "name": "Pastificio Rossi S.r.l.",
    "address": "Via Roma 1",
    "postcode": "20121",
    "city": "Milano",
    "country": "IT",
    "company_number": "",
    "tax_code": "00743110157",
    "vat_number": "IT00743110157",
}
BLOGGER = {
    "kind": "individual",
    "name": "Giulia Bianchi",
    "address": "Via Garibaldi 7",
    "postcode": "10121",
    "city": "Torino",
    "country": "IT",
    "company_number": "",
    "tax_code": "BNCGLI85M41L219X",
    "vat_number": "IT01234567897",
    "vat_regime": "franchise",
    "email": "giulia@blog.example",
}
REVERSE_CHARGE_IT = "Inversione contabile: IVA dovuta dal committente (art. 196 direttiva 2006/112/CE)."
PAID_FR = "Facture acquittée par carte bancaire le 07/12/2026."
FRANCHISE_IT = "Operazione in franchigia da IVA (regime forfettario, art. 1 c. 54-89 L. 190/2014)."
SELF_BILLING_IT = "Autofattura emessa dal committente per conto del fornitore."


async def issue(owner: int, kind: DocumentKind, key: str, **fields: Any) -> dict[str, Any]:
    """One document issued as the issuers do: inside the transaction of what it documents."""
    series = {"invoice": "AF", "credit_note": "AF", "statement": "RP", "self_billed_invoice": "AC"}[kind.value]
    values: dict[str, Any] = {
        "issued_at": clock.now(),
        "currency": "EUR",
        "vat_minor": 0,
        "vat_rate_bp": 0,
        "vat_country": "",
        "mentions": [],
        **fields,
    }
    async with db.transaction():
        return await documents.issue(kind=kind, series=series, owner=owner, source_key=key, **values)


async def french_invoice(advertiser: int, *, key: str = "funding:1:invoice", funding: int = 1) -> dict[str, Any]:
    """A French business's top-up of 12.50 EUR net, VAT 20 %: 15.00 EUR charged."""
    return await issue(
        advertiser,
        DocumentKind.invoice,
        key,
        net_minor=1250,
        vat_minor=250,
        vat_rate_bp=2000,
        vat_country="FR",
        treatment=VatTreatment.domestic,
        locale="fr",
        seller=NETWORK,
        buyer=BOULANGERIE,
        lines=[
            {
                "description": "Crédit publicitaire prépayé",
                "quantity": 1,
                "unit_minor": 1250,
                "amount_minor": 1250,
                "date": "2026-12-07",
            }
        ],
        mentions=[PAID_FR],
        funding=funding,
    )


async def italian_invoice(advertiser: int, *, key: str = "funding:2:invoice") -> dict[str, Any]:
    """An Italian business with a VAT number: reverse charge, no VAT, the mention."""
    return await issue(
        advertiser,
        DocumentKind.invoice,
        key,
        net_minor=50000,
        treatment=VatTreatment.reverse_charge,
        locale="it",
        seller=NETWORK,
        buyer=PASTIFICIO,
        lines=[
            {
                "description": "Credito pubblicitario prepagato",
                "quantity": 1,
                "unit_minor": 50000,
                "amount_minor": 50000,
            }
        ],
        mentions=[REVERSE_CHARGE_IT],
        funding=2,
    )


async def credit_note(advertiser: int, invoice: dict[str, Any]) -> dict[str, Any]:
    """The whole refund of the French invoice: it nets to zero with it."""
    return await issue(
        advertiser,
        DocumentKind.credit_note,
        f"funding:{invoice['funding']}:refund:1",
        net_minor=-1250,
        vat_minor=-250,
        vat_rate_bp=2000,
        vat_country="FR",
        treatment=VatTreatment.domestic,
        locale="fr",
        seller=NETWORK,
        buyer=BOULANGERIE,
        lines=[{"description": "Remboursement du crédit", "quantity": 1, "unit_minor": -1250, "amount_minor": -1250}],
        mentions=["Avoir sur la facture " + invoice["reference"] + "."],
        funding=invoice["funding"],
        corrects=invoice["id"],
    )


async def statement(publisher: int, *, key: str = "payout_line:7:statement") -> dict[str, Any]:
    """What payout line 7 paid an Italian blogger: two campaigns' conversions, 42.00 EUR."""
    return await issue(
        publisher,
        DocumentKind.statement,
        key,
        net_minor=4200,
        treatment=VatTreatment.not_subject,
        locale="it",
        seller=NETWORK,
        buyer=BLOGGER,
        lines=[
            {
                "description": "Conversioni: Scarpe Rosse",
                "quantity": 3,
                "unit_minor": 1000,
                "amount_minor": 3000,
                "detail": "3 conversioni, 120 clic",
            },
            {"description": "Clic: Libri Blu", "quantity": 60, "unit_minor": 20, "amount_minor": 1200},
        ],
        mentions=["Pagamento del 07/12/2026, riga di pagamento 7."],
        payout_line=7,
    )


async def self_billed(publisher: int) -> dict[str, Any]:
    """The same payment as a self-billed invoice in the blogger's name, under the franchise scheme."""
    return await issue(
        publisher,
        DocumentKind.self_billed_invoice,
        "payout_line:7:self_billed",
        net_minor=4200,
        treatment=VatTreatment.franchise,
        locale="it",
        seller=BLOGGER,
        buyer=NETWORK,
        lines=[{"description": "Servizi di affiliazione", "quantity": 1, "unit_minor": 4200, "amount_minor": 4200}],
        mentions=[FRANCHISE_IT, SELF_BILLING_IT],
        payout_line=7,
    )


def _plain(text: str) -> str:
    """No-break and narrow no-break spaces (Babel's, in French and Italian amounts) as spaces."""
    return text.replace("\u202f", " ").replace("\xa0", " ")


# --- the PDF ------------------------------------------------------------------------------------------


async def test_a_pdf_is_rendered_once_and_the_stored_bytes_are_served_after(settings, clean):
    advertiser, _ = await make_advertiser()
    invoice = await french_invoice(advertiser)

    first = await render.pdf_of(invoice["id"])
    assert first.startswith(b"%PDF")
    stored = await DocumentFile.select().where(DocumentFile.document == invoice["id"])
    assert len(stored) == 1 and stored[0]["sha256"] == hashlib.sha256(first).hexdigest()

    again = await render.pdf_of(invoice["id"])
    assert hashlib.sha256(again).hexdigest() == stored[0]["sha256"]  # the same bytes, not a new rendering
    after = await DocumentFile.select().where(DocumentFile.document == invoice["id"])
    assert len(after) == 1 and after[0]["created_at"] == stored[0]["created_at"]


async def test_two_renderings_at_once_keep_one_file_and_both_answer_its_bytes(settings, clean):
    publisher, _ = await make_publisher(settings)
    document = await statement(publisher)
    one, two = await asyncio.gather(render.pdf_of(document["id"]), render.pdf_of(document["id"]))
    assert one == two
    assert await DocumentFile.count().where(DocumentFile.document == document["id"]) == 1


async def test_a_stored_pdf_cannot_be_changed_or_deleted(settings, clean):
    advertiser, _ = await make_advertiser()
    invoice = await french_invoice(advertiser)
    pdf = await render.pdf_of(invoice["id"])
    with pytest.raises(Exception, match="append-only"):
        await DocumentFile.update({DocumentFile.pdf: b"%PDF-forged"}).where(DocumentFile.document == invoice["id"])
    with pytest.raises(Exception, match="append-only"):
        await DocumentFile.delete().where(DocumentFile.document == invoice["id"])
    assert await render.pdf_of(invoice["id"]) == pdf


async def test_the_worker_job_renders_the_documents_that_have_no_file_yet(settings, clean):
    advertiser, _ = await make_advertiser()
    publisher, _ = await make_publisher(settings)
    invoice = await french_invoice(advertiser)
    rendered = await render.pdf_of(invoice["id"])
    await statement(publisher)
    await self_billed(publisher)

    assert await render_documents({"clock": clock.now}) == 2  # the invoice had its file already
    assert await DocumentFile.count() == 3
    assert await render_documents({"clock": clock.now}) == 0
    assert await render.pdf_of(invoice["id"]) == rendered


# --- what the document says -----------------------------------------------------------------------------


async def test_each_document_is_written_in_its_own_language_with_its_figures_and_mentions(settings, clean):
    advertiser, _ = await make_advertiser()
    publisher, _ = await make_publisher(settings)
    french = await french_invoice(advertiser)
    italian = await italian_invoice(advertiser)
    note = await credit_note(advertiser, french)
    paid = await statement(publisher)
    own = await self_billed(publisher)

    html = _plain(render.html_of(french))
    assert "Facture" in html and french["reference"] in html
    assert "12,50 €" in html and "2,50 €" in html and "15,00 €" in html
    assert "TVA 20 % (FR)" in html
    assert "SIRET</span> 40483304800022" in html and "FR83404833048" in html
    assert PAID_FR in html and "07/12/2026" in html

    html = _plain(render.html_of(italian))
    assert "Fattura" in html and "500,00 €" in html and "inversione contabile" in html.lower()
    assert "Partita IVA</span> IT00743110157" in html and "Codice fiscale</span> 00743110157" in html
    assert REVERSE_CHARGE_IT in html

    html = _plain(render.html_of(note, corrected=french["reference"]))
    assert "Avoir" in html and "-12,50 €" in html and "-15,00 €" in html and french["reference"] in html

    html = _plain(render.html_of(paid))
    assert "Rendiconto" in html and "42,00 €" in html and "30,00 €" in html and "3 conversioni, 120 clic" in html

    html = _plain(render.html_of(own))
    assert "Autofattura" in html and FRANCHISE_IT in html and SELF_BILLING_IT in html

    # The same invoice written in English reads €12.50: the language is the document's, not the reader's.
    english = render.html_of({**french, "locale": "en"})
    assert "Invoice" in english and "€12.50" in english and "€15.00" in english and "VAT 20% (FR)" in english


async def test_a_party_name_is_text_and_nothing_is_fetched(settings, clean):
    advertiser, _ = await make_advertiser()
    hostile = {
        **BOULANGERIE,
        "name": '<img src="http://127.0.0.1:9/steal"><style>@import "file:///etc/passwd";</style>',
    }
    invoice = await issue(
        advertiser,
        DocumentKind.invoice,
        "funding:9:invoice",
        net_minor=100,
        treatment=VatTreatment.outside_eu,
        locale="en",
        seller=NETWORK,
        buyer=hostile,
        lines=[{"description": "Credit", "quantity": 1, "unit_minor": 100, "amount_minor": 100}],
    )
    html = render.html_of(invoice)
    assert "<img" not in html and "&lt;img" in html
    fetcher = render._refusing_fetcher()
    for address in ("http://127.0.0.1:9/steal", "file:///etc/passwd", "data:text/css,body{}"):
        with pytest.raises(Exception, match="no external resource"):
            (fetcher.fetch if hasattr(fetcher, "fetch") else fetcher)(address)
    assert (await render.pdf_of(invoice["id"])).startswith(b"%PDF")


# --- pages and downloads ------------------------------------------------------------------------------


async def test_an_advertiser_lists_and_downloads_only_their_own_documents(settings, new_client):
    advertiser, email = await make_advertiser()
    other, other_email = await make_advertiser()
    invoice = await french_invoice(advertiser)
    note = await credit_note(advertiser, invoice)
    theirs = await italian_invoice(other)

    mine = new_client()
    await login(mine, email)
    page = await mine.get("/advertiser/invoices")
    assert page.status_code == 200
    assert invoice["reference"] in page.text and note["reference"] in page.text
    assert theirs["reference"] not in page.text
    assert page.text.index(note["reference"]) < page.text.index(invoice["reference"])  # newest first

    pdf = await mine.get(f"/documents/{invoice['id']}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == f'attachment; filename="{invoice["reference"]}.pdf"'
    assert pdf.headers["cache-control"] == "private"
    assert (await mine.get(f"/documents/{theirs['id']}.pdf")).status_code == 404
    assert (await mine.get("/documents/999999.pdf")).status_code == 404
    assert (await mine.get(f"/documents/{invoice['id']}")).status_code == 404

    stranger = new_client()
    await login(stranger, other_email)
    assert (await stranger.get(f"/documents/{invoice['id']}.pdf")).status_code == 404
    assert invoice["reference"] not in (await stranger.get("/advertiser/invoices")).text

    finance, _ = await staff_client(new_client, Role.finance)
    seen = await finance.get(f"/documents/{invoice['id']}.pdf")
    assert seen.status_code == 200 and seen.content == pdf.content  # the stored bytes, whoever reads them


async def test_a_publisher_lists_their_statements_and_not_an_advertisers_invoices(settings, new_client):
    publisher, email = await make_publisher(settings)
    advertiser, _ = await make_advertiser()
    paid = await statement(publisher)
    own = await self_billed(publisher)
    invoice = await french_invoice(advertiser)

    client = new_client()
    await login(client, email)
    page = await client.get("/publisher/statements")
    assert page.status_code == 200
    assert paid["reference"] in page.text and own["reference"] in page.text
    assert invoice["reference"] not in page.text
    assert (await client.get(f"/documents/{paid['id']}.pdf")).content.startswith(b"%PDF")
    assert (await client.get(f"/documents/{invoice['id']}.pdf")).status_code == 404
    assert (await client.get("/advertiser/invoices")).status_code == 403


async def test_owners_read_their_documents_by_api_key(settings, new_client):
    advertiser, email = await make_advertiser()
    other, _ = await make_advertiser()
    invoice = await french_invoice(advertiser)
    note = await credit_note(advertiser, invoice)
    theirs = await italian_invoice(other)
    browser = new_client()
    await login(browser, email)
    key = await create_key(browser)
    api = new_client()
    api.headers["Authorization"] = f"Bearer {key}"

    first = await api.get("/api/v1/advertiser/invoices", params={"limit": 1})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [d["reference"] for d in body["items"]] == [note["reference"]]
    assert body["items"][0]["net_minor"] == -1250 and body["items"][0]["corrects_id"] == invoice["id"]
    rest = (await api.get("/api/v1/advertiser/invoices", params={"cursor": body["next_cursor"]})).json()
    assert [d["reference"] for d in rest["items"]] == [invoice["reference"]] and rest["next_cursor"] is None
    assert rest["items"][0]["vat_minor"] == 250 and rest["items"][0]["funding_id"] == 1

    pdf = await api.get(rest["items"][0]["pdf_url"])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    refused = await api.get(f"/api/v1/documents/{theirs['id']}.pdf")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert (await api.get("/api/v1/publisher/statements")).status_code == 403


# --- finance and the accountant's CSV -------------------------------------------------------------------


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_finance_exports_the_period_with_totals_per_kind_and_currency(settings, new_client):
    advertiser, _ = await make_advertiser()
    publisher, _ = await make_publisher(settings)
    invoice = await french_invoice(advertiser)
    note = await credit_note(advertiser, invoice)
    italian = await italian_invoice(advertiser)
    paid = await statement(publisher)
    old = await issue(  # issued 40 days ago: outside the period
        advertiser,
        DocumentKind.invoice,
        "funding:3:invoice",
        issued_at=clock.now() - timedelta(days=40),
        net_minor=999,
        treatment=VatTreatment.outside_eu,
        locale="en",
        seller=NETWORK,
        buyer=BOULANGERIE,
        lines=[{"description": "Credit", "quantity": 1, "unit_minor": 999, "amount_minor": 999}],
        funding=3,
    )
    finance, _ = await staff_client(new_client, Role.finance)
    today = clock.now().date()

    page = await finance.get("/finance/documents", params={"since": today.isoformat(), "until": today.isoformat()})
    assert page.status_code == 200
    for document in (invoice, note, italian, paid):
        assert document["reference"] in page.text
    assert old["reference"] not in page.text

    response = await finance.get(
        "/finance/documents.csv", params={"since": today.isoformat(), "until": today.isoformat()}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = _csv(response.text)
    by_reference = {r["reference"]: r for r in rows if r["row"] == "document"}
    assert set(by_reference) == {d["reference"] for d in (invoice, note, italian, paid)}
    row = by_reference[note["reference"]]
    assert row["kind"] == "credit_note" and row["corrects"] == invoice["reference"]
    assert (row["net_minor"], row["vat_minor"], row["total_minor"]) == ("-1250", "-250", "-1500")
    assert (row["net"], row["vat"], row["total"]) == ("-12.50", "-2.50", "-15.00")
    assert row["owner_id"] == str(advertiser) and row["owner_name"] == "Boulangerie Dupont SARL"
    assert (row["buyer_country"], row["buyer_vat_number"]) == ("FR", "FR83404833048")
    assert by_reference[italian["reference"]]["treatment"] == "reverse_charge"
    assert by_reference[paid["reference"]]["payout_line_id"] == "7"
    assert by_reference[paid["reference"]]["owner_name"] == "Giulia Bianchi"
    assert by_reference[invoice["reference"]]["funding_id"] == "1"

    totals = {(r["kind"], r["currency"]): r for r in rows if r["row"] == "total"}
    assert set(totals) == {("invoice", "EUR"), ("credit_note", "EUR"), ("statement", "EUR")}
    assert totals[("invoice", "EUR")]["count"] == "2"
    assert totals[("invoice", "EUR")]["net_minor"] == str(1250 + 50000)
    assert totals[("invoice", "EUR")]["vat_minor"] == "250" and totals[("invoice", "EUR")]["vat"] == "2.50"
    assert totals[("credit_note", "EUR")]["total_minor"] == "-1500"
    # The documents' figures add up: every total row is the sum of its kind's document rows.
    for (kind, currency), total in totals.items():
        mine = [r for r in by_reference.values() if r["kind"] == kind and r["currency"] == currency]
        for field in ("net_minor", "vat_minor", "total_minor"):
            assert int(total[field]) == sum(int(r[field]) for r in mine)
    check = [r for r in rows if r["row"] == "vat_check"]
    assert [(c["currency"], c["vat_minor"]) for c in check] == [("EUR", "0")]  # the invoice's VAT, credited back

    # Another period holds none of them.
    empty = _csv(
        (await finance.get("/finance/documents.csv", params={"since": "2020-01-01", "until": "2020-01-31"})).text
    )
    assert [r["row"] for r in empty] == []


async def test_the_vat_check_ties_when_the_ledger_owes_the_invoices_vat(settings, new_client):
    if "vat" not in inspect.signature(postings.fund_advertiser_by_card).parameters:
        pytest.skip("the ledger posts no VAT yet (postings.fund_advertiser_by_card(..., vat=...))")
    advertiser, _ = await make_advertiser()
    now = clock.now()
    async with db.transaction():
        await postings.fund_advertiser_by_card(advertiser, 1500, 45, "EUR", reference_id=1, key="funding:1", vat=250)
        invoice = await documents.issue(
            kind=DocumentKind.invoice,
            series="AF",
            owner=advertiser,
            source_key="funding:1:invoice",
            issued_at=now,
            currency="EUR",
            net_minor=1250,
            vat_minor=250,
            vat_rate_bp=2000,
            vat_country="FR",
            treatment=VatTreatment.domestic,
            locale="fr",
            seller=NETWORK,
            buyer=BOULANGERIE,
            lines=[{"description": "Crédit", "quantity": 1, "unit_minor": 1250, "amount_minor": 1250}],
            mentions=[PAID_FR],
            funding=1,
        )
    span = export.period(now.date().isoformat(), now.date().isoformat(), now=now)
    found = await export.export(span)
    assert found.checks == [
        {"currency": "EUR", "documents_vat_minor": 250, "ledger_vat_minor": 250, "difference_minor": 0, "ties": True}
    ]
    finance, _ = await staff_client(new_client, Role.finance)
    rows = _csv(
        (
            await finance.get(
                "/finance/documents.csv", params={"since": now.date().isoformat(), "until": now.date().isoformat()}
            )
        ).text
    )
    check = [r for r in rows if r["row"] == "vat_check"]
    assert check[0]["check"] == "ties" and check[0]["ledger_vat_minor"] == "250" and check[0]["vat_minor"] == "250"
    assert invoice["reference"] in {r["reference"] for r in rows}


async def test_the_vat_check_shows_a_difference_the_ledger_does_not_hold(settings, clean):
    advertiser, _ = await make_advertiser()
    await french_invoice(advertiser)  # no ledger movement behind it
    now = clock.now()
    found = await export.export(export.period(None, None, now=now))
    assert found.checks[0]["difference_minor"] == 250 and not found.ties
    text = export.csv_text(found)
    assert "does not tie" in text


@pytest.mark.parametrize(
    "query",
    [
        {"since": "yesterday"},
        {"until": "2026-13-01"},
        {"since": "2026-12-10", "until": "2026-12-01"},
        {"since": "1990-01-01", "until": "2026-12-01"},
    ],
)
async def test_a_period_that_cannot_be_read_is_a_400_with_what_to_send(settings, new_client, query):
    finance, _ = await staff_client(new_client, Role.finance)
    response = await finance.get("/finance/documents.csv", params=query)
    assert response.status_code == 400
    assert "since" in response.text or "until" in response.text or "days" in response.text
    page = await finance.get("/finance/documents", params=query)
    assert page.status_code == 400
    wrong_kind = await finance.get("/finance/documents", params={"kind": "receipt"})
    assert wrong_kind.status_code == 400 and "kind must be one of" in wrong_kind.text


async def test_only_staff_read_the_finance_documents(settings, new_client):
    _, email = await make_advertiser()
    client = new_client()
    await login(client, email)
    assert (await client.get("/finance/documents")).status_code == 403
    assert (await client.get("/finance/documents.csv")).status_code == 403
    admin, _ = await staff_client(new_client, Role.admin)
    assert (await admin.get("/finance/documents")).status_code == 200


def test_the_default_period_is_the_current_month_up_to_today():
    now = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
    span = export.period(None, "", now=now)
    assert (span.start, span.end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC))
    assert span.as_text() == ("2026-12-01", "2026-12-07")
    moment = export.period("2026-12-01T08:00:00+01:00", "2026-12-02T00:00:00Z", now=now)
    assert moment.start == datetime(2026, 12, 1, 7, tzinfo=UTC) and moment.end == datetime(2026, 12, 2, tzinfo=UTC)
