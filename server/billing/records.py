"""What the billing domain hands to pages: typed records built from Piccolo's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class FundingLine:
    """One top-up as the billing page and the return-from-Stripe page show it."""

    id: int
    created_at: datetime
    amount_minor: int  # charged by Stripe: the amount credited plus the VAT
    vat_minor: int
    currency: str
    status: str
    refunded_minor: int
    disputed_minor: int
    receipt_url: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FundingLine:
        return cls(**row)

    @property
    def credited_minor(self) -> int:
        """What the top-up adds to the balance: the charge less its VAT."""
        return self.amount_minor - self.vat_minor


@dataclass(frozen=True, slots=True)
class Balance:
    """An advertiser's money in one currency: what they hold, what they owe, and whether it runs low."""

    currency: str
    balance_minor: int
    owed_minor: int
    threshold_minor: int
    low: bool
