"""What the ads domain hands to pages: typed records built from Piccolo's rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SlotListing:
    """One of a publisher's ad slots as their slots page lists it."""

    id: int
    name: str
    format: str
    status: str
    public_key: str
    domains: str
    fallback: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SlotListing:
        return cls(**row)
