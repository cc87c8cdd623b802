"""CSRF protection bound to the session: a form's token is good for one login session only.

Litestar's CSRFMiddleware is a double-submit cookie: any token it ever signed passes with a cookie
carrying the same token, so whoever can plant a cookie (a sibling subdomain, plain http on the
same host) can pair their own token with a victim's session. Here the token of a logged-in
browser is an HMAC of its session cookie: it cannot be planted or reused by another session, and
it changes whenever the session does (logout, login). Before login the double-submit cookie
stays (there is no session to bind to), and the cookie always carries the current token, rotated
in the same response that sets or clears the session cookie."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from http.cookies import SimpleCookie
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from server.http.web import handle_http_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_FIELD = "_csrf_token"


class SessionBoundCSRF(ASGIMiddleware):
    def __init__(
        self,
        *,
        secret: str,
        session_cookie: str,
        cookie_name: str,
        header_name: str,
        secure: bool,
        exclude: tuple[str, ...],
    ) -> None:
        self.key = secret.encode()
        self.session_cookie = session_cookie
        self.cookie_name = cookie_name
        self.header_name = header_name.lower()
        self.secure = secure
        skipped = re.compile("|".join(exclude))
        self.should_bypass_for_scope = lambda scope: skipped.match(scope["path"]) is not None
        self.scopes = (ScopeType.HTTP,)

    # --- tokens -----------------------------------------------------------------------------------

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def session_token(self, session: str) -> str:
        """The one token of a session (the session cookie itself is never exposed by it)."""
        return "s" + self._sign("session", session)

    def anonymous_token(self) -> str:
        nonce = secrets.token_hex(16)
        return f"a{nonce}.{self._sign('anonymous', nonce)}"

    def _valid_anonymous(self, token: str) -> bool:
        nonce, _, mac = token[1:].partition(".")
        return token.startswith("a") and bool(nonce) and hmac.compare_digest(mac, self._sign("anonymous", nonce))

    def expected(self, session: str | None, cookie: str | None) -> str | None:
        """The token a form must carry: the session's, or (no session) the signed cookie's own."""
        if session:
            return self.session_token(session)
        return cookie if cookie and self._valid_anonymous(cookie) else None

    # --- the middleware ---------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request = scope["litestar_app"].request_class(scope=scope, receive=receive)
        session = request.cookies.get(self.session_cookie) or None
        cookie = request.cookies.get(self.cookie_name) or None
        expected = self.expected(session, cookie)
        try:
            token = await self._checked_token(request, expected)
        except HTTPException as exc:
            # Answered here rather than by the app's handlers, which run outside every middleware:
            # inside, the page is in the reader's language (server/core/locale.py's middleware).
            # A 413 came with a good session: the page's own forms (log out, language) keep working.
            ScopeState.from_scope(scope).csrf_token = expected or ""
            response = handle_http_error(request, exc)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        ScopeState.from_scope(scope).csrf_token = token  # what templates' csrf_token() renders

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                current = self._after_response(headers.getall("set-cookie", []), token)
                if current != cookie:
                    headers.add("set-cookie", self._cookie(current))
            await send(message)

        await next_app(scope, receive, send_with_cookie)

    async def _checked_token(self, request: Request, expected: str | None) -> str:
        """The token of this browser's forms; for a request that changes something, only once the
        token it sent (header or form field) is that one. Raises 403, or 413 for a form past the
        route's body limit."""
        if request.method in SAFE_METHODS:
            return expected or self.anonymous_token()
        sent = request.headers.get(self.header_name)
        if not sent and request.content_type[0] in (RequestEncodingType.URL_ENCODED, RequestEncodingType.MULTI_PART):
            value = (await request.form()).get(FORM_FIELD)
            sent = value if isinstance(value, str) else None
        if not (expected and sent and hmac.compare_digest(sent, expected)):
            raise PermissionDeniedException("CSRF token verification failed")
        return expected

    def _after_response(self, set_cookies: list[str], token: str) -> str:
        """The token for the session the browser holds once it has this response: a new one when
        the response sets the session cookie (login), a fresh anonymous one when it clears it."""
        for header in set_cookies:
            jar: SimpleCookie[Any] = SimpleCookie()
            jar.load(header)
            morsel = jar.get(self.session_cookie)
            if morsel is None:
                continue
            cleared = not morsel.value or morsel.value == '""' or morsel["max-age"] in ("0", 0)
            return self.anonymous_token() if cleared else self.session_token(morsel.value)
        return token

    def _cookie(self, token: str) -> str:
        return Cookie(
            key=self.cookie_name, value=token, path="/", secure=self.secure, httponly=True, samesite="lax"
        ).to_header(header="")
