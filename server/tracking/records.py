"""What the tracking domain hands to pages: typed records built from Piccolo's rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PublisherLink:
    """A publisher's tracked link in a campaign, with where the campaign and their membership stand."""

    id: int
    code: str
    campaign_id: int
    campaign_name: str
    campaign_status: str
    allowed_domains: str
    membership_status: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PublisherLink:
        return cls(**row)


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """The link an approved publisher builds deep links from: its code and where it may send visitors."""

    id: int
    code: str
    allowed_domains: str
    landing_url: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LinkTarget:
        return cls(**row)
