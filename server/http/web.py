"""The HTTP edge shared by every domain: who is asking (auth middleware), role guards,
security headers, and the one mapping of errors to responses (JSON for /api, pages otherwise)."""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.enums import MediaType
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.response import Template
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.conversions import selfcheck
from server.core import db
from server.core import locale as locales
from server.core.errors import DomainError, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from server.core.i18n import _, _l, number_text
from server.core.logthrottle import LogThrottle
from server.core.validation import safe_next
from server.http.pages import SESSION_COOKIE
from server.http.validation_messages import validation_message
from server.tracking.visitor import visitor_hash

API_PREFIX = "/api/"
_log = logging.getLogger("affnet.web")
ROLE_LABELS = {  # in English: the OpenAPI document's words
    Role.publisher: "publishers",
    Role.advertiser: "advertisers",
    Role.finance: "finance staff",
    Role.admin: "administrators",
}
# The same for a person, in their language: who a page is for, and who they are signed in as.
_ROLES_WANTED = {
    Role.publisher: _l("publishers"),
    Role.advertiser: _l("advertisers"),
    Role.finance: _l("finance staff"),
    Role.admin: _l("administrators"),
}
_ROLE_NAMES = {
    Role.publisher: _l("publisher"),
    Role.advertiser: _l("advertiser"),
    Role.finance: _l("finance"),
    Role.admin: _l("admin"),
}


def current_user(connection: ASGIConnection) -> CurrentUser | None:
    return connection.scope.get("user")  # type: ignore[return-value]


def client_ip(connection: ASGIConnection) -> str:
    # uvicorn rewrites the client from X-Forwarded-For only for TRUSTED_PROXIES (see server/cli.py).
    client = connection.scope.get("client")
    return client[0] if client else "unknown"


class AuthMiddleware(ASGIMiddleware):
    """Sets scope["user"]: from a Bearer API key on /api/, from the session cookie elsewhere.

    The API accepts keys only (never the cookie), so API calls need no CSRF token and a page a
    user visits can never spend their API authority. Failures are noted, not raised: the route's
    guard decides whether the route needs a user, and says why there is none."""

    # Static files, the health check, the API docs, the click redirect and conversion intake (which
    # authenticates itself) never ask who is asking.
    should_bypass_for_scope = staticmethod(
        lambda scope: (
            scope["path"].startswith(("/static/", "/media/", "/schema", "/c/", "/postback", "/px/"))
            or scope["path"] == "/healthz"
        )
    )

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None
        scope.setdefault("state", {})["auth_problem"] = None
        settings = scope["litestar_app"].state.settings
        path: str = scope["path"]
        if path.startswith(API_PREFIX):
            auth = header(scope, b"authorization")
            if auth:
                scheme, _, credential = auth.partition(" ")
                if scheme.lower() != "bearer" or not credential.strip():
                    scope["state"]["auth_problem"] = Unauthorized(
                        _l("Send your API key as 'Authorization: Bearer <key>'."), code="invalid_authorization"
                    )
                else:
                    try:
                        scope["user"] = await accounts.authenticate_api_key(credential)
                    except Unauthorized as exc:
                        scope["state"]["auth_problem"] = exc
        else:
            token = _cookie(scope, SESSION_COOKIE)
            if token:
                user, expired = await accounts.resolve_session(token, settings)
                scope["user"] = user
                if user is not None and user.role == Role.publisher:
                    await _publisher_sighted(scope, user)
                if expired:
                    # Lazy: the reader's language is known only after this middleware (LocaleMiddleware).
                    scope["state"]["auth_problem"] = Unauthorized(
                        _l("Your session has expired. Please log in again."), code="session_expired"
                    )
        await next_app(scope, receive, send)


async def _publisher_sighted(scope: Scope, user: CurrentUser) -> None:
    """Note the visitor hash of a publisher's own session, as a click from this browser and network
    would carry it today (the self_conversion rule, server/conversions/selfcheck.py): written once a
    day per hash and process; a failed write costs the page nothing and is tried on the next one."""
    state = scope["litestar_app"].state
    client = scope.get("client")
    now = time.time()
    today = datetime.fromtimestamp(now, UTC).date()
    hashed = visitor_hash(
        state.redirector.visitor_key, client[0] if client else "", header(scope, b"user-agent") or "", today
    )
    if not state.sightings.is_new(user.id, hashed, today):
        return
    try:
        await selfcheck.seen(user.id, hashed, datetime.fromtimestamp(now, UTC))
    except Exception:
        state.sightings.forget(user.id, hashed)
        _log.warning("noting publisher %s's visitor hash failed", user.id, exc_info=True)


