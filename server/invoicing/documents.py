"""Issuing documents: numbered without a gap, written once, in the caller's transaction.

`issue` must run inside the database transaction of the money movement the document describes (the
ledger posting of a credited top-up, a refund, a settled payout line). Its number comes from
`document_counter` by an upsert that increments and returns it: concurrent issuers in one series and
year queue on that row until their transaction ends, and a transaction that fails takes its
increment with it. So each series counts 1, 2, 3 … per year with no hole and no repeat, whatever
fails. Issuing again for the same `source_key` returns the document issued first."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from server.core import db
from server.invoicing.tables import Document, DocumentCounter, DocumentKind, VatTreatment


def reference(series: str, year: int, number: int) -> str:
    return f"{series}-{year}-{number:06d}"


def dumps(value: Any) -> str:
    """The JSON kept in a document: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


async def next_number(series: str, year: int) -> int:
    """The next number of `series` in `year`, taken in the current transaction."""
    rows = await DocumentCounter.raw(
        "INSERT INTO document_counter (series, year, last) VALUES ({}, {}, 1) "
        "ON CONFLICT (series, year) DO UPDATE SET last = document_counter.last + 1 RETURNING last",
        series,
        year,
    )
    return int(rows[0]["last"])


async def by_source(source_key: str) -> dict[str, Any] | None:
    return await Document.select().where(Document.source_key == source_key).first()


async def issue(
    *,
    kind: DocumentKind,
    series: str,
    owner: int,
    source_key: str,
    issued_at: datetime,
    currency: str,
    net_minor: int,
    vat_minor: int,
    vat_rate_bp: int,
    vat_country: str,
    treatment: VatTreatment,
    locale: str,
    seller: dict[str, Any],
    buyer: dict[str, Any],
    lines: list[dict[str, Any]],
    mentions: list[str],
    funding: int | None = None,
    payout_line: int | None = None,
    corrects: int | None = None,
) -> dict[str, Any]:
    """Issue a document (or return the one already issued for `source_key`). In a transaction only."""
    if db.engine().current_transaction.get() is None:
        raise RuntimeError("a document is issued in the transaction of what it documents")
    found = await by_source(source_key)
    if found is not None:
        return found
    year = issued_at.year
    number = await next_number(series, year)
    row = {
        "kind": kind.value,
        "series": series,
        "year": year,
        "number": number,
        "reference": reference(series, year, number),
        "source_key": source_key,
        "owner": owner,
        "funding": funding,
        "payout_line": payout_line,
        "corrects": corrects,
        "issued_at": issued_at,
        "currency": currency,
        "net_minor": net_minor,
        "vat_minor": vat_minor,
        "total_minor": net_minor + vat_minor,
        "vat_rate_bp": vat_rate_bp,
        "vat_country": vat_country,
        "treatment": treatment.value,
        "locale": locale,
        "seller": dumps(seller),
        "buyer": dumps(buyer),
        "lines": dumps(lines),
        "mentions": dumps(mentions),
    }
    inserted = await Document.insert(Document(**row)).returning(Document.id)
    return {"id": inserted[0]["id"], **row}


def parsed(document: dict[str, Any]) -> dict[str, Any]:
    """A document row with its JSON fields read back (seller, buyer, lines, mentions)."""
    return {**document, **{k: json.loads(document[k]) for k in ("seller", "buyer", "lines", "mentions")}}
