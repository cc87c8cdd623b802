"""Every route of the app is either deliberately public or guarded by role, and the guards hold.

The inventory comes from the running app itself (`app.routes`), so a route added anywhere is
checked here without anyone remembering to list it: it must carry `opt=PUBLIC` (and then be added
to EXPECTED_PUBLIC below, a deliberate act) or a `requires_role(...)` guard."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.app import create_app
from server.core.settings import Settings
from server.http.web import API_PREFIX, ROLE_LABELS
from tests.conftest import TEST_SECRET
from tests.factories import error_text, login, make_user, post_form

# The only routes anyone may use without logging in. Adding one is a decision: update this list.
EXPECTED_PUBLIC: set[tuple[str, str]] = {
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/signup"),
    ("GET", "/signup/publisher"),
    ("POST", "/signup/publisher"),
    ("GET", "/signup/advertiser"),
    ("POST", "/signup/advertiser"),
    ("POST", "/language"),  # the footer's language switcher: visitors choose too (a cookie), CSRF-checked
    # Links from account mail (server/accounts/mailbox.py): the single-use token in the path is the
    # authority; forgot-password answers the same for every address. Forms are CSRF-checked.
    ("GET", "/verify-email/{token:str}"),
    ("GET", "/forgot-password"),
    ("POST", "/forgot-password"),
    ("GET", "/reset-password/{token:str}"),
    ("POST", "/reset-password/{token:str}"),
    ("GET", "/email-change/{token:str}"),
    ("POST", "/email-change/{token:str}"),
    ("GET", "/unlock/{token:str}"),
    ("POST", "/unlock/{token:str}"),
    # A notification's unsubscribe link (server/mail/unsubscribe.py): its signature is the authority; GET only
    # asks, POST (the page's button, or a mail client's RFC 8058 one-click, without cookie or CSRF token) turns
    # that one kind of notice off and nothing else.
    ("GET", "/unsubscribe/{token:str}"),
    ("POST", "/unsubscribe/{token:str}"),
    ("GET", "/healthz"),
    ("GET", "/static/{file_path:path}"),
    ("HEAD", "/static/{file_path:path}"),
    ("GET", "/media/{file_path:path}"),
    ("HEAD", "/media/{file_path:path}"),
    ("ASGIRouteHandler", "/c"),  # the click redirect: anyone who follows a tracked link
    # Conversion intake: the postback checks the campaign's token or an advertiser API key itself;
    # the pixel fires from buyers' browsers with a signed click id.
    ("GET", "/postback"),
    ("POST", "/postback"),
    ("GET", "/px/{pixel:str}"),
    # Stripe's webhooks (the platform's and the Connect endpoint): Stripe signs every delivery, each endpoint
    # with its own secret; forged, stale, malformed or misdirected ones get 400.
    ("POST", "/stripe/webhook"),
    ("POST", "/stripe/connect-webhook"),
    # Ads: the embed script on publishers' pages asks for an ad, loads its frame and reports the
    # view; each checks the slot's key, the page's site or a signed offer itself.
    ("ASGIRouteHandler", "/ads"),
    # The demo blog page with the demo publisher's slot (development only: 404 in production).
    ("GET", "/demo/blog"),
    # The WordPress plugin's zip, linked from the slot page: GPL code with no secret in it.
    ("GET", "/wordpress/affnet.zip"),
}

# The one exception to "public or guarded": Litestar's generated OpenAPI documentation (the
# schema of /api/v1 and the viewers for it). AuthMiddleware skips these paths, so a guard could
# never see a user there anyway; the test below asserts they are GET-only library handlers.
DOCS_PATH = "/schema"

SAFE_METHODS = {"GET", "HEAD"}
# The caller's own one-of-a-kind objects that exist only once saved: 404 (with a message) until then.
MAYBE_ABSENT = {"/api/v1/advertiser/billing-profile", "/api/v1/publisher/billing-profile"}
LOGIN_REQUIRED = "Please log in to continue."


# --- the inventory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    path: str  # as declared, e.g. /admin/publishers/{publisher_id:int}/approve
    methods: tuple[str, ...]
    name: str
    public: bool
    role_guards: tuple[frozenset[Role], ...]  # affnet_roles of each role guard, in resolution order

    @property
    def roles(self) -> frozenset[Role]:
        """Roles admitted by every role guard of the handler (a user must pass them all)."""
        admitted = frozenset(Role)
        for roles in self.role_guards:
            admitted &= roles
        return admitted

    @property
    def guarded(self) -> bool:
        return bool(self.role_guards)

    @property
    def is_api(self) -> bool:
        return self.path.startswith(API_PREFIX)

    @property
    def url(self) -> str:
        """The path with every parameter filled (ids do not need to exist: guards run first)."""
        return re.sub(r"\{[^}]+\}", "1", self.path)

    def label(self) -> str:
        return f"{'/'.join(self.methods)} {self.path} ({self.name})"


def _guard_functions(handler: Any) -> list[Any]:
    # Litestar wraps each guard in an AsyncCallable; .func is the guard requires_role returned.
    return [getattr(guard, "func", guard) for guard in handler.resolve_guards()]


def _methods(handler: Any) -> tuple[str, ...]:
    methods = getattr(handler, "http_methods", None)
    if methods is None:  # websocket or mounted ASGI handler
        return (type(handler).__name__,)
    return tuple(sorted(str(m) for m in methods))


def _is_generated_options(handler: Any) -> bool:
    """The OPTIONS handler Litestar adds to every path (HTTPRoute.create_options_handler)."""
    qualname = getattr(getattr(handler, "fn", None), "__qualname__", "")
    generated = qualname.endswith("create_options_handler.<locals>.options_handler")
    return generated and _methods(handler) == ("OPTIONS",)


def _is_docs(path: str) -> bool:
    return path == DOCS_PATH or path.startswith(DOCS_PATH + "/")


def _handlers(app: Litestar) -> list[tuple[str, Any]]:
    """(path, handler) of every handler of the app except the generated OPTIONS ones."""
    found = []
    for route in app.routes:
        # An HTTP route has several handlers (one per method); a mounted ASGI app has one.
        for handler in getattr(route, "route_handlers", None) or [route.route_handler]:
            if not _is_generated_options(handler):
                found.append((route.path, handler))
    return found


def _endpoint(path: str, handler: Any) -> Endpoint:
    guards = _guard_functions(handler)
    return Endpoint(
        path=path,
        methods=_methods(handler),
        name=getattr(handler, "handler_name", repr(handler)),
        public=(handler.opt or {}).get("public") is True,
        role_guards=tuple(g.affnet_roles for g in guards if hasattr(g, "affnet_roles")),
    )


def app_endpoints(app: Litestar) -> list[Endpoint]:
    """Every handler of the app but the generated OPTIONS ones and the OpenAPI docs."""
    return [_endpoint(path, handler) for path, handler in _handlers(app) if not _is_docs(path)]


def guarded_endpoints(app: Litestar) -> list[Endpoint]:
    endpoints = [e for e in app_endpoints(app) if e.guarded]
    assert endpoints, "the app has no role-guarded route at all: the inventory is broken"
    return endpoints


def _first_refusing_guard(endpoint: Endpoint, role: Role) -> frozenset[Role]:
    return next(roles for roles in endpoint.role_guards if role not in roles)


# --- sending requests ------------------------------------------------------------------------------


async def send(client: httpx.AsyncClient, method: str, endpoint: Endpoint, **kwargs: Any) -> httpx.Response:
    """Call an endpoint as a browser (or API client) would, getting past CSRF to reach the guard."""
    if method in SAFE_METHODS or endpoint.is_api:  # the API is exempt from CSRF (Bearer keys only)
        return await client.request(method, endpoint.url, follow_redirects=False, **kwargs)
    if method == "POST":
        return await post_form(client, endpoint.url, {})  # adds _csrf_token from the affnet_csrf cookie
    if client.cookies.get("affnet_csrf") is None:
        await client.get("/login")
    return await client.request(
        method, endpoint.url, headers={"x-csrf-token": client.cookies["affnet_csrf"]}, follow_redirects=False, **kwargs
    )


def _api_error(response: httpx.Response) -> dict[str, Any] | None:
    """The "error" object of a JSON error answer, or None when the answer is not one."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code") and error.get("message"):
        return error
    return None


