"""A report table: its columns, its rows, and the text of every cell, shared by the HTML page and
the CSV download so that the download holds exactly what the page shows."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from server.core import money

DASH = "–"  # a rate whose denominator is zero


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    # text; count; money (minor units of the row's "currency"); percent (a Decimal fraction);
    # rate (minor units per event, a Decimal: EPC, CPA)
    kind: str = "text"

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


@dataclass
class ReportTable:
    name: str  # what ?table= names for the CSV
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    empty: str = "Nothing in this period."

    def cell(self, row: dict[str, Any], column: Column) -> str:
        value = row.get(column.key)
        if value is None:
            return DASH if column.numeric else ""
        if column.kind == "count":
            return str(int(value))
        if column.kind == "money":
            return money.to_text(int(value), row["currency"])
        if column.kind == "rate":
            return rate_text(value, row["currency"])
        if column.kind == "percent":
            return percent_text(value)
        return str(value)

    def text_rows(self) -> list[list[str]]:
        return [[self.cell(row, c) for c in self.columns] for row in self.rows]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([c.label for c in self.columns])
        for cells in self.text_rows():
            # A cell a spreadsheet would run as a formula (a sub-ID is the publisher's free text)
            # is prefixed with an apostrophe, as OWASP advises for CSV exports.
            writer.writerow(
                ["'" + c if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(c) else c for c in cells]
            )
        return out.getvalue()

    def as_json(self) -> list[dict[str, Any]]:
        """Rows for the JSON API: raw integers (minor units) and exact decimals as strings."""
        return [
            {
                k: (str(v) if isinstance(v, Decimal) else v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in row.items()
            }
            for row in self.rows
        ]


def chart_number(amount_minor: int, currency: str) -> float:
    """A chart's display number only (never stored or summed): 1250 EUR -> 12.5."""
    return float(money.to_text(amount_minor, currency))


def rate_text(value: Decimal | None, currency: str) -> str:
    """Minor units per event in major units, to four places: EPC 0.1234 EUR."""
    if value is None:
        return DASH
    return f"{Decimal(value).scaleb(-money.exponent(currency)).quantize(Decimal('0.0001'), ROUND_HALF_UP)}"


def percent_text(value: Decimal | None) -> str:
    if value is None:
        return DASH
    return f"{(Decimal(value) * 100).quantize(Decimal('0.01'), ROUND_HALF_UP)}%"


def _number(text: str) -> bool:
    try:
        Decimal(text.rstrip("%"))
    except ArithmeticError:
        return False
    return True


def ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator, exact to 12 places; None when the denominator is zero."""
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.000000000001"), ROUND_HALF_UP)
