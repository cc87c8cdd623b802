"""Documents as PDF: rendered once from the stored document, kept, and served as kept.

`html_of` writes a document with templates/documents/document.html in the document's own language
(its `locale`), whoever asks and wherever: the figures, parties, lines and mentions are the ones
stored when it was issued, never looked up again. `pdf_of` returns the stored PDF, rendering it
with WeasyPrint the first time (in a thread: rendering takes a moment of CPU). The first stored
file wins: `document_file` has one row per document (a unique index) and is append-only, so a
rendering that lost a race reads the winner back and every download is the same bytes.

WeasyPrint fetches nothing: the template has its styles inline, and the URL fetcher refuses every
address (no network, no file on the disk: a party's name cannot make the renderer fetch anything)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from babel import Locale
from jinja2 import Environment, FileSystemLoader

from server.core import clock, i18n, money
from server.core import locale as locales
from server.core.errors import NotFound
from server.core.i18n import _
from server.core.settings import ROOT
from server.invoicing.documents import parsed
from server.invoicing.tables import Document, DocumentFile, DocumentKind, VatTreatment

log = logging.getLogger("affnet.invoicing")

TEMPLATE = "documents/document.html"
# Documents carry their issue date as the numbering counts it (the year of the reference): UTC.
DOCUMENT_ZONE = "UTC"


@cache
def environment() -> Environment:
    """The pages' Jinja setup (templates/, autoescape, the i18n extension and filters), outside a request."""
    env = Environment(loader=FileSystemLoader(ROOT / "templates"), autoescape=True)
    env.globals["money"] = money
    i18n.install(env)
    return env


def _titles() -> dict[str, str]:
    return {
        DocumentKind.invoice: _("Invoice"),
        DocumentKind.credit_note: _("Credit note"),
        DocumentKind.statement: _("Payout statement"),
        DocumentKind.self_billed_invoice: _("Self-billed invoice"),
    }


def title(kind: str) -> str:
    """A kind's title in the current language (Invoice, Credit note …)."""
    return _titles().get(kind, kind)


def _country_name(code: str) -> str:
    locale = locales.current() or Locale.parse("en")
    return locale.territories.get(code.upper(), code)


def party_ids(party: dict[str, Any]) -> list[tuple[str, str]]:
    """A party's ids as its country names them: SIRET or SIREN, codice fiscale, partita IVA, VAT number."""
    country = (party.get("country") or "").upper()
    found: list[tuple[str, str]] = []
    company = party.get("company_number") or ""
    if company:
        if country == "FR" and len(company) == 14:
            found.append(("SIRET", company))
        elif country == "FR" and len(company) == 9:
            found.append(("SIREN", company))
        else:
            found.append((_("Company number"), company))
    tax_code = party.get("tax_code") or ""
    if tax_code:
        found.append(("Codice fiscale" if country == "IT" else _("Tax code"), tax_code))
    vat_number = party.get("vat_number") or ""
    if vat_number:
        found.append(("Partita IVA" if country == "IT" else _("VAT number"), vat_number))
    return found


def _vat_label(doc: dict[str, Any]) -> str:
    treatment = doc["treatment"]
    if treatment in (VatTreatment.domestic, VatTreatment.eu_consumer) or doc["vat_minor"]:
        bp = int(doc["vat_rate_bp"])
        places = 0 if bp % 100 == 0 else (1 if bp % 10 == 0 else 2)
        rate = i18n.percent_text(Decimal(bp) / 10_000, places=places)
        if doc["vat_country"]:
            return _("VAT %(rate)s (%(country)s)", rate=rate, country=doc["vat_country"])
        return _("VAT %(rate)s", rate=rate)
    if treatment == VatTreatment.reverse_charge:
        return _("VAT: reverse charge")
    if treatment == VatTreatment.franchise:
        return _("VAT: not charged (exemption scheme)")
    if treatment == VatTreatment.outside_eu:
        return _("VAT: outside the scope of EU VAT")
    return _("VAT: not applicable")


def _headings(kind: str) -> tuple[str, str]:
    if kind == DocumentKind.statement:
        return _("From"), _("Paid to")
    return _("Seller"), _("Buyer")


def _line_date(value: str | None) -> str:
    if not value:
        return ""
    try:
        return i18n.date_text(date.fromisoformat(value))
    except ValueError:
        return value


def _unit_text(line: dict[str, Any], currency: str) -> str:
    """The unit price, when the line has one: units paid differently (revenue share, CPM rounding) make a
    line whose amount is no quantity × unit, and it shows none."""
    unit, quantity = int(line.get("unit_minor", 0)), int(line.get("quantity", 1))
    if not unit or unit * quantity != int(line["amount_minor"]):
        return ""
    return money.display(unit, currency)