def header(scope: Scope, name: bytes) -> str | None:
    """A request header from the raw ASGI scope (`name` lower-case), for code that runs before Litestar."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None


class SecurityHeadersMiddleware(ASGIMiddleware):
    """Headers that make every page harder to abuse: no framing, no sniffing, a strict CSP."""

    CSP = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        docs = scope["path"].startswith("/schema")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                if not docs:  # the API docs page loads its viewer from a CDN
                    headers.append((b"content-security-policy", self.CSP.encode()))
                message["headers"] = headers
            await send(message)

        await next_app(scope, receive, send_with_headers)


# --- guards ------------------------------------------------------------------------------------


def requires_role(*roles: Role):
    """A guard admitting only users of these roles. Routes without one must be marked public."""

    def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        user = current_user(connection)
        if user is None:
            problem = connection.scope.get("state", {}).get("auth_problem")
            if problem is not None:
                raise problem
            if connection.scope["path"].startswith(API_PREFIX):
                raise Unauthorized(
                    _("This endpoint needs an API key: send 'Authorization: Bearer <key>'."), code="missing_api_key"
                )
            raise Unauthorized(_("Please log in to continue."), code="login_required")
        if user.role not in roles:
            wanted = functools.reduce(
                lambda first, second: _("%(first)s or %(second)s", first=first, second=second),
                [str(_ROLES_WANTED[r]) for r in roles],
            )
            raise Forbidden(
                _(
                    "This page is for %(roles)s; you are signed in as %(role)s.",
                    roles=wanted,
                    role=_ROLE_NAMES[user.role],
                ),
                code="wrong_role",
            )

    guard.affnet_roles = frozenset(roles)  # type: ignore[attr-defined]
    return guard


PUBLIC = {"public": True}
"""Route option marking a handler as deliberately open to anyone (tests enforce the marking)."""


# --- errors ------------------------------------------------------------------------------------


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str  # stable and machine-readable: what to branch on
    message: str  # for a person: what went wrong and what to do
    field: str | None = None  # the input at fault, when one is


class ErrorBody(msgspec.Struct):
    """Every JSON error answer of affnet: the one shape the OpenAPI document names "ErrorBody"."""

    error: ErrorDetail


# Machine endpoints: their errors are JSON whoever calls them (a browser gets pages elsewhere).
JSON_PATHS = (API_PREFIX, "/healthz", "/postback")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(JSON_PATHS)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    headers = dict(headers) if headers else None
    message = str(message)  # a lazy message (_l) is read here, in the reader's language
    if _wants_json(request):
        return Response(
            ErrorBody(ErrorDetail(code=code, message=message, field=field)),
            status_code=status,
            media_type=MediaType.JSON,
            headers=headers,
        )
    if status == 401:
        next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Template(
            "accounts/login.html",
            context={"error": message, "next": next_path, "email": ""},
            status_code=401,
            headers=headers,
        )
    return Template("error.html", context={"status": status, "message": message}, status_code=status, headers=headers)


def handle_domain_error(request: Request, exc: DomainError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
    return error_response(request, exc.status_code, exc.code, exc.message, exc.field, headers)


_HTTP_MESSAGES = {
    400: _l("The request could not be understood."),
    403: _l("You are not allowed to do that."),
    404: _l("There is nothing at this address."),
    405: _l("This address does not accept that kind of request."),
}
SERVER_FAILED = _l("Something went wrong on our side. Please try again.")
_HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def handle_http_error(request: Request, exc: HTTPException) -> Response:
    if locales.current() is not None:
        return _http_error(request, exc)
    # Refused before the middleware ran (no route at this address, a method it does not take): the
    # language is the one the visitor's cookie or browser asks for, and the page is written now,
    # while it is set (a Template would be rendered after this returns).
    reader = locales.negotiate(locales.cookie_language(request.scope), request.headers.get("accept-language"))
    with locales.using(reader):
        response = _http_error(request, exc)
        if isinstance(response, Template) and response.template_name:
            context = response.create_template_context(request)
            body = request.app.template_engine.get_template(response.template_name).render(**context)
            response = Response(
                body, status_code=response.status_code, headers=response.headers, media_type=MediaType.HTML
            )
    return response


def _http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if isinstance(exc, PermissionDeniedException) and "CSRF" in (exc.detail or ""):
        return error_response(
            request,
            403,
            "csrf_failed",
            _("This form has expired or did not come from this site. Go back, reload the page and try again."),
        )
    if isinstance(exc, NotAuthorizedException):
        return error_response(request, 401, "unauthorized", exc.detail or _("Please log in to continue."))
    if status == 413:
        return _too_large(request, exc)
    field = None
    if isinstance(exc, ValidationException):
        # Litestar's own message names the method and URL and msgspec's types: say it for a person.
        message, field = validation_message(request, exc)
    elif status < 500 and exc.detail and status not in (404, 405):
        message = exc.detail
    else:
        message = str(_HTTP_MESSAGES.get(status, SERVER_FAILED))
    # Keep what the exception says about the answer: a 405 carries the methods allowed in `Allow`.
    return error_response(request, status, _HTTP_CODES.get(status, "error"), message, field, exc.headers)


UPLOAD_LIMIT = "upload_limit_bytes"
"""Route option: the file size limit an upload form's page tells people (bytes, or a function of the
Settings giving them), for the 413 page to name instead of the route's body limit, which leaves
room for the rest of the form: `@post(..., request_max_body_size=..., opt={UPLOAD_LIMIT: ...})`."""


def _body_limit(request: Request) -> str:
    """The limit a too-large request broke, in the reader's words and digits: the file limit the
    route declares (UPLOAD_LIMIT) in KB as upload forms state it ("512 KB"), else its request body
    limit in MB ("10 MB")."""
    handler = request.scope["route_handler"]
    declared = handler.opt.get(UPLOAD_LIMIT)
    if callable(declared):
        declared = declared(request.app.state.settings)
    if declared:
        return _("%(num)s KB", num=number_text(declared // 1024))
    megabytes = (handler.resolve_request_max_body_size() or 0) / (1024 * 1024)
    return _("%(num)s MB", num=number_text(megabytes, places=0 if megabytes.is_integer() else 1))


def _back_to(request: Request) -> str:
    """Where the page the request came from is: the Referer when it is this site's, else the start."""
    referer = request.headers.get("referer", "")
    parts = urlsplit(referer)
    if parts.scheme == request.url.scheme and parts.netloc == request.url.netloc:
        return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))
    return "/"