def _report(failures: list[str]) -> str:
    return f"{len(failures)} problem(s):\n  " + "\n  ".join(failures)


# --- 1. the inventory: public or guarded, nothing in between --------------------------------------


def _inventory_app(tmp_path: Path) -> Litestar:
    # Building the app connects to nothing (pools open at startup), so no server is needed here.
    return create_app(
        Settings(
            env="test",
            database_url=f"sqlite:///{tmp_path / 'routes.sqlite3'}",
            redis_url="redis://127.0.0.1:1/0",
            secret_key=TEST_SECRET,
            base_url="http://testserver.local",
        )
    )


def test_every_route_is_public_or_role_guarded(tmp_path: Path) -> None:
    app = _inventory_app(tmp_path)
    handlers = _handlers(app)
    assert len(handlers) > len(EXPECTED_PUBLIC), "the route inventory found almost nothing: is it broken?"

    # The docs exception, checked rather than trusted: GET-only handlers of Litestar's OpenAPI
    # plugin, at the path the app configured, and no handler of ours hiding among them.
    assert app.openapi_config is not None and app.openapi_config.path == DOCS_PATH
    docs = [(path, handler) for path, handler in handlers if _is_docs(path)]
    assert any(path == f"{DOCS_PATH}/openapi.json" for path, _ in docs), "the OpenAPI docs routes moved"
    for path, handler in docs:
        module = getattr(getattr(handler, "fn", None), "__module__", "") or ""
        methods = _methods(handler)
        assert methods == ("GET",), f"{path}: a docs route must be GET-only, has {methods}"
        assert module.startswith("litestar."), (
            f"{path} ({module}.{getattr(handler, 'handler_name', '?')}) is an app handler under {DOCS_PATH}, "
            "which AuthMiddleware never authenticates: move it elsewhere"
        )

    unprotected, both, public = [], [], set()
    for endpoint in app_endpoints(app):
        if endpoint.public and endpoint.guarded:
            both.append(
                f"{endpoint.label()} is marked public but also guarded for "
                f"{sorted(r.value for r in endpoint.roles)}: pick one"
            )
        elif endpoint.public:
            public.update((method, endpoint.path) for method in endpoint.methods)
        elif not endpoint.guarded:
            unprotected.append(f"{endpoint.label()} has neither opt=PUBLIC nor a requires_role(...) guard")
        elif not endpoint.roles:
            unprotected.append(f"{endpoint.label()} has role guards that together admit no role at all")

    assert not unprotected, _report(unprotected)
    assert not both, _report(both)
    assert public == EXPECTED_PUBLIC, (
        f"public routes changed: newly public {sorted(public - EXPECTED_PUBLIC)}, "
        f"no longer public {sorted(EXPECTED_PUBLIC - public)}; if deliberate, update EXPECTED_PUBLIC"
    )


