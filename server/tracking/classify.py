"""Traffic classification: why a click is or is not billed, bot detection, browser family.

Every click is stored with one Reason; only `valid` clicks count towards budgets, caps and
publisher earnings. Reason values are stable machine-readable codes (they are stored and shown
in the API); labels are for people.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

from server.tracking.crawlers import CRAWLERS, trie_regex

# No browser sends a User-Agent this long; longer ones come from tools or from someone making us
# scan big headers, so they are bots without being scanned.
MAX_USER_AGENT_LENGTH = 512


class Reason(StrEnum):
    valid = "valid"
    bot = "bot"
    head_request = "head_request"
    duplicate = "duplicate"
    campaign_paused = "campaign_paused"
    campaign_ended = "campaign_ended"
    over_budget = "over_budget"
    over_cap = "over_cap"
    not_member = "not_member"
    rate_limited = "rate_limited"
    # Clicks on ads carry their offer (/c/{code}?o=…, server/ads/decision.py: OfferClicks).
    offer_invalid = "offer_invalid"
    offer_expired = "offer_expired"
    offer_replayed = "offer_replayed"
    not_viewed = "not_viewed"

    @property
    def label(self) -> str:
        return REASON_LABELS[self]


REASON_LABELS: dict[Reason, str] = {
    Reason.valid: "Valid click",
    Reason.bot: "Bot or crawler user agent",
    Reason.head_request: "Link preview / HEAD request",
    Reason.duplicate: "Repeat click by the same visitor",
    Reason.campaign_paused: "Campaign paused",
    Reason.campaign_ended: "Campaign ended",
    Reason.over_budget: "Campaign budget spent",
    Reason.over_cap: "Click cap reached",
    Reason.not_member: "Publisher no longer approved in the campaign",
    Reason.rate_limited: "Too many clicks from one network",
    Reason.offer_invalid: "Ad click with a forged or altered offer",
    Reason.offer_expired: "Ad click on an expired offer",
    Reason.offer_replayed: "Ad clicked again from the same offer",
    Reason.not_viewed: "Ad click without a counted view",
}


def reason_label(reason: str) -> str:
    """A stored reason in words; one this code no longer knows, as itself with spaces."""
    try:
        return Reason(reason).label
    except ValueError:
        return reason.replace("_", " ")


# Link-preview fetchers and HTTP libraries, matched anywhere in the lower-cased User-Agent before
# CrawlerDetect's lists. Most are in those lists too; naming them here keeps the previews that
# shared links get (chat apps, social networks) out of billed clicks whatever the lists do next.
_TOOL_TOKENS = (
    "googlebot",
    "bingbot",
    "facebookexternalhit",
    "facebot",
    "twitterbot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "whatsapp/",
    "telegrambot",
    "linkedinbot",
    "skypeuripreview",
    "applebot",
    "pinterestbot",
    "redditbot",
    "embedly",
    "iframely",
    "curl/",
    "wget/",
    "python-requests",
    "python-httpx",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "headlesschrome",
    "phantomjs",
    "crawler",
    "spider",
    "preview",
    "cardyb",
    "mastodon/",
)
_TOOLS = trie_regex(_TOOL_TOKENS)


def is_bot(user_agent: str) -> bool:
    """True for crawlers, link-preview fetchers, HTTP tools and requests without a User-Agent."""
    if not user_agent or len(user_agent) > MAX_USER_AGENT_LENGTH:
        return True
    return _is_bot(user_agent)


# User-Agents repeat (a handful of browser builds make most traffic), so a small cache turns a
# scan of a few microseconds into a dictionary look-up; its size bounds the memory at ~2 MB.
@lru_cache(maxsize=4096)
def _is_bot(user_agent: str) -> bool:
    if not user_agent.strip():
        return True
    if _TOOLS.search(user_agent.lower()) is not None:
        return True
    return CRAWLERS.matches(user_agent)


# Checked in this order because browsers append their own token to the ones they descend from:
# Edge and Opera and Samsung Internet say "Chrome/", Chrome says "Safari/".
_FAMILIES = (
    ("Edge", ("Edg/", "EdgA/", "EdgiOS/", "Edge/")),
    ("Opera", ("OPR/", "OPT/", "OPiOS/", "Opera")),
    ("Samsung Internet", ("SamsungBrowser/",)),
    ("Firefox", ("Firefox/", "FxiOS/")),
    ("Chrome", ("Chrome/", "CriOS/", "Chromium/")),
    ("Safari", ("Safari/",)),
)


def ua_family(user_agent: str) -> str:
    """A short browser family for reports: Chrome, Firefox, Safari, Edge, Opera, Samsung Internet,
    bot or other (in-app browsers without a browser token, unknown clients)."""
    if not user_agent or len(user_agent) > MAX_USER_AGENT_LENGTH:
        return "bot"  # before the cache, so it never holds an oversized header
    return _ua_family(user_agent)


@lru_cache(maxsize=4096)
def _ua_family(user_agent: str) -> str:
    if _is_bot(user_agent):
        return "bot"
    for family, tokens in _FAMILIES:
        for token in tokens:
            if token in user_agent:
                return family
    return "other"
