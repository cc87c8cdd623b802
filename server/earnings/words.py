"""Why CPC clicks or CPM impressions went unpaid, in the reader's language.

The worker stores the reason in English when it prices an hour (`unpaid_reason`, written by
server/earnings/cpc.py and cpm.py `describe`: part of the row's record, read by finance too). A page
shows it through `unpaid_words`, which reads the stored parts back and says each in the request's
language, numbers in its format; a part it does not know (an older wording) is shown as stored."""

from __future__ import annotations

import re
from collections.abc import Callable

from server.core.i18n import _, ngettext, number_text

SEPARATOR = "; "  # how describe() joins the parts


def _over_publisher_cap(n: int, cap: str) -> str:
    return ngettext(
        "%(num)s over the daily cap of %(cap)s clicks per publisher",
        "%(num)s over the daily cap of %(cap)s clicks per publisher",
        n,
        num=number_text(n),
        cap=number_text(int(cap)),
    )


def _over_campaign_cap(n: int, cap: str) -> str:
    return ngettext(
        "%(num)s over the campaign's daily cap of %(cap)s clicks",
        "%(num)s over the campaign's daily cap of %(cap)s clicks",
        n,
        num=number_text(n),
        cap=number_text(int(cap)),
    )


def _over_budget(n: int, budget: str) -> str:
    if budget == "the daily budget":
        return ngettext(
            "%(num)s beyond what the daily budget still allowed",
            "%(num)s beyond what the daily budget still allowed",
            n,
            num=number_text(n),
        )
    if budget == "the total budget":
        return ngettext(
            "%(num)s beyond what the total budget still allowed",
            "%(num)s beyond what the total budget still allowed",
            n,
            num=number_text(n),
        )
    return ngettext(
        "%(num)s beyond what the budget still allowed",
        "%(num)s beyond what the budget still allowed",
        n,
        num=number_text(n),
    )


_PARTS: list[tuple[re.Pattern[str], Callable[[int, str], str]]] = [
    (re.compile(r"(\d+) over the daily cap of (\d+) clicks per publisher"), _over_publisher_cap),
    (re.compile(r"(\d+) over the campaign's daily cap of (\d+) clicks"), _over_campaign_cap),
    (re.compile(r"(\d+) beyond what (the daily budget|the total budget|the budget) still allowed"), _over_budget),
]


def _part(stored: str) -> str:
    for pattern, say in _PARTS:
        found = pattern.fullmatch(stored)
        if found:
            return say(int(found.group(1)), found.group(2))
    return stored


def unpaid_words(stored: str) -> str:
    """A stored unpaid reason ("3 over the daily cap of 100 clicks per publisher; 2 beyond what the
    daily budget still allowed") in the request's language, part by part."""
    if not stored:
        return ""
    parts = [_part(part) for part in stored.split(SEPARATOR)]
    text = parts[0]
    for part in parts[1:]:
        text = _("%(earlier)s; %(next)s", earlier=text, next=part)
    return text