def _too_large(request: Request, exc: HTTPException) -> Response:
    """413: a body past the route's limit (an upload, most likely), refused before it was read. A
    form's page says so in the site's layout with a way back to the form; the API in its JSON."""
    limit = _body_limit(request)
    if _wants_json(request):
        message = _("The request body is larger than the %(limit)s limit.", limit=limit)
        return error_response(request, 413, "too_large", message, headers=exc.headers)
    return Template(
        "error.html",
        context={
            "status": 413,
            "message": _("The file is larger than the %(limit)s limit; choose a smaller file.", limit=limit),
            "back": _back_to(request),
        },
        status_code=413,
        headers=exc.headers,
    )


# --- ids in paths ------------------------------------------------------------------------------

SQLITE_MAX_ID = 2**63 - 1  # SQLite's INTEGER
POSTGRES_MAX_ID = 2**31 - 1  # PostgreSQL's SERIAL, the type of every id column


async def check_address(request: Request) -> None:
    """before_request hook of the app, for what no route can use in its address. Runs after the
    guards, so an anonymous visitor still gets 401 and another role 403.

    A path id no row can have (0, negative, or past the engine's integer) is a 404 like any id
    that names nothing, not a database overflow (500). A NUL character anywhere in the address is
    a 400: PostgreSQL refuses it in any text, so it would otherwise be a 500 wherever a value is
    looked up."""
    # async, and reading the raw scope only: a sync hook would cost every request a hop to a thread.
    scope = request.scope
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query or "\x00" in scope["path"]:
        raise DomainError(_("The address contains a NUL character (%00), which nothing here accepts."))
    params = scope.get("path_params")
    if not params:
        return
    highest = SQLITE_MAX_ID if db.is_sqlite() else POSTGRES_MAX_ID
    for value in params.values():
        if type(value) is int and not 1 <= value <= highest:
            raise NotFound(_("There is nothing at this address."))


