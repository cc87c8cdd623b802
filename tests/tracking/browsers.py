"""Real browsers' User-Agents and the headers each sends on a top-level navigation (a reader
following a link), for the click-quality tests. Header sets as the browsers send them in 2026:
Chromium's (Chrome, Edge, Opera, Samsung Internet) with client hints and Fetch Metadata, Firefox's
and Safari's with Fetch Metadata (Safari since 16.4)."""

from __future__ import annotations

CHROME_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36"
)

# (family, User-Agent); Chromium's get their brand for sec-ch-ua.
USER_AGENTS: list[tuple[str, str]] = [
    ("chrome", CHROME_DESKTOP),
    (
        "chrome",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/141.0.0.0 Safari/537.36",
    ),
    ("chrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
    ("chrome", CHROME_ANDROID),
    (
        "chrome",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 "
        "Mobile Safari/537.36",
    ),
    (
        "edge",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 "
        "Safari/537.36 Edg/142.0.0.0",
    ),
    (
        "edge",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 "
        "Mobile Safari/537.36 EdgA/142.0.0.0",
    ),
    (
        "opera",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 "
        "Safari/537.36 OPR/124.0.0.0",
    ),
    (
        "samsung",
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36",
    ),
    (
        "samsung",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/29.0 "
        "Chrome/136.0.0.0 Mobile Safari/537.36",
    ),
    ("firefox", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:145.0) Gecko/20100101 Firefox/145.0"),
    ("firefox", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:144.0) Gecko/20100101 Firefox/144.0"),
    ("firefox", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0"),
    ("firefox", "Mozilla/5.0 (Android 15; Mobile; rv:145.0) Gecko/145.0 Firefox/145.0"),
    ("firefox", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"),  # ESR
    (
        "safari",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 "
        "Safari/605.1.15",
    ),
    (
        "safari",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.6 Mobile/15E148 Safari/604.1",
    ),
    (
        "safari",
        "Mozilla/5.0 (iPad; CPU OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 "
        "Mobile/15E148 Safari/604.1",
    ),
    (
        "safari",  # Chrome on iOS is WebKit: Safari's headers
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/142.0.7444.77 Mobile/15E148 Safari/604.1",
    ),
    (
        "safari",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "FxiOS/145.0 Mobile/15E148 Safari/605.1.15",
    ),
]

LANGUAGES = [
    "fr-FR,fr;q=0.9",
    "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
    "it-IT,it;q=0.9,en-US;q=0.8,en;q=0.7",
    "it",
    "en-US,en;q=0.9",
    "fr,fr-FR;q=0.8,en-US;q=0.5,en;q=0.3",
    "de-DE,de;q=0.9,en;q=0.8",
]

_CHROMIUM_BRANDS = {
    "chrome": '"Chromium";v="142", "Google Chrome";v="142", "Not_A Brand";v="99"',
    "edge": '"Chromium";v="142", "Microsoft Edge";v="142", "Not_A Brand";v="99"',
    "opera": '"Chromium";v="141", "Opera";v="124", "Not_A Brand";v="99"',
    "samsung": '"Chromium";v="130", "Samsung Internet";v="28.0", "Not_A Brand";v="99"',
}


def navigation_headers(family: str, user_agent: str, language: str, *, site: str = "cross-site") -> dict[str, str]:
    """What `family`'s browser sends following a link from another site to an HTTPS address."""
    mobile = "Mobile" in user_agent or "Android" in user_agent
    if family in _CHROMIUM_BRANDS:
        return {
            "sec-ch-ua": _CHROMIUM_BRANDS[family],
            "sec-ch-ua-mobile": "?1" if mobile else "?0",
            "sec-ch-ua-platform": '"Android"' if "Android" in user_agent else '"Windows"',
            "upgrade-insecure-requests": "1",
            "user-agent": user_agent,
            "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
            "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
            "sec-fetch-site": site,
            "sec-fetch-mode": "navigate",
            "sec-fetch-user": "?1",
            "sec-fetch-dest": "document",
            "referer": "https://blog.example.fr/",
            "accept-encoding": "gzip, deflate, br, zstd",
            "accept-language": language,
            "priority": "u=0, i",
        }
    if family == "firefox":
        return {
            "user-agent": user_agent,
            "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "accept-language": language,
            "accept-encoding": "gzip, deflate, br, zstd",
            "referer": "https://blog.example.fr/",
            "upgrade-insecure-requests": "1",
            "sec-fetch-dest": "document",
            "sec-fetch-mode": "navigate",
            "sec-fetch-site": site,
            "sec-fetch-user": "?1",
            "priority": "u=0, i",
        }
    return {  # Safari and every iOS browser
        "sec-fetch-dest": "document",
        "user-agent": user_agent,
        "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "sec-fetch-site": site,
        "sec-fetch-mode": "navigate",
        "accept-language": language,
        "priority": "u=0, i",
        "accept-encoding": "gzip, deflate, br",
        "referer": "https://blog.example.fr/",
    }


# What HTTP tools send (curl 8, python-requests, Go) with a browser's User-Agent pasted in.
CURL_LIKE = {"accept": "*/*"}
REQUESTS_LIKE = {"accept-encoding": "gzip, deflate", "accept": "*/*", "connection": "keep-alive"}
GO_LIKE = {"accept-encoding": "gzip"}
