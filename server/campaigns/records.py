"""What the campaigns domain hands to pages: typed records built from Piccolo's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CampaignListing:
    """One of an advertiser's campaigns as their campaign list and pickers show it."""

    id: int
    name: str
    status: str
    currency: str
    visibility: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CampaignListing:
        return cls(**row)


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """One of an advertiser's campaigns with what still stands between it and publishers: money
    to pay them (`funded`: the advertiser's balance in its currency is above zero), creatives to
    show, and applications waiting for the advertiser's answer."""

    campaign: CampaignListing
    funded: bool
    has_creatives: bool
    waiting: int


@dataclass(frozen=True, slots=True)
class AdvertiserProfile:
    """What publishers see of an advertiser in the marketplace: their public profile."""

    company_name: str
    website: str
    since: datetime


@dataclass(frozen=True, slots=True)
class ApplicantProfile:
    """What a publisher told about their site, shown to the advertiser deciding on them."""

    display_name: str
    blog_url: str
    audience: str


@dataclass(frozen=True, slots=True)
class Applicant:
    """A publisher's membership in a campaign (applied, invited, approved, ...) with their profile if
    they have one. No e-mail address: advertisers know publishers by their public profile only."""

    id: int
    status: str
    created_at: datetime
    note: str
    publisher_id: int
    profile: ApplicantProfile | None

    @classmethod
    def from_row(cls, row: dict[str, Any], profile: ApplicantProfile | None) -> Applicant:
        return cls(**row, profile=profile)

    @property
    def name(self) -> str:
        """What to call the publisher: their public name, else their number."""
        return self.profile.display_name if self.profile and self.profile.display_name else f"#{self.publisher_id}"
