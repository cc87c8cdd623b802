"""A report table: its columns, its rows, and the text of every cell, shared by the HTML page and
the CSV download so that the download holds exactly the rows the page shows.

The page writes each cell for a person, in their locale (12,50 €, 12/05/2026, 3,25 %); the CSV
writes the same value for a program: headings in the reader's language, values in machine formats
(ISO dates, a dot before the decimals, amounts in major units without a symbol, ratios as
percentages to two places), whatever the reader's language."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from server.core import i18n, money
from server.core.i18n import _l

DASH = "–"  # a rate whose denominator is zero


@dataclass(frozen=True)
class Column:
    key: str
    label: Any  # a str, or _l("...") translated when read
    # text; count; money (minor units of the row's "currency"); percent (a Decimal fraction);
    # rate (minor units per event, a Decimal: EPC, CPA); day (a date)
    kind: str = "text"

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


@dataclass
class ReportTable:
    name: str  # what ?table= names for the CSV
    title: Any  # a str, or _l("...")
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    empty: Any = field(default_factory=lambda: _l("Nothing in this period."))

    def cell(self, row: dict[str, Any], column: Column) -> str:
        """The cell as the page shows it, in the reader's locale."""
        value = row.get(column.key)
        if value is None:
            return DASH if column.numeric else ""
        if column.kind == "count":
            return i18n.number_text(int(value))
        if column.kind == "money":
            return money.display(int(value), row["currency"])
        if column.kind == "rate":
            return rate_display(value, row["currency"])
        if column.kind == "percent":
            return percent_display(value)
        if column.kind == "day":
            return i18n.date_text(value)
        return str(value)

    def csv_cell(self, row: dict[str, Any], column: Column) -> str:
        """The cell as the CSV holds it, in machine formats whatever the reader's locale."""
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
        if isinstance(value, date):
            return value.isoformat()
        return str(value)

    def headings(self) -> list[str]:
        return [str(c.label) for c in self.columns]

    def text_rows(self) -> list[list[str]]:
        return [[self.cell(row, c) for c in self.columns] for row in self.rows]

    def csv_rows(self) -> list[list[str]]:
        return [[self.csv_cell(row, c) for c in self.columns] for row in self.rows]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.headings())
        for cells in self.csv_rows():
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


def _major(value: Decimal, currency: str) -> Decimal:
    return Decimal(value).scaleb(-money.exponent(currency)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def rate_text(value: Decimal | None, currency: str) -> str:
    """Minor units per event in major units, to four places: EPC 0.1234 EUR (the CSV's form)."""
    if value is None:
        return DASH
    return f"{_major(value, currency)}"


def rate_display(value: Decimal | None, currency: str) -> str:
    """The same in the reader's locale: 0,1234 in French."""
    if value is None:
        return DASH
    return i18n.number_text(_major(value, currency), places=4)


def percent_display(value: Decimal | None) -> str:
    """A ratio as a percentage to two places in the reader's locale: 12,50 % in French."""
    if value is None:
        return DASH
    return i18n.percent_text(value, places=2)


def percent_text(value: Decimal | None) -> str:
    """A ratio as a percentage to two places, the CSV's form: 12.50%."""
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