# --- 2. anonymous visitors -------------------------------------------------------------------------


async def test_guarded_routes_refuse_anonymous_visitors(app, new_client) -> None:
    failures = []
    for endpoint in guarded_endpoints(app):
        for method in endpoint.methods:
            client = new_client()  # a fresh visitor: no session, only the CSRF cookie post_form fetches
            response = await send(client, method, endpoint)
            where = f"anonymous {method} {endpoint.url} ({endpoint.name})"
            if response.status_code != 401:
                failures.append(
                    f"{where}: expected 401, got {response.status_code} {response.headers.get('location', '')}".rstrip()
                )
                continue
            if method == "HEAD":
                continue
            if endpoint.is_api:
                if _api_error(response) is None:
                    failures.append(f"{where}: 401 without a JSON 'error' object: {response.text[:200]!r}")
            elif error_text(response.text) != LOGIN_REQUIRED or 'action="/login"' not in response.text:
                failures.append(
                    f"{where}: 401 should show the login form saying {LOGIN_REQUIRED!r}, "
                    f"shows {error_text(response.text)!r}"
                )
    assert not failures, _report(failures)


# --- 3. each role only where it belongs -------------------------------------------------------------

FORBIDDEN_MESSAGE = re.compile(r"This page is for (.+); you are signed in as (\w+)\.")


