"""GET /c/{code}: the click redirect, the hottest path of the network.

It answers from memory: the link comes from the in-process cache, the click goes into a buffer
that a background task writes in batches, and the request never waits on a database write.

`ClickFastPath` hands /c/ requests straight to `handle_click` (server/http/web.py: FastPaths), before
Litestar's router and middleware: they cost more than the whole decision (bench/click_redirect.py).
The same handler is also mounted in Litestar, so the route is listed, guarded-route checks see it,
and it works however the app is served."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from litestar import asgi
from litestar.types import Receive, Scope, Send

from server.core import i18n
from server.core import locale as locales
from server.http.web import PUBLIC, FastPath, SecurityHeadersMiddleware, respond
from server.tracking import geo
from server.tracking.classify import PURPOSE_HEADERS, Reason, header_reason, is_speculative
from server.tracking.counting import DEDUP_SECONDS
from server.tracking.visitor import cookie_id, new_cookie_id, set_cookie

log = logging.getLogger("affnet.tracking")

_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title} - affnet</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main class="page"><section class="card narrow">
<h1>{heading}</h1><p>{body}</p><p><a href="/">affnet</a></p></section></main></body></html>"""
_pages: dict[tuple[str, int], bytes] = {}


def _page(scope: Scope, status: int) -> bytes:
    """A dead link's page (or the rare failure's) in the reader's language (Accept-Language), made
    once per language: a reader who followed a blogger's link is not an affnet user."""
    asked = dict(scope["headers"]).get(b"accept-language", b"").decode("latin-1")
    reader = locales.negotiate(locales.cookie_language(scope), asked)
    key = (i18n.language(reader), status)
    if key not in _pages:
        with locales.using(reader):
            if status == 404:
                title, heading = i18n._("Link not found"), i18n._("This link does not exist")
                body = i18n._(
                    "The address may be mistyped, or the link was never issued by affnet. Nothing was recorded."
                )
            else:
                title = heading = i18n._("Something went wrong")
                body = i18n._("Something went wrong; please try the link again.")
        _pages[key] = _PAGE.format(lang=key[0], title=title, heading=heading, body=body).encode()
    return _pages[key]


_SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", SecurityHeadersMiddleware.CSP.encode()),
]
_HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"), *_SECURITY]
_REDIRECT = [
    (b"cache-control", b"no-store, private"),
    (b"referrer-policy", b"no-referrer-when-downgrade"),
    (b"content-length", b"0"),
]
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
_PREFETCH = Reason.prefetch.value


# The headers _read_headers reads, by kind: one dictionary look-up per header instead of a chain
# of comparisons (a navigation sends 15 or more headers).
_UA, _REFERER, _ACCEPT, _LANGUAGE, _FETCH, _PURPOSE, _COOKIE = range(7)
_KINDS = {
    b"user-agent": _UA,
    b"cookie": _COOKIE,
    b"referer": _REFERER,
    b"accept": _ACCEPT,
    b"accept-language": _LANGUAGE,
    b"sec-fetch-site": _FETCH,
    b"sec-fetch-mode": _FETCH,
    **dict.fromkeys(PURPOSE_HEADERS, _PURPOSE),
}


def _read_headers(
    scope: Scope, country_header: bytes | None, judge: bool
) -> tuple[str, str | None, str, str, bytes, Reason | None]:
    """The User-Agent, the Referer, the country, the Accept-Language, the Cookie header and, if
    `judge` (the click-quality checks are on), what the headers say about the request's quality
    (classify.header_reason), read in one pass."""
    user_agent, referer, country, language, cookie = "", None, geo.UNKNOWN, "", b""
    speculative = accept = has_language = fetch_metadata = False
    kinds = _KINDS
    for name, value in scope["headers"]:
        kind = kinds.get(name)
        if kind is None:
            if name == country_header:
                country = geo.country(value)
        elif kind == _UA:
            user_agent = value.decode("latin-1")
        elif kind == _REFERER:
            referer = value.decode("latin-1")
        elif kind == _ACCEPT:
            accept = True
        elif kind == _LANGUAGE:
            language = value.decode("latin-1")
            has_language = True
        elif kind == _FETCH:
            fetch_metadata = True
        elif kind == _COOKIE:
            cookie = cookie + b"; " + value if cookie else value  # HTTP/2 proxies may split it
        elif is_speculative(value):
            speculative = True
    secure = scope.get("scheme") == "https"
    if not judge or (not speculative and not secure):
        return user_agent, referer, country, language, cookie, None  # plain HTTP is never judged on its headers
    reason = header_reason(
        user_agent,
        secure=secure,
        speculative=speculative,
        accept=accept,
        language=has_language,
        fetch_metadata=fetch_metadata,
    )
    return user_agent, referer, country, language, cookie, reason


_MAX_FIELDS = 20


def parse_query(query_string: bytes) -> dict[str, str]:
    """dict(parse_qsl(..., max_num_fields=20)), the last value of a name winning, read as latin-1.
    A query with nothing to unquote (no % or +, as links' sub ids mostly are) is split directly,
    at a third of parse_qsl's cost on this path: the journal's write is paid for from here."""
    text = query_string.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, max_num_fields=_MAX_FIELDS))
    if text.count("&") >= _MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")  # as parse_qsl says it
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        name, _, value = pair.partition("=")
        if value:  # parse_qsl drops blank values and names without "="
            fields[name] = value
    return fields


