"""The ads endpoints the embed script calls from publishers' pages: the decision, the ad's frame
and the view beacon; and the no-script image ad and its link (`/ads/n/KEY/img`, `/ads/n/KEY/go`).

They are hot and called from other sites, so, like the click redirect, they are plain ASGI
handlers reached before Litestar's router and middleware (`AdFastPath`, server/http/web.py:
FastPaths), with the headers they need set here: CORS for any site (no credentials are ever read),
and for the ad frame a policy of its own (framable by any page, sandboxed, no script). They are
also mounted in Litestar so the route inventory lists them."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from litestar import asgi
from litestar.types import Receive, Scope, Send

from server.ads import offers, render
from server.ads.decision import Answer
from server.ads.process import AdServer
from server.core import locale as locales
from server.http.web import PUBLIC, FastPath, respond
from server.tracking import geo

log = logging.getLogger("affnet.ads")

_JSON = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"access-control-allow-origin", b"*"),
    (b"x-content-type-options", b"nosniff"),
]
_PREFLIGHT = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST"),
    (b"access-control-max-age", b"86400"),
]
_EMPTY_FRAME = b"<!doctype html><title>Advertisement</title>"
# The no-script image when there is no image ad to show: one transparent pixel.
BLANK_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_STORE = (b"cache-control", b"no-store")
_NOT_FOUND = Answer(404, {"error": {"code": "not_found", "message": "There is nothing at this address."}})
_GIF = [(b"content-type", b"image/gif"), _NO_STORE, (b"x-content-type-options", b"nosniff")]
_EXPIRED_PAGE = [
    (b"content-type", b"text/html; charset=utf-8"),
    _NO_STORE,
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"),
]


async def _json(send: Send, answer: Answer, head: bool = False) -> None:
    body = b"" if head else answer.raw
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [*_JSON, (b"content-length", b"%d" % len(answer.raw))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _decision_headers(scope: Scope) -> tuple[str | None, str | None, str]:
    """(Origin, Referer, User-Agent) in one pass over the request's headers."""
    origin = referer = None
    user_agent = ""
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
        elif name == b"referer":
            referer = value.decode("latin-1")
    return origin, referer, user_agent


def _view_headers(scope: Scope, country_header: bytes | None) -> tuple[str, str]:
    """(User-Agent, country) in one pass over the request's headers."""
    user_agent, country = "", geo.UNKNOWN
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
        elif name == country_header:
            country = geo.country(value)
    return user_agent, country


def _slot_key(query_string: bytes) -> str:
    """The `slot` parameter: the embed script sends `slot=KEY` alone, split directly; anything
    else as parse_qsl reads it."""
    if (
        query_string.startswith(b"slot=")
        and b"&" not in query_string
        and b"%" not in query_string
        and b"+" not in query_string
    ):
        return query_string[5:].decode("latin-1")
    return dict(parse_qsl(query_string.decode("latin-1"), max_num_fields=10)).get("slot", "")


def _accept_language(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"accept-language":
            return value.decode("latin-1")
    return None


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


async def _frame(ad_server: AdServer, token: str, scope: Scope, send: Send) -> None:
    """The ad's own document: the creative linking to its signed click URL, with its words ("Sponsored")
    in the blog reader's language (their browser's Accept-Language: this path has no locale middleware,
    and a frame on another site carries no affnet cookie)."""
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"origin"),
        (b"content-security-policy", ad_server.frame_csp.encode()),
    ]
    offer = offers.read(ad_server.offer_key, token)
    if offer is None or offer.expired(ad_server.decider.clock()):
        await respond(send, 404 if offer is None else 410, headers, _EMPTY_FRAME)
        return
    entry = await ad_server.inventory.campaigns.get(offer.campaign_id)
    publisher = await ad_server.inventory.publishers.get(offer.publisher_id)
    creative = next(
        (
            c
            for group in (entry.creatives.values() if entry else ())
            for c in group
            if c.creative_id == offer.creative_id
        ),
        None,
    )
    link = publisher.links.get(offer.campaign_id) if publisher else None
    if creative is None or link is None or link[0] != offer.link_id:
        # Archived, or the publisher left the campaign, since the decision: show nothing.
        await respond(send, 404, headers, _EMPTY_FRAME)
        return
    click_url = f"{ad_server.base_url}/c/{link[1]}?o={token}"
    with locales.using(locales.negotiate(None, _accept_language(scope))):
        document = render.frame(creative, click_url, entry.advertiser_host)
    await respond(send, 200, headers, document.encode())


