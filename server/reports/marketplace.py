"""What the publishers' marketplace shows of each campaign's results across the network: valid
clicks, conversions and publishers' earnings over the last 30 days, hence its EPC and conversion
rate. Read from the hourly rollups and the CPC/CPM earning hours in one statement for the whole
page (the hour not rolled up yet is left out: a 30-day figure does not need it).

Statements hold constants only; every value is bound."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from server.core import clock
from server.reports.queries import CONVERSIONS, EARNINGS, VALID
from server.reports.report_table import ratio
from server.reports.tables import RollupCursor

DAYS = 30
# Below this many valid clicks an EPC or a conversion rate says more about chance than about the
# campaign: the marketplace shows a dash and says why.
MIN_CLICKS = 100

_EARNED_CONVERSIONS = f"{CONVERSIONS['payout_pending']} + {CONVERSIONS['payout_confirmed']}"
_EARNED_HOURS = f"{EARNINGS['payout_pending']} + {EARNINGS['payout_confirmed']}"
_PARTS = (  # constants only, and placeholders
    f"SELECT campaign, SUM(clicks) AS clicks, 0 AS conversions, 0 AS earned FROM traffic_campaign_hour "  # noqa: S608
    f"WHERE reason = '{VALID}' AND hour >= {{}} AND campaign IN ({{ids}}) GROUP BY campaign",
    f"SELECT campaign, 0, {CONVERSIONS['conversions']}, {_EARNED_CONVERSIONS} FROM conversion_hour "  # noqa: S608
    "WHERE hour >= {} AND campaign IN ({ids}) GROUP BY campaign",
    f"SELECT campaign, 0, 0, {_EARNED_HOURS} FROM click_earning "  # noqa: S608
    "WHERE hour >= {} AND campaign IN ({ids}) GROUP BY campaign",
    f"SELECT campaign, 0, 0, {_EARNED_HOURS} FROM impression_earning "  # noqa: S608
    "WHERE hour >= {} AND campaign IN ({ids}) GROUP BY campaign",
)


@dataclass(frozen=True, slots=True)
class CampaignFigures:
    """A campaign's network-wide results over the last DAYS days; the rates are None below
    MIN_CLICKS valid clicks. `earnings_minor` is what publishers earned (pending or confirmed)."""

    clicks: int
    conversions: int
    earnings_minor: int

    @property
    def enough_clicks(self) -> bool:
        return self.clicks >= MIN_CLICKS

    @property
    def epc_minor(self) -> Decimal | None:
        """Earnings per valid click in minor units of the campaign's currency (exact decimal)."""
        return ratio(self.earnings_minor, self.clicks) if self.enough_clicks else None

    @property
    def conversion_rate(self) -> Decimal | None:
        return ratio(self.conversions, self.clicks) if self.enough_clicks else None


NO_FIGURES = CampaignFigures(0, 0, 0)


async def campaign_figures(campaign_ids: Sequence[int], now: datetime | None = None) -> dict[int, CampaignFigures]:
    """Each campaign's figures over the last DAYS days (NO_FIGURES for one without any)."""
    ids = sorted(set(campaign_ids))
    if not ids:
        return {}
    since = (now or clock.now()) - timedelta(days=DAYS)
    placeholders = ", ".join("{}" for _ in ids)
    parts = " UNION ALL ".join(part.replace("{ids}", placeholders) for part in _PARTS)
    sql = (
        "SELECT campaign, SUM(clicks) AS clicks, SUM(conversions) AS conversions, SUM(earned) AS earned "  # noqa: S608
        f"FROM ({parts}) AS figures GROUP BY campaign"
    )
    rows = await RollupCursor.raw(sql, *([since, *ids] * len(_PARTS)))
    found = {
        r["campaign"]: CampaignFigures(int(r["clicks"] or 0), int(r["conversions"] or 0), int(r["earned"] or 0))
        for r in rows
    }
    return {i: found.get(i, NO_FIGURES) for i in ids}
