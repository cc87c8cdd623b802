"""GET /c/{code}: the click redirect, the hottest path of the network.

It answers from memory: the link comes from the in-process cache, the click goes into a buffer
that a background task writes in batches, and the request never waits on a database write. It is
a plain ASGI handler: Litestar's parameter parsing and response building would cost more than
the whole decision (see bench/click_redirect.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from litestar import asgi
from litestar.types import Receive, Scope, Send

from server.web import PUBLIC

_NOT_FOUND = b"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Link not found - affnet</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main class="page"><section class="card narrow">
<h1>This link does not exist</h1><p>The address may be mistyped, or the link was never issued by affnet.
Nothing was recorded.</p><p><a href="/">affnet</a></p></section></main></body></html>"""
_HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
_REDIRECT = [(b"cache-control", b"no-store, private"), (b"referrer-policy", b"no-referrer-when-downgrade")]


def _headers(scope: Scope) -> tuple[str, str | None]:
    user_agent, referer = "", None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
        elif name == b"referer":
            referer = value.decode("latin-1")
    return user_agent, referer


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# A mount, not a path parameter: Litestar 2.25 cannot route ASGI handlers with path parameters.
@asgi("/c", is_mount=True, opt=PUBLIC, copy_scope=False)
async def click_redirect(scope: Scope, receive: Receive, send: Send) -> None:
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        await _answer(send, 405, [(b"allow", b"GET, HEAD")])
        return
    state = scope["litestar_app"].state
    code = scope["path"].strip("/")  # the mount leaves "/{code}/"
    target = await state.link_cache.get(code) if code and "/" not in code else None
    if target is None:
        await _answer(send, 404, _HTML, b"" if method == "HEAD" else _NOT_FOUND)
        return
    user_agent, referer = _headers(scope)
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), max_num_fields=20)) if scope["query_string"] else {}
    client = scope.get("client")
    decision = await state.redirector.decide(target, method=method, query=query, user_agent=user_agent,
                                             ip=client[0] if client else "", referer=referer)
    state.click_buffer.add(decision.row)
    # The answer is the same whatever the classification: telling a bot it was spotted helps it.
    await _answer(send, 302, [*_REDIRECT, (b"location", decision.location.encode("latin-1"))])
