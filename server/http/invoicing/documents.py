"""Documents on the web and by API key: advertisers' invoices and credit notes, publishers'
statements and self-billed invoices, their PDFs (the stored file, server/invoicing/render.py), and
finance's view of a period with the accountant's CSV (server/invoicing/export.py).

A document belongs to its owner; finance and admin staff may read any. Anyone else's is a 404."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import FromPath
from litestar.response import Template

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.core import clock, money
from server.core.errors import Invalid, NotFound
from server.core.i18n import _
from server.http.apikit import BadCursor, Cursor, CursorQuery, LimitQuery, page
from server.http.openapi import refusals
from server.http.pages import render, render_error
from server.http.web import current_user, requires_role
from server.invoicing import export
from server.invoicing import render as documents_pdf
from server.invoicing.tables import DocumentKind

ADVERTISER_PAGE = "documents/invoices.html"
PUBLISHER_PAGE = "documents/statements.html"
FINANCE_PAGE = "documents/finance.html"
_PDF_NAME = re.compile(r"^([1-9][0-9]{0,17})\.pdf$")
PAGE_SIZE = 200  # a list page shows the newest this many; the API pages through all of them


def _user(request: Request) -> CurrentUser:
    return current_user(request)  # type: ignore[return-value]  # the route's guard admitted a user


def _document_id(filename: str) -> int:
    match = _PDF_NAME.match(filename)
    if match is None:
        raise NotFound(_("There is no such document."))
    return int(match.group(1))


async def _pdf_response(user: CurrentUser, filename: str) -> Response:
    document = await export.readable(user, _document_id(filename))
    pdf = await documents_pdf.pdf_of(document["id"])
    return Response(
        content=pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{document["reference"]}.pdf"',
            "Cache-Control": "private",
        },
    )


def _list_context(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"documents": rows, "kind_title": documents_pdf.title, "money": money}


# --- pages ------------------------------------------------------------------------------------------


class AdvertiserInvoices(Controller):
    path = "/advertiser/invoices"
    guards = [requires_role(Role.advertiser)]
    include_in_schema = False

    @get("")
    async def index(self, request: Request) -> Template:
        rows = await export.owned(_user(request).id, export.ADVERTISER_KINDS, limit=PAGE_SIZE)
        return render(ADVERTISER_PAGE, **_list_context(rows))


class PublisherStatements(Controller):
    path = "/publisher/statements"
    guards = [requires_role(Role.publisher)]
    include_in_schema = False

    @get("")
    async def index(self, request: Request) -> Template:
        rows = await export.owned(_user(request).id, export.PUBLISHER_KINDS, limit=PAGE_SIZE)
        return render(PUBLISHER_PAGE, **_list_context(rows))


class DocumentDownloads(Controller):
    path = "/documents"
    guards = [requires_role(Role.advertiser, Role.publisher, Role.finance, Role.admin)]
    include_in_schema = False

    @get("/{filename:str}")
    async def pdf(self, request: Request, filename: FromPath[str]) -> Response:
        """GET /documents/{id}.pdf: the stored PDF, for its owner and for finance and admin staff."""
        return await _pdf_response(_user(request), filename)


def _kind(raw: str | None) -> DocumentKind | None:
    if not raw:
        return None
    try:
        return DocumentKind(raw)
    except ValueError:
        raise export.BadPeriod(
            _("kind must be one of: %(kinds)s.", kinds=", ".join(k.value for k in DocumentKind)), field="kind"
        ) from None


class FinanceDocuments(Controller):
    path = "/finance"
    guards = [requires_role(Role.finance, Role.admin)]
    include_in_schema = False

    @get("/documents")
    async def index(self, request: Request) -> Template:
        """Every document of a period (`since`, `until`, `kind`), with totals per kind and currency and
        the VAT check against the ledger."""
        query = request.query_params
        form = {k: (query.get(k) or "")[:40] for k in ("since", "until", "kind")}
        context = {"kinds": list(DocumentKind), "kind_title": documents_pdf.title, "money": money}
        try:
            span = export.period(query.get("since"), query.get("until"), now=clock.now())
            found = await export.export(span, _kind(query.get("kind")))
        except Invalid as exc:
            return render_error(FINANCE_PAGE, exc, form, found=None, csv_query="", **context)
        since, until = span.as_text()
        csv_query = f"since={since}&until={until}"
        return render(
            FINANCE_PAGE, found=found, form={**form, "since": since, "until": until}, csv_query=csv_query, **context
        )

    @get("/documents.csv")
    async def csv(self, request: Request) -> Response:
        """The accountant's export of the period: a row per document, totals per kind and currency, and
        the VAT check (invoices' and credit notes' VAT against the ledger's vat_payable)."""
        span = export.period(request.query_params.get("since"), request.query_params.get("until"), now=clock.now())
        found = await export.export(span)
        since, until = span.as_text()
        return Response(
            content=export.csv_text(found).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="affnet-documents-{since[:10]}-{until[:10]}.csv"',
                "Cache-Control": "no-store",
            },
        )


