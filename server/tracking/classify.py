"""Traffic classification: why a click is or is not billed, bot detection, browser family.

Every click is stored with one Reason; only `valid` clicks count towards budgets, caps and
publisher earnings. Reason values are stable machine-readable codes (they are stored and shown
in the API); labels are for people.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Any

from server.core.i18n import _l
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
    # Request quality (server/tracking/classify.py: request_reason), final when the click is answered.
    prefetch = "prefetch"
    datacenter = "datacenter"
    suspicious_headers = "suspicious_headers"

    @property
    def label(self) -> str:
        return str(REASON_LABELS[self])


REASON_LABELS: dict[Reason, Any] = {  # lazy: said in the reader's language when shown
    Reason.valid: _l("Valid click"),
    Reason.bot: _l("Bot or crawler user agent"),
    Reason.head_request: _l("Link preview / HEAD request"),
    Reason.duplicate: _l("Repeat click by the same visitor"),
    Reason.campaign_paused: _l("Campaign paused"),
    Reason.campaign_ended: _l("Campaign ended"),
    Reason.over_budget: _l("Campaign budget spent"),
    Reason.over_cap: _l("Click cap reached"),
    Reason.not_member: _l("Publisher no longer approved in the campaign"),
    Reason.rate_limited: _l("Too many clicks from one network"),
    Reason.offer_invalid: _l("Ad click with a forged or altered offer"),
    Reason.offer_expired: _l("Ad click on an expired offer"),
    Reason.offer_replayed: _l("Ad clicked again from the same offer"),
    Reason.not_viewed: _l("Ad click without a counted view"),
    Reason.datacenter: _l("From a cloud or hosting network"),
    Reason.prefetch: _l("Browser prefetch or preview (link not clicked)"),
    Reason.suspicious_headers: _l("Browser user agent without a browser's headers"),
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


# --- request quality: prefetches and forged browser headers ---------------------------------------
#
# Browsers' speculative loads say so: Chromium's prefetch and prerender send `Sec-Purpose: prefetch`
# (`prefetch;prerender`), older Chromium and others `Purpose: prefetch`, Firefox `X-Moz: prefetch`,
# Safari's Top Sites previews `X-Purpose: preview`. The reader never clicked: redirected as usual,
# never billed.
PURPOSE_HEADERS = frozenset((b"sec-purpose", b"purpose", b"x-moz", b"x-purpose"))


def is_speculative(value: bytes) -> bool:
    """True for a purpose header's value that names a prefetch, a prerender or a preview."""
    value = value.lower()
    return b"prefetch" in value or b"preview" in value or b"prerender" in value


# Which claimed browsers always send the Fetch Metadata headers (Sec-Fetch-Site/-Mode/-Dest) on a
# top-level navigation over HTTPS, with Accept and Accept-Language: Chromium since 80 (Chrome,
# Edge, Opera, Samsung Internet, Brave, on desktop and Android; not Android's WebView, whose apps
# may rewrite headers, and not iOS, where every browser is WebKit) and Firefox since 90 (not
# Firefox for iOS). Safari and everything else are never judged on their headers: when in doubt,
# don't flag.
_CHROMIUM = re.compile(r"(?:Chrome|Chromium)/(\d+)\.")
_FIREFOX = re.compile(r"Firefox/(\d+)\.")


@lru_cache(maxsize=4096)
def sends_fetch_metadata(user_agent: str) -> bool:
    """True when the User-Agent claims a browser that sends Sec-Fetch-*, Accept and Accept-Language
    on every HTTPS navigation (the callers have already ruled out bots)."""
    if not user_agent.startswith("Mozilla/5.0 (") or "; wv)" in user_agent:
        return False
    if "iPhone" in user_agent or "iPad" in user_agent or "iPod" in user_agent:
        return False
    match = _CHROMIUM.search(user_agent)
    if match is not None:
        return int(match.group(1)) >= 80 and "Edge/" not in user_agent  # Edge/ is EdgeHTML, not Chromium
    match = _FIREFOX.search(user_agent)
    return match is not None and int(match.group(1)) >= 90 and "FxiOS/" not in user_agent


def header_reason(
    user_agent: str, *, secure: bool, speculative: bool, accept: bool, language: bool, fetch_metadata: bool
) -> Reason | None:
    """Why a request's headers make its click invalid (None: they don't). `secure`: it came over
    HTTPS (browsers send Fetch Metadata to secure origins only, so plain HTTP is never judged);
    `speculative`: a purpose header named a prefetch or preview; `accept`, `language`,
    `fetch_metadata`: Accept, Accept-Language and any Sec-Fetch-Site/-Mode were present."""
    if speculative:
        return Reason.prefetch
    if secure and not (accept and language and fetch_metadata) and sends_fetch_metadata(user_agent):
        return Reason.suspicious_headers
    return None


def request_reason(user_agent: str, headers: Mapping[str, str], *, secure: bool) -> Reason | None:
    """header_reason for a request's headers by name (any case): what the click redirect decides
    from the headers it reads as they come (server/http/tracking/public.py)."""
    names = {name.lower().encode("latin-1"): value for name, value in headers.items()}
    return header_reason(
        user_agent,
        secure=secure,
        speculative=any(is_speculative(v.encode("latin-1")) for n, v in names.items() if n in PURPOSE_HEADERS),
        accept=b"accept" in names,
        language=b"accept-language" in names,
        fetch_metadata=b"sec-fetch-site" in names or b"sec-fetch-mode" in names,
    )