LoggedIn = tuple[httpx.AsyncClient, int, str]  # (client with a session, user id, email)


async def _logged_in_clients(new_client, settings: Settings) -> dict[Role, LoggedIn]:
    clients = {}
    for role in Role:
        user_id, email = await make_user(role, settings)
        client = new_client()
        await login(client, email)
        clients[role] = (client, user_id, email)
    return clients


async def test_each_role_is_refused_other_roles_pages(app, settings, new_client) -> None:
    clients = await _logged_in_clients(new_client, settings)
    failures = []

    for endpoint in guarded_endpoints(app):
        for method in endpoint.methods:
            for role in Role:
                client = clients[role][0]
                where = f"{method} {endpoint.url} ({endpoint.name}) as {role.value}"

                if endpoint.is_api:
                    # The API never accepts the session cookie, whatever the role: only Bearer keys.
                    response = await send(client, method, endpoint)
                    error = _api_error(response)
                    if response.status_code != 401 or error is None:
                        failures.append(
                            f"{where} with a session cookie: expected a 401 JSON error, got "
                            f"{response.status_code} {response.text[:200]!r}"
                        )
                    continue

                if role in endpoint.roles:
                    continue  # the positive check below covers admitted roles (GET only)

                response = await send(client, method, endpoint)
                if response.status_code != 403:
                    failures.append(
                        f"{where}: expected 403, got {response.status_code} "
                        f"{response.headers.get('location', '')}".rstrip()
                    )
                    continue
                message = error_text(response.text)
                match = FORBIDDEN_MESSAGE.fullmatch(message)
                wanted = {ROLE_LABELS[r] for r in _first_refusing_guard(endpoint, role)}
                named = set(match.group(1).split(" or ")) if match else set()
                if match is None or named != wanted or match.group(2) != role.value:
                    failures.append(
                        f"{where}: 403 should say the page is for {sorted(wanted)} and that "
                        f"they are signed in as {role.value}; says {message!r}"
                    )

    # Admitted roles get in (GET pages only: POSTs would change things and need real form data).
    api_keys: dict[Role, str] = {}
    for endpoint in guarded_endpoints(app):
        if "GET" not in endpoint.methods:
            continue
        for role in sorted(endpoint.roles, key=list(Role).index):
            client, user_id, email = clients[role]
            where = f"GET {endpoint.url} ({endpoint.name}) as {role.value}"
            if endpoint.is_api:
                if role not in api_keys:
                    owner = CurrentUser(id=user_id, email=email, role=role, via="session")
                    api_keys[role] = (await accounts.create_api_key(owner, "route guard test"))[1]
                client = new_client()  # no cookies at all: the key alone must do
                bearer = {"Authorization": f"Bearer {api_keys[role]}"}
                response = await client.get(endpoint.url, headers=bearer, follow_redirects=False)
                where += " with an API key"
            else:
                response = await client.get(endpoint.url, follow_redirects=False)
            # Path ids (1) name objects nobody made here: the guard must let the role through,
            # and the ownership check then answers 404 as for any object that is not theirs.
            admitted = {200, 404} if "{" in endpoint.path or endpoint.path in MAYBE_ABSENT else {200}
            if response.status_code not in admitted:
                failures.append(
                    f"{where}: expected {sorted(admitted)}, got {response.status_code} "
                    f"{response.headers.get('location', '')} {response.text[:200]!r}"
                )

    assert not failures, _report(failures)
