"""Each kind of document opens as a PDF and shows its figures: the owner logs in in headless Chromium,
finds the document on their list page, fetches its PDF from the live server, and pdf.js (served from
/static/vendor, as the site serves Chart.js) reads the text back: the reference, the amounts as the
document's language writes them (12,50 € in French and Italian), the VAT line and the mentions."""

from __future__ import annotations

import re

import pytest

from server.accounts.tables import Role
from tests.e2e.pages import log_in
from tests.factories import make_advertiser, make_publisher, make_staff
from tests.invoicing.test_documents import (
    FRANCHISE_IT,
    PAID_FR,
    REVERSE_CHARGE_IT,
    SELF_BILLING_IT,
    credit_note,
    french_invoice,
    italian_invoice,
    self_billed,
    statement,
)

# Fetch a PDF with the page's cookies and read every page's text with pdf.js (legacy build, its
# worker from the same place). Runs in the page: same origin, so the site's CSP allows it all.
READ_PDF = """
async (url) => {
  const pdfjs = await import('/static/vendor/pdf.min.mjs');
  pdfjs.GlobalWorkerOptions.workerSrc = '/static/vendor/pdf.worker.min.mjs';
  const response = await fetch(url, {credentials: 'same-origin'});
  const data = new Uint8Array(await response.arrayBuffer());
  const result = {status: response.status, type: response.headers.get('content-type'),
                  disposition: response.headers.get('content-disposition'), pages: 0, text: ''};
  if (response.status !== 200) return result;
  const pdf = await pdfjs.getDocument({data, isEvalSupported: false}).promise;
  result.pages = pdf.numPages;
  const texts = [];
  for (let n = 1; n <= pdf.numPages; n++) {
    const page = await pdf.getPage(n);
    const content = await page.getTextContent();
    texts.push(content.items.map((item) => item.str + (item.hasEOL ? '\\n' : ' ')).join(''));
  }
  result.text = texts.join('\\n');
  await pdf.destroy();
  return result;
}
"""


def _plain(text: str) -> str:
    """The extracted text with no-break spaces as spaces and every run of whitespace as one space."""
    return re.sub(r"\s+", " ", text.replace("\xa0", " ").replace("\u202f", " ")).strip()


async def _read(page, href: str) -> dict:
    read = await page.evaluate(READ_PDF, href)
    assert read["status"] == 200, read
    assert read["type"] == "application/pdf" and read["disposition"].startswith("attachment;")
    assert read["pages"] >= 1
    return {**read, "text": _plain(read["text"])}


async def _links(page, list_path: str) -> dict[str, str]:
    """The list page's documents: reference -> the PDF link it shows."""
    await page.goto(list_path)
    rows = page.locator("[data-testid=document]")
    found = {}
    for i in range(await rows.count()):
        row = rows.nth(i)
        reference = (await row.locator("[data-testid=document-reference]").inner_text()).strip()
        found[reference] = await row.locator("[data-testid=document-pdf]").get_attribute("href")
    return found


@pytest.mark.browser
async def test_each_kind_of_document_opens_as_a_pdf_that_shows_its_figures(settings, live_server, new_page):
    advertiser, advertiser_email = await make_advertiser()
    publisher, publisher_email = await make_publisher(settings)
    other, other_email = await make_advertiser()
    invoice = await french_invoice(advertiser)
    reverse = await italian_invoice(advertiser)
    note = await credit_note(advertiser, invoice)
    paid = await statement(publisher)
    own = await self_billed(publisher)
    _, finance_email = await make_staff(Role.finance)

    page = await new_page()
    await log_in(page, advertiser_email)
    links = await _links(page, "/advertiser/invoices")
    assert set(links) == {invoice["reference"], reverse["reference"], note["reference"]}

    text = (await _read(page, links[invoice["reference"]]))["text"]
    assert "Facture" in text and invoice["reference"] in text
    assert "Boulangerie Dupont SARL" in text and "SIRET 40483304800022" in text
    assert "12,50 €" in text and "2,50 €" in text and "15,00 €" in text
    assert "TVA 20 % (FR)" in text and "Total TTC" in text
    assert PAID_FR in text

    text = (await _read(page, links[reverse["reference"]]))["text"]
    assert "Fattura" in text and reverse["reference"] in text
    assert "500,00 €" in text and "IVA: inversione contabile" in text and "0,00 €" in text
    assert "Partita IVA IT00743110157" in text
    assert REVERSE_CHARGE_IT in text

    text = (await _read(page, links[note["reference"]]))["text"]
    assert "Avoir" in text and note["reference"] in text
    assert f"Rectifie la facture {invoice['reference']}" in text
    assert "-12,50 €" in text and "-2,50 €" in text and "-15,00 €" in text

    publisher_page = await new_page()
    await log_in(publisher_page, publisher_email)
    links = await _links(publisher_page, "/publisher/statements")
    assert set(links) == {paid["reference"], own["reference"]}

    text = (await _read(publisher_page, links[paid["reference"]]))["text"]
    assert "Rendiconto di pagamento" in text and paid["reference"] in text
    assert "30,00 €" in text and "12,00 €" in text and "42,00 €" in text and "Totale pagato" in text
    assert "Giulia Bianchi" in text and "Codice fiscale BNCGLI85M41L219X" in text

    text = (await _read(publisher_page, links[own["reference"]]))["text"]
    assert "Autofattura" in text and own["reference"] in text and "42,00 €" in text
    assert "IVA: non applicata (regime di franchigia)" in text
    assert FRANCHISE_IT in text and SELF_BILLING_IT in text

    # Another advertiser gets a 404 for the same address; finance reads any document.
    stranger = await new_page()
    await log_in(stranger, other_email)
    await stranger.goto("/advertiser/invoices")
    refused = await stranger.evaluate(READ_PDF, f"/documents/{invoice['id']}.pdf")
    assert refused["status"] == 404 and refused["pages"] == 0
    finance = await new_page()
    await log_in(finance, finance_email)
    await finance.goto("/finance/documents")
    assert invoice["reference"] in (await _read(finance, f"/documents/{invoice['id']}.pdf"))["text"]
