"""Documents read out: their owners' lists, who may download one, and the accountant's export of a
period (every document, totals per kind and currency, and the VAT check against the ledger).

Money stays in integer minor units; the CSV writes each amount twice, in minor units and as a
decimal in the currency's unit (machine formats, whatever the reader's language)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any

from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.core import db, money
from server.core.errors import Invalid, NotFound
from server.core.i18n import _
from server.invoicing.tables import Document, DocumentKind
from server.ledger.tables import AccountKind, LedgerAccount

ADVERTISER_KINDS = (DocumentKind.invoice, DocumentKind.credit_note)
PUBLISHER_KINDS = (DocumentKind.statement, DocumentKind.self_billed_invoice)
STAFF = frozenset({Role.finance, Role.admin})
# Invoices and credit notes carry the VAT the network owes; statements and self-billed invoices do
# not move `vat_payable` (a self-billed invoice's VAT is the publisher's to declare).
VAT_KINDS = (DocumentKind.invoice.value, DocumentKind.credit_note.value)
MAX_DAYS = 3700  # about ten years: the longest period an export covers

# Without the JSON texts (parties, lines): what lists and the export read of every document.
_LISTED = (
    Document.id,
    Document.kind,
    Document.reference,
    Document.owner,
    Document.issued_at,
    Document.currency,
    Document.net_minor,
    Document.vat_minor,
    Document.total_minor,
    Document.vat_rate_bp,
    Document.vat_country,
    Document.treatment,
    Document.funding,
    Document.payout_line,
    Document.corrects,
)


class BadPeriod(Invalid):
    """`since` or `until` cannot be read, or they make no period: a 400, the request is malformed."""

    status_code = 400
    code = "invalid_period"


# --- owners -----------------------------------------------------------------------------------------


async def owned(
    owner_id: int, kinds: Sequence[DocumentKind], *, before_id: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """An owner's documents of these kinds, newest first (by id: the order they were issued in);
    `before_id` continues a list below that id."""
    query = (
        Document.select(*_LISTED)
        .where(Document.owner == owner_id, Document.kind.is_in([k.value for k in kinds]))
        .order_by(Document.id, ascending=False)
    )
    if before_id is not None:
        query = query.where(Document.id < before_id)
    if limit is not None:
        query = query.limit(limit)
    return await query


async def readable(user: CurrentUser, document_id: int) -> dict[str, Any]:
    """A document `user` may read: their own, or any for finance and admin staff. Anyone else's is a
    404, as one that does not exist."""
    row = await Document.select(*_LISTED).where(Document.id == document_id).first()
    if row is None or (row["owner"] != user.id and user.role not in STAFF):
        raise NotFound(_("There is no such document."))
    return row


# --- the period -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: datetime  # included, UTC
    end: datetime  # excluded, UTC

    def as_text(self) -> tuple[str, str]:
        """(since, until) as a form shows them: dates when the bounds are midnights, until inclusive."""

        def text(moment: datetime, end: bool) -> str:
            if moment.time() == clock_time(0):
                return (moment.date() - timedelta(days=1) if end else moment.date()).isoformat()
            return moment.isoformat().replace("+00:00", "Z")

        return text(self.start, False), text(self.end, True)


def _instant(raw: str, field: str, *, end: bool) -> datetime:
    text = raw.strip().upper()
    try:
        if len(text) == 10:
            start = datetime.combine(date.fromisoformat(text), clock_time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise BadPeriod(
            _(
                "%(field)s must be a date such as 2026-12-01 or a date-time such as 2026-12-01T08:00:00Z.",
                field=field,
            ),
            field=field,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def period(since: str | None, until: str | None, *, now: datetime) -> Period:
    """The period `since` (included) to `until` (a date: that whole day included; a date-time:
    excluded), UTC. By default the current month up to today, included."""
    today = now.astimezone(UTC).date()
    start = (
        _instant(since, "since", end=False)
        if since and since.strip()
        else datetime.combine(today.replace(day=1), clock_time(0), tzinfo=UTC)
    )
    end = (
        _instant(until, "until", end=True)
        if until and until.strip()
        else datetime.combine(today + timedelta(days=1), clock_time(0), tzinfo=UTC)
    )
    if start >= end:
        raise BadPeriod(_("since must be before until."), field="since")
    if end - start > timedelta(days=MAX_DAYS):
        raise BadPeriod(_("A period is at most %(days)s days long.", days=MAX_DAYS), field="since")
    return Period(start, end)


# --- the export -------------------------------------------------------------------------------------


def _party(document: dict[str, Any], which: str) -> dict[str, Any]:
    try:
        value = json.loads(document[which] or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def owner_party(document: dict[str, Any]) -> str:
    """Which party of a document its owner is: the seller of a self-billed invoice, else the buyer."""
    return "seller" if document["kind"] == DocumentKind.self_billed_invoice else "buyer"


async def in_period(span: Period, kind: DocumentKind | None = None) -> list[dict[str, Any]]:
    """Every document issued in the period (of one kind, if given), in issue order, with its parties."""
    query = (
        Document.select(*_LISTED, Document.seller, Document.buyer)
        .where(Document.issued_at >= span.start, Document.issued_at < span.end)
        .order_by(Document.issued_at)
        .order_by(Document.id)
    )
    if kind is not None:
        query = query.where(Document.kind == kind.value)
    rows = await query
    references = await _references({r["corrects"] for r in rows if r["corrects"]} - {r["id"] for r in rows})
    references.update({r["id"]: r["reference"] for r in rows})
    for row in rows:
        seller, buyer = _party(row, "seller"), _party(row, "buyer")
        row["seller"], row["buyer"] = seller, buyer
        row["owner_name"] = (seller if owner_party(row) == "seller" else buyer).get("name", "")
        row["corrects_reference"] = references.get(row["corrects"], "") if row["corrects"] else ""
    return rows


async def _references(ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(ids)
    if not wanted:
        return {}
    rows = await Document.select(Document.id, Document.reference).where(Document.id.is_in(wanted))
    return {r["id"]: r["reference"] for r in rows}


def totals(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind and currency: how many documents, and their net, VAT and total (minor units)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["kind"], row["currency"])
        total = found.setdefault(
            key, {"kind": key[0], "currency": key[1], "count": 0, "net_minor": 0, "vat_minor": 0, "total_minor": 0}
        )
        total["count"] += 1
        for field in ("net_minor", "vat_minor", "total_minor"):
            total[field] += int(row[field])
    order = {k.value: i for i, k in enumerate(DocumentKind)}
    return [found[k] for k in sorted(found, key=lambda k: (order.get(k[0], 99), k[0], k[1]))]


async def ledger_vat_change(span: Period) -> dict[str, int]:
    """How much the ledger's `vat_payable` accounts moved in the period, per currency (the entries of
    transactions effective in it)."""
    rows = await LedgerAccount.raw(
        "SELECT e.currency AS currency, SUM(e.amount_minor) AS moved "
        "FROM ledger_entry e JOIN ledger_account a ON a.id = e.account JOIN ledger_txn t ON t.id = e.txn "
        "WHERE a.kind = {} AND t.effective_at >= {} AND t.effective_at < {} GROUP BY e.currency",
        AccountKind.vat_payable.value,
        span.start,
        span.end,
    )
    return {r["currency"]: db.whole(r["moved"]) for r in rows}


def vat_check(rows: Iterable[dict[str, Any]], ledger: dict[str, int]) -> list[dict[str, Any]]:
    """Per currency: the VAT of the period's invoices and credit notes against the ledger's
    `vat_payable` movement; `ties` when they are equal."""
    documents: dict[str, int] = {}
    for row in rows:
        if row["kind"] in VAT_KINDS:
            documents[row["currency"]] = documents.get(row["currency"], 0) + int(row["vat_minor"])
    checks = []
    for currency in sorted(set(documents) | set(ledger)):
        mine, booked = documents.get(currency, 0), ledger.get(currency, 0)
        checks.append(
            {
                "currency": currency,
                "documents_vat_minor": mine,
                "ledger_vat_minor": booked,
                "difference_minor": mine - booked,
                "ties": mine == booked,
            }
        )
    return checks


@dataclass(frozen=True)
class Export:
    period: Period
    rows: list[dict[str, Any]]
    totals: list[dict[str, Any]]
    checks: list[dict[str, Any]]

    @property
    def ties(self) -> bool:
        return all(c["ties"] for c in self.checks)


async def export(span: Period, kind: DocumentKind | None = None) -> Export:
    """The period's documents, their totals and, over every kind, the VAT check against the ledger."""
    rows = await in_period(span)
    ledger = await ledger_vat_change(span)
    checks = vat_check(rows, ledger)
    if kind is not None:
        rows = [r for r in rows if r["kind"] == kind.value]
    return Export(span, rows, totals(rows), checks)


