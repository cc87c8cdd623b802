"""The amounts of a campaign as they were saved, in the advertiser's locale: shown once after each
save ("You pay 12,50 € per sale…") so a misread amount is seen before any conversion is paid."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from server.campaigns.tables import PayoutModel
from server.core import money
from server.core.i18n import _, percent_text


def saved_notice(campaign: Mapping[str, Any], goals: list[Mapping[str, Any]]) -> str:
    currency = campaign["currency"]

    def shown(amount: int) -> str:
        return money.display_local(amount, currency)

    def share(bp: int) -> str:
        return percent_text(Decimal(bp) / money.BASIS_POINTS, places=2)

    parts = []
    for goal in goals:
        if goal["payout_model"] == PayoutModel.revshare.value:
            values = {"goal": goal["name"], "price": share(goal["advertiser_amount"])}
            values["payout"] = share(goal["publisher_amount"])
            if goal.get("max_sale_minor") is not None:
                parts.append(
                    _(
                        "%(goal)s: you pay %(price)s of each sale, the publisher earns %(payout)s, "
                        "sales above %(most)s refused",
                        most=shown(goal["max_sale_minor"]),
                        **values,
                    )
                )
            else:
                parts.append(_("%(goal)s: you pay %(price)s of each sale, the publisher earns %(payout)s", **values))
        else:
            parts.append(
                _(
                    "%(goal)s: you pay %(price)s, the publisher earns %(payout)s",
                    goal=goal["name"],
                    price=shown(goal["advertiser_amount"]),
                    payout=shown(goal["publisher_amount"]),
                )
            )
    total, daily = campaign.get("total_budget_minor"), campaign.get("daily_budget_minor")
    parts.append(_("total budget %(amount)s", amount=shown(total)) if total is not None else _("no total budget"))
    parts.append(_("daily budget %(amount)s", amount=shown(daily)) if daily is not None else _("no daily budget"))
    return _("Saved. Amounts as understood: %(amounts)s.", amounts="; ".join(parts))