async def _noscript(ad_server: AdServer, rest: str, scope: Scope, send: Send) -> None:
    """/ads/n/KEY/img and /ads/n/KEY/go: the image ad the WordPress plugin prints in <noscript>
    and the link around it (server/ads/noscript.py)."""
    slot_key, _, action = rest.rstrip("/").partition("/")
    if action not in ("img", "go") or not slot_key:
        await _json(send, _NOT_FOUND)
        return
    if scope["method"] != "GET":
        await respond(send, 405, [(b"allow", b"GET"), _NO_STORE])
        return
    origin, referer, user_agent = _decision_headers(scope)
    ip = _client_ip(scope)
    if action == "img":
        _, country = _view_headers(scope, ad_server.country_header)
        image = await ad_server.noscript.image(
            slot_key, origin=origin, referer=referer, ip=ip, user_agent=user_agent, country=country
        )
        if image is None:
            await respond(send, 200, _GIF, BLANK_GIF)
        else:
            await respond(send, 302, [(b"location", image.encode()), _NO_STORE])
        return
    click_url = await ad_server.noscript.click_url(slot_key, ip=ip, user_agent=user_agent)
    if click_url is None:
        # Nowhere to send the reader: say so, in their language (no redirect to anything they typed).
        with locales.using(locales.negotiate(None, _accept_language(scope))):
            page = render.noscript_expired()
        await respond(send, 404, _EXPIRED_PAGE, page.encode())
    else:
        await respond(send, 302, [(b"location", click_url.encode()), _NO_STORE])


async def handle_ads(ad_server: AdServer, scope: Scope, send: Send) -> None:
    path: str = scope["path"]
    method: str = scope["method"]
    if method == "OPTIONS":
        await respond(send, 204, _PREFLIGHT)
        return
    if path == "/ads/decide":
        if method != "GET" and method != "HEAD":
            await respond(send, 405, [(b"allow", b"GET, HEAD"), *_JSON])
            return
        origin, referer, user_agent = _decision_headers(scope)
        answer = await ad_server.decider.decide(
            _slot_key(scope["query_string"]),
            origin=origin,
            referer=referer,
            ip=_client_ip(scope),
            user_agent=user_agent,
        )
        await _json(send, answer, head=method == "HEAD")
    elif path.startswith("/ads/v/"):
        if method != "POST":
            await respond(send, 405, [(b"allow", b"POST"), *_JSON])
            return
        user_agent, country = _view_headers(scope, ad_server.country_header)
        answer = await ad_server.views.record(
            path[7:].rstrip("/"), ip=_client_ip(scope), user_agent=user_agent, country=country
        )
        await _json(send, answer)
    elif path.startswith("/ads/f/") and method in ("GET", "HEAD"):
        await _frame(ad_server, path[7:].rstrip("/"), scope, send)
    elif path.startswith("/ads/n/"):
        await _noscript(ad_server, path[7:], scope, send)
    else:
        await _json(send, _NOT_FOUND)


# A mount: Litestar cannot route ASGI handlers with path parameters (see server/http/tracking/public.py).
@asgi("/ads", is_mount=True, opt=PUBLIC, copy_scope=False)
async def ads_endpoints(scope: Scope, receive: Receive, send: Send) -> None:
    await handle_ads(
        scope["litestar_app"].state.ads,
        {**scope, "path": "/ads" + scope["path"]} if not scope["path"].startswith("/ads") else scope,
        send,
    )


class AdFastPath(FastPath):
    """/ads/ straight to handle_ads (server/http/web.py: FastPaths)."""

    prefix = "/ads/"
    log = log
    what = "ads endpoint"

    async def handle(self, state: Any, scope: Scope, send: Send) -> None:
        await handle_ads(state.ads, scope, send)

    async def fail(self, send: Send) -> None:
        await _json(
            send, Answer(500, {"error": {"code": "internal_error", "message": "Something went wrong on our side."}})
        )