COLUMNS = [
    "row",
    "reference",
    "kind",
    "issued_at",
    "owner_id",
    "owner_name",
    "seller_country",
    "seller_vat_number",
    "buyer_country",
    "buyer_vat_number",
    "treatment",
    "vat_rate_bp",
    "vat_country",
    "currency",
    "count",
    "net_minor",
    "vat_minor",
    "total_minor",
    "net",
    "vat",
    "total",
    "funding_id",
    "payout_line_id",
    "corrects",
    "ledger_vat_minor",
    "ledger_vat",
    "difference_minor",
    "check",
]


def _cell(text: Any) -> str:
    """A party's text as a cell no spreadsheet runs as a formula (OWASP's apostrophe)."""
    value = "" if text is None else str(text)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _amounts(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"]
    return {
        "net_minor": row["net_minor"],
        "vat_minor": row["vat_minor"],
        "total_minor": row["total_minor"],
        "net": money.to_text(int(row["net_minor"]), currency),
        "vat": money.to_text(int(row["vat_minor"]), currency),
        "total": money.to_text(int(row["total_minor"]), currency),
    }


def csv_rows(found: Export) -> list[dict[str, Any]]:
    """The export's rows: a `document` row each, then a `total` row per kind and currency, then a
    `vat_check` row per currency."""
    out: list[dict[str, Any]] = []
    for r in found.rows:
        issued = r["issued_at"]
        if isinstance(issued, datetime):
            issued = (issued.replace(tzinfo=UTC) if issued.tzinfo is None else issued.astimezone(UTC)).isoformat()
        out.append(
            {
                "row": "document",
                "reference": r["reference"],
                "kind": r["kind"],
                "issued_at": str(issued).replace("+00:00", "Z"),
                "owner_id": r["owner"],
                "owner_name": _cell(r["owner_name"]),
                "seller_country": _cell(r["seller"].get("country", "")),
                "seller_vat_number": _cell(r["seller"].get("vat_number", "")),
                "buyer_country": _cell(r["buyer"].get("country", "")),
                "buyer_vat_number": _cell(r["buyer"].get("vat_number", "")),
                "treatment": r["treatment"],
                "vat_rate_bp": r["vat_rate_bp"],
                "vat_country": r["vat_country"],
                "currency": r["currency"],
                "count": 1,
                **_amounts(r),
                "funding_id": r["funding"] or "",
                "payout_line_id": r["payout_line"] or "",
                "corrects": r["corrects_reference"],
            }
        )
    for t in found.totals:
        out.append({"row": "total", "kind": t["kind"], "currency": t["currency"], "count": t["count"], **_amounts(t)})
    for c in found.checks:
        currency = c["currency"]
        out.append(
            {
                "row": "vat_check",
                "kind": "+".join(VAT_KINDS),
                "currency": currency,
                "vat_minor": c["documents_vat_minor"],
                "vat": money.to_text(c["documents_vat_minor"], currency),
                "ledger_vat_minor": c["ledger_vat_minor"],
                "ledger_vat": money.to_text(c["ledger_vat_minor"], currency),
                "difference_minor": c["difference_minor"],
                "check": "ties" if c["ties"] else "does not tie",
            }
        )
    return out


def csv_text(found: Export) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, restval="", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(csv_rows(found))
    return out.getvalue()