async def respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    """A whole response straight over ASGI (the fast paths' answers), with its content-length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


_UNAVAILABLE_PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Try again in a moment - affnet</title><link rel="stylesheet" href="/static/app.css"></head><body>
<main class="page"><section class="card narrow"><h1>Try again in a moment</h1><p>%s</p>
<p>Nothing was recorded; reloading this page shortly should work.</p></section></main></body></html>"""


class FastPath:
    """A family of hot requests answered before Litestar's router and middleware (they cost more
    than a hot handler itself): every path that starts with `prefix` (one path segment, as "/c/"),
    or the one path `prefix` names without a trailing slash ("/postback"), goes to `handle`, for
    every method or only `methods` (the others go on to Litestar). A handler that fails gets
    `fail`'s answer, if its own answer had not started, or `unavailable`'s (503 with Retry-After)
    when what it needs is away for a moment (ServiceUnavailable: the database, for a link with no
    terms in memory)."""

    prefix = ""
    methods: frozenset[str] | None = None  # None: every method
    log = logging.getLogger("affnet.web")
    what = "request"  # for the log: "<what> failed for <path>"

    async def handle(self, state: Any, scope: Scope, send: Send) -> None:
        raise NotImplementedError

    async def fail(self, send: Send) -> None:
        raise NotImplementedError

    async def unavailable(self, send: Send, exc: ServiceUnavailable) -> None:
        await respond(
            send,
            503,
            [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"retry-after", str(exc.retry_after).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"x-frame-options", b"DENY"),
                (b"content-security-policy", SecurityHeadersMiddleware.CSP.encode()),
            ],
            _UNAVAILABLE_PAGE % html.escape(exc.message).encode(),
        )


class FastPaths:
    """The ASGI application the server runs: the fast paths' requests straight to their handlers,
    everything else to the wrapped Litestar app. One dictionary look-up on the first path segment
    decides (the click redirect pays nothing for the ads' paths). Attribute access falls through
    to the wrapped app (state, hooks, routes). Failures are logged once per interval with a count
    (server/core/logthrottle.py), not a traceback per request: an outage fails every request."""

    def __init__(self, app: Any, *paths: FastPath) -> None:
        self.app = app
        self._paths = {path.prefix: path for path in paths}
        self.failures = {path.prefix: LogThrottle(path.log, path.what) for path in paths}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            fast = self._paths.get(path[: path.find("/", 1) + 1] or path)
            if fast is not None and (fast.methods is None or scope["method"] in fast.methods):
                try:
                    await fast.handle(self.app.state, scope, send)
                except Exception as exc:
                    unavailable = isinstance(exc, ServiceUnavailable)  # expected, and logged where noticed
                    if not unavailable:
                        self.failures[fast.prefix].failed("%s failed for %s", fast.what, path)
                    # An answer already started cannot be replaced: sending another start then
                    # raises, and there is nothing more to tell the client.
                    with contextlib.suppress(Exception):
                        await (fast.unavailable(send, exc) if unavailable else fast.fail(send))  # type: ignore[arg-type]
                return
        await self.app(scope, receive, send)


def allow_every_method(app: Litestar) -> None:
    """OPTIONS on an address lists every method it takes. Litestar 2 makes the automatic OPTIONS
    handler for the first handler registered at an address and, when more are added, moves that
    handler into a new route while its Allow still reads the first route's methods
    (litestar-org/litestar#4169, fixed in Litestar 3): point each one at the route it serves."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = getattr(handler.fn, "__func__", handler.fn)
            if getattr(fn, "__name__", "") != "options_handler" or not fn.__closure__:
                continue
            for cell in fn.__closure__:
                if isinstance(cell.cell_contents, HTTPRoute):
                    cell.cell_contents = route
