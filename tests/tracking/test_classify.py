"""Traffic classification: reason codes and labels, bots and link previews, browser families."""

from __future__ import annotations

import pytest

from server.tracking import classify
from server.tracking.classify import MAX_USER_AGENT_LENGTH, REASON_LABELS, Reason, is_bot, ua_family

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"
)
CHROME_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
FIREFOX_ANDROID = "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0"
FIREFOX_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "FxiOS/125.0 Mobile/15E148 Safari/605.1.15"
)
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
EDGE = CHROME + " Edg/124.0.2478.51"
EDGE_ANDROID = CHROME_ANDROID + " EdgA/124.0.2478.64"
EDGE_LEGACY = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 "
    "Safari/537.36 Edge/18.19045"
)
OPERA = CHROME + " OPR/109.0.0.0"
OPERA_MINI = "Opera/9.80 (Android; Opera Mini/36.2.2254/119.132; U; id) Presto/2.12.423 Version/12.16"
SAMSUNG = (
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 "
    "Chrome/117.0.0.0 Mobile Safari/537.36"
)
CUBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Mobile Safari/537.36"
)
FACEBOOK_IN_APP = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBAV/456.0.0.40.109;FBBV/1;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.4;FBSS/3;FBID/phone;"
    "FBLC/en_US;FBOP/5]"
)
INSTAGRAM_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240305.019; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/123.0.6312.99 Mobile Safari/537.36 Instagram 326.0.0.42.90 Android"
)
PINTEREST_APP = CHROME_ANDROID + " [Pinterest/Android]"

HUMANS = [
    CHROME,
    CHROME_ANDROID,
    CHROME_IOS,
    FIREFOX,
    FIREFOX_ANDROID,
    FIREFOX_IOS,
    SAFARI_MAC,
    SAFARI_IPHONE,
    EDGE,
    EDGE_ANDROID,
    EDGE_LEGACY,
    OPERA,
    OPERA_MINI,
    SAMSUNG,
    CUBOT_PHONE,
    FACEBOOK_IN_APP,
    INSTAGRAM_ANDROID,
    PINTEREST_APP,
]

BOTS = {
    "Googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Googlebot smartphone": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.118 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ),
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Facebot": "Facebot",
    "Twitterbot": "Twitterbot/1.0",
    "Slackbot-LinkExpanding": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Slack-ImgProxy": "Slack-ImgProxy (+https://api.slack.com/robots)",
    "Discordbot": "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "WhatsApp": "WhatsApp/2.23.20.0 A",
    "TelegramBot": "TelegramBot (like TwitterBot)",
    "LinkedInBot": "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "SkypeUriPreview": "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "Applebot": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 "
        "Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"
    ),
    "Pinterestbot": "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
    "redditbot": "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
    "Embedly": "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
    "Iframely": "Iframely/1.3.1 (+https://iframely.com/docs/about)",
    "curl": "curl/8.5.0",
    "wget": "Wget/1.21.4",
    "python-requests": "python-requests/2.31.0",
    "python-httpx": "python-httpx/0.27.0",
    "aiohttp": "Python/3.11 aiohttp/3.9.5",
    "Go-http-client": "Go-http-client/1.1",
    "okhttp": "okhttp/4.12.0",
    "Java": "Java/17.0.2",
    "HeadlessChrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36"
    ),
    "PhantomJS": (
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1"
    ),
    "generic bot": "AcmeBot/1.0 (+https://acme.example/bot)",
    "generic crawler": "Mozilla/5.0 (compatible; SomeCrawler/3.1)",
    "generic spider": "my-spider/1.0",
    "generic preview": "Zoom Link Preview",
    "Bluesky": "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
    "Mastodon": "Mastodon/4.2.1 (http.rb/5.1.1; +https://mastodon.social/)",
    "MicrosoftPreview": "MicrosoftPreview/2.0 (+https://aka.ms/MicrosoftPreview)",
    "YandexBot": "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
}


# --- reasons ----------------------------------------------------------------------------------------


def test_reason_codes_are_the_stored_strings():
    assert [r.value for r in Reason] == [
        "valid",
        "bot",
        "head_request",
        "duplicate",
        "campaign_paused",
        "campaign_ended",
        "over_budget",
        "over_cap",
        "not_member",
        "rate_limited",
        "offer_invalid",
        "offer_expired",
        "offer_replayed",
        "not_viewed",
        "prefetch",
        "datacenter",
        "suspicious_headers",
    ]
    assert Reason("over_cap") is Reason.over_cap
    assert f"{Reason.bot}" == "bot"  # StrEnum formats as its code, ready for a row or a JSON body


def test_every_reason_has_a_distinct_human_label():
    assert set(REASON_LABELS) == set(Reason)
    assert len({str(label) for label in REASON_LABELS.values()}) == len(Reason)
    assert Reason.bot.label == "Bot or crawler user agent"
    assert Reason.head_request.label == "Link preview / HEAD request"
    assert Reason.not_member.label == "Publisher no longer approved in the campaign"


# --- is_bot -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_agent", BOTS.values(), ids=BOTS.keys())
def test_crawlers_previews_and_tools_are_bots(user_agent):
    assert is_bot(user_agent) is True


@pytest.mark.parametrize("user_agent", HUMANS)
def test_browsers_and_in_app_browsers_are_not_bots(user_agent):
    assert is_bot(user_agent) is False


@pytest.mark.parametrize("user_agent", ["", " ", "\t"])
def test_a_missing_or_blank_user_agent_is_a_bot(user_agent):
    assert is_bot(user_agent) is True


def test_an_oversized_user_agent_is_a_bot_and_is_not_cached():
    huge = CHROME + " " + "x" * MAX_USER_AGENT_LENGTH
    before = classify._is_bot.cache_info().currsize
    assert is_bot(huge) is True
    assert ua_family(huge) == "bot"
    assert classify._is_bot.cache_info().currsize == before
    assert is_bot(CHROME.ljust(MAX_USER_AGENT_LENGTH)) is False  # at the limit it is still read


def test_repeated_user_agents_are_answered_from_the_cache():
    agent = CHROME + " cache-probe/1"
    hits = classify._is_bot.cache_info().hits
    assert is_bot(agent) is False
    assert is_bot(agent) is False
    assert classify._is_bot.cache_info().hits == hits + 1


# --- ua_family --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "family"),
    [
        (CHROME, "Chrome"),
        (CHROME_ANDROID, "Chrome"),
        (CHROME_IOS, "Chrome"),
        (INSTAGRAM_ANDROID, "Chrome"),
        (FIREFOX, "Firefox"),
        (FIREFOX_ANDROID, "Firefox"),
        (FIREFOX_IOS, "Firefox"),
        (SAFARI_MAC, "Safari"),
        (SAFARI_IPHONE, "Safari"),
        (EDGE, "Edge"),
        (EDGE_ANDROID, "Edge"),
        (EDGE_LEGACY, "Edge"),
        (OPERA, "Opera"),
        (OPERA_MINI, "Opera"),
        (SAMSUNG, "Samsung Internet"),
        (FACEBOOK_IN_APP, "other"),
        ("SomeTV/1.0 (SmartTV)", "other"),
        (BOTS["Googlebot smartphone"], "bot"),
        (BOTS["curl"], "bot"),
        ("", "bot"),
    ],
)
def test_user_agents_fall_into_short_families(user_agent, family):
    assert ua_family(user_agent) == family