# --- API --------------------------------------------------------------------------------------------


class DocumentOut(msgspec.Struct):
    id: int
    kind: str  # invoice, credit_note, statement or self_billed_invoice
    reference: str  # as printed: AF-2026-000001
    issued_at: datetime
    currency: str
    net_minor: int  # excluding VAT (negative on a credit note)
    vat_minor: int
    total_minor: int  # net_minor + vat_minor
    vat_rate_bp: int  # 2000 = 20 %
    vat_country: str  # whose rate applied ("" when none did)
    treatment: str  # domestic, eu_consumer, reverse_charge, outside_eu, franchise, not_subject
    funding_id: int | None  # the top-up an invoice or credit note is for
    payout_line_id: int | None  # the payout line a statement or self-billed invoice is for
    corrects_id: int | None  # the invoice a credit note corrects
    pdf_url: str  # GET it with the same API key: /api/v1/documents/{id}.pdf


class DocumentPage(msgspec.Struct):
    items: list[DocumentOut]
    next_cursor: str | None


def _out(row: dict[str, Any]) -> DocumentOut:
    return DocumentOut(
        id=row["id"],
        kind=row["kind"],
        reference=row["reference"],
        issued_at=row["issued_at"],
        currency=row["currency"],
        net_minor=row["net_minor"],
        vat_minor=row["vat_minor"],
        total_minor=row["total_minor"],
        vat_rate_bp=row["vat_rate_bp"],
        vat_country=row["vat_country"],
        treatment=row["treatment"],
        funding_id=row["funding"],
        payout_line_id=row["payout_line"],
        corrects_id=row["corrects"],
        pdf_url=f"/api/v1/documents/{row['id']}.pdf",
    )


async def _document_page(user: CurrentUser, kinds: tuple[DocumentKind, ...], cursor: str | None, limit: int):
    rows = await export.owned(user.id, kinds, before_id=Cursor.decode(cursor), limit=limit + 1)
    items, next_cursor = page(rows, limit)
    return DocumentPage(items=[_out(r) for r in items], next_cursor=next_cursor)


_BAD_CURSOR = refusals((BadCursor, "The cursor is not one this API gave out."))


class AdvertiserInvoicesApi(Controller):
    path = "/api/v1/advertiser/invoices"
    guards = [requires_role(Role.advertiser)]
    security = [{"apiKey": []}]
    tags = ["advertiser: billing"]

    @get("", summary="Your invoices and credit notes, newest first", responses=_BAD_CURSOR)
    async def invoices(self, request: Request, cursor: CursorQuery = None, limit: LimitQuery = 50) -> DocumentPage:
        """As the invoices page: one invoice per credited top-up and a credit note per refund or lost
        dispute. Amounts in minor units; `pdf_url` downloads the stored PDF."""
        return await _document_page(_user(request), export.ADVERTISER_KINDS, cursor, limit)


class PublisherStatementsApi(Controller):
    path = "/api/v1/publisher/statements"
    guards = [requires_role(Role.publisher)]
    security = [{"apiKey": []}]
    tags = ["publisher: payouts"]

    @get("", summary="Your payout statements and self-billed invoices, newest first", responses=_BAD_CURSOR)
    async def statements(self, request: Request, cursor: CursorQuery = None, limit: LimitQuery = 50) -> DocumentPage:
        """As the statements page: a statement per paid payout line, and a self-billed invoice in your
        name when you accepted self-billing. Amounts in minor units; `pdf_url` downloads the PDF."""
        return await _document_page(_user(request), export.PUBLISHER_KINDS, cursor, limit)


class DocumentsApi(Controller):
    path = "/api/v1/documents"
    # Admins have no API keys (server/accounts/service.py API_KEY_ROLES); finance's keys read any document.
    guards = [requires_role(Role.advertiser, Role.publisher, Role.finance)]
    security = [{"apiKey": []}]
    tags = ["documents"]

    @get(
        "/{filename:str}",
        summary="A document's PDF, as stored when it was first rendered",
        media_type="application/pdf",
        responses=refusals((NotFound, "No document of yours has this id (or the name does not end in .pdf).")),
    )
    async def pdf(self, request: Request, filename: FromPath[str]) -> Response[bytes]:
        """`{id}.pdf`: your own document's PDF (a finance key: any document). The same bytes
        every time."""
        return await _pdf_response(_user(request), filename)


# server/app.py registers these.
DOCUMENT_ROUTES = [
    AdvertiserInvoices,
    PublisherStatements,
    DocumentDownloads,
    FinanceDocuments,
    AdvertiserInvoicesApi,
    PublisherStatementsApi,
    DocumentsApi,
]
