"""The amounts of a campaign as they were saved, in the advertiser's locale: shown once after each
save ("You pay 12,50 € per sale…") so a misread amount is seen before any conversion is paid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.campaigns.tables import PayoutModel
from server.core import money


def saved_notice(campaign: Mapping[str, Any], goals: list[Mapping[str, Any]]) -> str:
    currency = campaign["currency"]

    def shown(amount: int) -> str:
        return money.display_local(amount, currency)

    parts = []
    for goal in goals:
        if goal["payout_model"] == PayoutModel.revshare.value:
            terms = (
                f"you pay {money.percent_text(goal['advertiser_amount'])} % of each sale, the publisher earns "
                f"{money.percent_text(goal['publisher_amount'])} %"
            )
            if goal.get("max_sale_minor") is not None:
                terms += f", sales above {shown(goal['max_sale_minor'])} refused"
        else:
            terms = f"you pay {shown(goal['advertiser_amount'])}, the publisher earns {shown(goal['publisher_amount'])}"
        parts.append(f"{goal['name']}: {terms}")
    for column, label in (("total_budget_minor", "total budget"), ("daily_budget_minor", "daily budget")):
        amount = campaign.get(column)
        parts.append(f"{label} {shown(amount)}" if amount is not None else f"no {label}")
    return "Saved. Amounts as understood: " + "; ".join(parts) + "."