@dataclass(slots=True)
class ClickParts:
    """What the redirect uses from the app's state, taken once: the state's attribute access costs
    a Python call each."""

    link_cache: Any
    redirector: Any
    add_click: Any
    ads: Any

    @classmethod
    def of(cls, state: Any) -> ClickParts:
        return cls(state.link_cache, state.redirector, state.click_buffer.add, state.ads)


async def handle_click(parts: ClickParts, code: str, scope: Scope, send: Send) -> None:
    method = scope["method"]
    if method != "GET" and method != "HEAD":
        await respond(send, 405, [(b"allow", b"GET, HEAD"), *_SECURITY])
        return
    target = await parts.link_cache.get(code) if code and "/" not in code else None
    if target is None:
        await respond(send, 404, _HTML, b"" if method == "HEAD" else _page(scope, 404))
        return
    query_string = scope["query_string"]
    query = parse_query(query_string) if query_string else {}
    request = read_click(parts.redirector, scope)
    offer = query.get("o")  # a click on an ad carries its offer (server/ads)
    # A prefetch (the request's quality reason, last) leaves the offer unclaimed: the reader's own
    # click on the ad comes after it.
    checked = offer and method == "GET" and (request[-1] is not Reason.prefetch or _PREFETCH in target.rules_off)
    offer_reason, slot_id = await parts.ads.clicks.check(offer, target.link_id) if checked else (None, None)
    headers = redirect(parts, target, scope, request, query, offer_reason, slot_id)
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send(_EMPTY_BODY)


def click_now(parts: ClickParts, scope: Scope) -> list[tuple[bytes, bytes]] | None:
    """The 302's headers for a click that can be answered without waiting on anything (its link's
    terms in memory, no ad offer to ask Redis about), the click recorded; None for any other
    request, untouched: `handle_click` answers it. What the server's protocol calls before it would
    start a task for the request (server/http/transport.py: instant answers)."""
    method = scope["method"]
    if method != "GET" and method != "HEAD":
        return None
    code = _code(scope)
    if not code or "/" in code:
        return None
    target = parts.link_cache.fresh(code)
    if target is None:  # not in memory (or known not to exist: the 404 page is handle_click's)
        return None
    query_string = scope["query_string"]
    try:
        query = parse_query(query_string) if query_string else {}
    except ValueError:
        return None  # too many fields: handle_click answers it
    if "o" in query:
        return None  # an ad click: its offer is checked in Redis
    return redirect(parts, target, scope, read_click(parts.redirector, scope), query, None, None)


# What a click's headers say (read_click): User-Agent, Referer, country, Accept-Language, the
# visitor cookie's id, the id to give it (None: it has one, or the network gives none), and the
# quality reason the headers make (classify.header_reason), last.
ClickRequest = tuple[str, "str | None", str, str, "str | None", "str | None", "Reason | None"]


def read_click(redirector: Any, scope: Scope) -> ClickRequest:
    user_agent, referer, country, language, cookie, quality = _read_headers(
        scope, redirector.country_header, redirector.quality_checks
    )
    visitor_id = new_cookie = None
    if redirector.visitor_cookie:
        visitor_id = cookie_id(cookie) if cookie else None
        if visitor_id is None:
            visitor_id = new_cookie = new_cookie_id()
    return user_agent, referer, country, language, visitor_id, new_cookie, quality


def redirect(
    parts: ClickParts,
    target: Any,
    scope: Scope,
    request: ClickRequest,
    query: dict[str, str],
    offer_reason: Reason | None,
    slot_id: int | None,
) -> list[tuple[bytes, bytes]]:
    """Decide the click, record it, and give the 302's headers (recorded last: nothing after it can fail)."""
    user_agent, referer, country, language, visitor_id, new_cookie, quality = request
    client = scope.get("client")
    location, row = parts.redirector.decide(
        target,
        method=scope["method"],
        query=query,
        user_agent=user_agent,
        ip=client[0] if client else "",
        referer=referer,
        offer_reason=offer_reason,
        quality_reason=quality,
        slot_id=slot_id,
        country=country,
        visitor_id=visitor_id,
        language=language,
    )
    # The answer is the same whatever the classification: telling a bot it was spotted helps it.
    headers = [*_REDIRECT, (b"location", location.encode("latin-1"))]
    if new_cookie is not None:
        secure = scope.get("scheme") == "https"
        headers.append((b"set-cookie", set_cookie(new_cookie, secure=secure, max_age=DEDUP_SECONDS)))
    parts.add_click(row)
    return headers


def _code(scope: Scope) -> str:
    """The link code of a /c/{code} request as the server gives it."""
    return scope["path"][3:].rstrip("/")


# A mount, not a path parameter: Litestar 2.25 cannot route ASGI handlers with path parameters.
@asgi("/c", is_mount=True, opt=PUBLIC, copy_scope=False)
async def click_redirect(scope: Scope, receive: Receive, send: Send) -> None:
    parts = ClickParts.of(scope["litestar_app"].state)
    await handle_click(parts, scope["path"].strip("/"), scope, send)  # mount leaves "/{code}/"


class ClickFastPath(FastPath):
    """/c/{code} straight to handle_click (server/http/web.py: FastPaths)."""

    prefix = "/c/"
    log = log
    what = "click redirect"

    def __init__(self) -> None:
        self._parts: ClickParts | None = None

    async def handle(self, state: Any, scope: Scope, send: Send) -> None:
        parts = self._parts
        if parts is None:
            parts = self._parts = ClickParts.of(state)
        await handle_click(parts, _code(scope), scope, send)

    async def fail(self, send: Send) -> None:
        await respond(send, 500, _HTML, _page({"headers": []}, 500))  # the request is not at hand here