def context(doc: dict[str, Any], corrected: str = "") -> dict[str, Any]:
    """What the template shows, written in the current locale (call inside `locales.using`)."""
    currency = doc["currency"]
    lines = [
        {
            **line,
            "date_text": _line_date(line.get("date")),
            "quantity_text": i18n.number_text(line.get("quantity", 1)),
            "unit_text": _unit_text(line, currency),
            "amount_text": money.display(int(line["amount_minor"]), currency),
        }
        for line in doc["lines"]
    ]
    seller_heading, buyer_heading = _headings(doc["kind"])
    issued_at = doc["issued_at"]
    if isinstance(issued_at, datetime) and issued_at.tzinfo is None:
        issued_at = issued_at.replace(tzinfo=UTC)
    return {
        "doc": doc,
        "title": title(doc["kind"]),
        "issued": i18n.date_text(issued_at),
        "corrected": corrected,
        "seller_heading": seller_heading,
        "buyer_heading": buyer_heading,
        "lines": lines,
        "net": money.display(int(doc["net_minor"]), currency),
        "vat": money.display(int(doc["vat_minor"]), currency),
        "total": money.display(int(doc["total_minor"]), currency),
        "vat_label": _vat_label(doc),
        "total_label": _("Total including VAT") if doc["kind"] != DocumentKind.statement else _("Total paid"),
        "party_ids": party_ids,
        "country_name": _country_name,
    }


def html_of(document_row: dict[str, Any], *, corrected: str = "") -> str:
    """The document as HTML, in its own language (`corrected`: the reference of the invoice a credit
    note corrects, when known; pdf_of looks it up)."""
    doc = parsed(document_row) if isinstance(document_row.get("lines"), str) else document_row
    with locales.using(doc.get("locale") or "en", zone=DOCUMENT_ZONE):
        return environment().get_template(TEMPLATE).render(**context(doc, corrected))


# --- PDF ---------------------------------------------------------------------------------------------


def _refusing_fetcher() -> Any:
    """A WeasyPrint URL fetcher that fetches nothing (no network, no local file, no data: URL)."""
    from weasyprint import urls

    def refuse(url: str, *args: Any, **kwargs: Any) -> Any:
        raise urls.URLFetchingError(f"documents load no external resource ({url[:60]})")

    fetcher_class = getattr(urls, "URLFetcher", None)
    if fetcher_class is None:  # WeasyPrint < 68 takes a function
        return refuse

    class Refusing(fetcher_class):  # type: ignore[misc,valid-type]
        def fetch(self, url: str, headers: Any = None) -> Any:
            return refuse(url)

    return Refusing()


# One rendering at a time per process: WeasyPrint makes no promise about several threads rendering
# at once (it drives Pango, fontconfig and its caches), and documents are few (one per top-up, refund
# or payment), so waiting costs little.
_RENDERING = threading.Lock()


def pdf_from_html(html: str) -> bytes:
    """WeasyPrint's PDF of `html` (blocking: run it in a thread)."""
    import weasyprint  # imported when first needed: it loads Pango

    with _RENDERING:
        return weasyprint.HTML(string=html, url_fetcher=_refusing_fetcher()).write_pdf()


async def stored_pdf(document_id: int) -> bytes | None:
    row = await DocumentFile.select(DocumentFile.pdf).where(DocumentFile.document == document_id).first()
    return bytes(row["pdf"]) if row is not None else None


async def _corrected_reference(doc: dict[str, Any]) -> str:
    if not doc.get("corrects"):
        return ""
    row = await Document.select(Document.reference).where(Document.id == doc["corrects"]).first()
    return row["reference"] if row else ""


async def pdf_of(document_id: int) -> bytes:
    """The document's PDF: the stored one, else rendered now and stored (first one stored wins)."""
    found = await stored_pdf(document_id)
    if found is not None:
        return found
    row = await Document.select().where(Document.id == document_id).first()
    if row is None:
        raise NotFound(_("There is no such document."))
    html = html_of(row, corrected=await _corrected_reference(row))
    pdf = await asyncio.to_thread(pdf_from_html, html)
    await DocumentFile.insert(
        DocumentFile(document=document_id, pdf=pdf, sha256=hashlib.sha256(pdf).hexdigest(), created_at=clock.now())
    ).on_conflict(target=DocumentFile.document, action="DO NOTHING")
    kept = await stored_pdf(document_id)
    if kept is None:  # cannot happen: the row is there, ours or the winner's
        raise RuntimeError(f"document {document_id}'s PDF was not stored")
    return kept


async def render_due(limit: int = 100) -> int:
    """Render and store the PDFs of documents that have none yet, oldest first; how many were stored.
    A document that fails is logged and left for the next run (the others go on)."""
    rows = await Document.raw(
        "SELECT d.id FROM document d WHERE NOT EXISTS (SELECT 1 FROM document_file f WHERE f.document = d.id) "
        "ORDER BY d.id LIMIT {}",
        limit,
    )
    done = 0
    for row in rows:
        try:
            await pdf_of(row["id"])
            done += 1
        except Exception:
            log.exception("rendering document %s's PDF failed; it is tried again at the next run", row["id"])
    return done
