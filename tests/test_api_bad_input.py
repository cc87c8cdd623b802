"""Bad input in the address gets a 4xx a person can read, on every route (issue 14, item 7):
an id no row can have is a 404 (not a database overflow and a 500), a paging or other typed
query parameter out of range is a 400 that says what to send (not Litestar's developer text),
and a method a path does not take is a 405 that says in `Allow` which ones it does.

The routes come from the app's own route table (as in test_routes_guarded), so a route added
later is checked without being listed here."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.core import db
from server.http.web import POSTGRES_MAX_ID, SQLITE_MAX_ID
from tests.factories import login, make_user
from tests.test_routes_guarded import Endpoint, _handlers, app_endpoints, send

# The id, and the first ids past each engine's integer: SQLite's 64-bit INTEGER and
# PostgreSQL's 32-bit SERIAL (on SQLite 2**31 is merely an id nobody has); 0 and -1 name nothing.
IMPOSSIBLE_IDS = ("99999999999999999999", str(2**63), str(2**31), "0", "-1")
DEVELOPER_WORDS = re.compile(r"Validation failed|Expected `|msgspec|Traceback|\$\.", re.I)


def _int_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+):int\}", path)


def _with_ids(endpoint: Endpoint, value: str) -> str:
    return re.sub(r"\{\w+:int\}", value, re.sub(r"\{(\w+):(?!int)[^}]+\}", "1", endpoint.path))


async def _clients(new_client, settings) -> dict[Role, tuple[httpx.AsyncClient, CurrentUser]]:
    """A logged-in browser of each role, with who it is."""
    clients = {}
    for role in Role:
        user_id, email = await make_user(role, settings)
        client = new_client()
        await login(client, email)
        clients[role] = (client, CurrentUser(id=user_id, email=email, role=role, via="session"))
    return clients


async def test_an_id_no_row_can_have_is_a_404_on_every_route(app, settings, new_client) -> None:
    endpoints = [e for e in app_endpoints(app) if _int_params(e.path) and e.guarded]
    assert len(endpoints) >= 9, "the issue counted nine such routes: is the inventory broken?"
    highest = SQLITE_MAX_ID if db.is_sqlite() else POSTGRES_MAX_ID
    impossible = [v for v in IMPOSSIBLE_IDS if not 1 <= int(v) <= highest]
    assert "99999999999999999999" in impossible and "0" in impossible
    clients = await _clients(new_client, settings)
    keys: dict[Role, str] = {}  # the API takes Bearer keys only, never the session cookie
    failures = []
    for endpoint in endpoints:
        role = sorted(endpoint.roles, key=list(Role).index)[0]
        client, owner = clients[role]
        headers = {}
        if endpoint.is_api:
            if role not in keys:
                keys[role] = (await accounts.create_api_key(owner, "impossible id test"))[1]
            client, headers = new_client(), {"Authorization": f"Bearer {keys[role]}"}
        for method in endpoint.methods:
            for value in impossible:
                url = _with_ids(endpoint, value)
                probe = Endpoint(
                    path=url,
                    methods=endpoint.methods,
                    name=endpoint.name,
                    public=False,
                    role_guards=endpoint.role_guards,
                )
                response = await send(client, method, probe, headers=headers)
                if response.status_code != 404 or (
                    method != "HEAD" and "There is nothing at this address" not in response.text
                ):
                    failures.append(f"{method} {url} as {role.value}: {response.status_code} {response.text[:120]!r}")
    assert not failures, "\n".join(failures)


async def test_an_impossible_id_still_meets_the_guard_first(app, new_client) -> None:
    # No account: 401 as on any guarded page, whatever the id (the guard runs before the id check).
    response = await new_client().get("/advertiser/campaigns/99999999999999999999", follow_redirects=False)
    assert response.status_code == 401


def _typed_query_params(app) -> list[tuple[str, str, str, Any]]:
    """(method, path, parameter, its definition) of every query parameter Litestar converts to a
    number for a handler: the ones it, not our code, refuses."""
    found = []
    for path, handler in _handlers(app):
        for name, field in getattr(getattr(handler, "parsed_fn_signature", None), "parameters", {}).items():
            kwarg = field.kwarg_definition
            if getattr(kwarg, "param_type", None) is None or str(kwarg.param_type.value) != "query":
                continue
            if field.annotation in (int, float):
                for method in handler.http_methods:
                    found.append((method, path, kwarg.name or name, kwarg))
    return found


async def test_every_numeric_query_parameter_is_refused_with_a_human_message(app, settings, new_client) -> None:
    params = _typed_query_params(app)
    assert ("GET", "/publisher/payouts", "page") in [p[:3] for p in params]
    clients = await _clients(new_client, settings)
    keys: dict[Role, str] = {}
    failures = []
    for method, path, name, kwarg in params:
        endpoint = next(e for e in app_endpoints(app) if e.path == path and method in e.methods)
        role = sorted(endpoint.roles, key=list(Role).index)[0]
        headers = {}
        client, owner = clients[role]
        if endpoint.is_api:
            if role not in keys:
                keys[role] = (await accounts.create_api_key(owner, "bad input test"))[1]
            client, headers = new_client(), {"Authorization": f"Bearer {keys[role]}"}
        low, high = kwarg.ge, kwarg.le
        for value in (
            "-1",
            "abc",
            "1.5",
            str(10**30),
            *(
                str(v)
                for v in (low - 1 if low is not None else None, high + 1 if high is not None else None)
                if v is not None
            ),
        ):
            # A path id is any number: the query is read (and refused) before the id is looked up.
            address = re.sub(r"\{\w+:int\}", "1", path)
            response = await client.request(method, f"{address}?{name}={value}", headers=headers)
            body = response.text
            if endpoint.is_api:
                error = response.json().get("error", {}) if response.status_code == 400 else {}
                body = error.get("message", "")
                if error.get("field") != name:
                    failures.append(f"{path}?{name}={value}: error.field is {error.get('field')!r}")
            if response.status_code != 400 or DEVELOPER_WORDS.search(body) or f"“{name}”" not in body:
                failures.append(f"{method} {path}?{name}={value}: {response.status_code} {body[:300]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("-1", "“page” in the address must be a whole number from 1 to 100000."),
        ("abc", "“page” in the address must be a whole number from 1 to 100000."),
    ],
)
async def test_page_minus_one_shows_what_to_send(app, settings, new_client, page, message) -> None:
    client = (await _clients(new_client, settings))[Role.publisher][0]
    response = await client.get(f"/publisher/payouts?page={page}")
    assert response.status_code == 400
    assert message in response.text
    assert not DEVELOPER_WORDS.search(response.text)


async def test_a_method_a_path_does_not_take_is_a_405_with_allow(app, new_client) -> None:
    client = new_client()
    for method, path, allowed in (
        ("PUT", "/api/v1/me", {"GET"}),
        ("DELETE", "/postback", {"GET", "POST"}),
        ("PATCH", "/api/v1/conversions", {"POST"}),
    ):
        response = await client.request(method, path)
        assert response.status_code == 405, (method, path, response.text)
        assert allowed <= {m.strip() for m in response.headers["allow"].split(",")}, response.headers
        assert response.json()["error"]["code"] == "method_not_allowed"


# Every name a handler reads from the query itself (grep query_params in server/) or through a
# shared parser (periods.parse, review.parse_filters, earnings.parse_status, the marketplace's
# _filters, the postback's _params), and values that have broken parsers elsewhere.
QUERY_NAMES = (
    "page",
    "status",
    "campaign",
    "publisher",
    "from",
    "to",
    "tz",
    "table",
    "saved",
    "next",
    "canceled",
    "session_id",
    "q",
    "model",
    "category",
    "terms",
    "currency",
    "sub1",
    "url",
    "click_id",
    "amount",
)
NASTY_VALUES = (
    "-1",
    "0",
    "99999999999999999999",
    "999999999999999999",
    "abc",
    "2026-02-30",
    "1e309",
    "%00",
    "<b>x</b>",
    "../..",
    "٣",
)


async def test_no_query_value_breaks_a_page_or_the_api(app, settings, new_client) -> None:
    """Every GET route, as a role it admits, with every query name set to each nasty value at
    once: a page or a 4xx a person can read, never a 5xx or a developer's message."""
    clients = await _clients(new_client, settings)
    keys: dict[Role, str] = {}
    failures = []
    for endpoint in app_endpoints(app):
        if "GET" not in endpoint.methods or not endpoint.guarded:
            continue
        role = sorted(endpoint.roles, key=list(Role).index)[0]
        client, owner = clients[role]
        headers = {}
        if endpoint.is_api:
            if role not in keys:
                keys[role] = (await accounts.create_api_key(owner, "query fuzz"))[1]
            client, headers = new_client(), {"Authorization": f"Bearer {keys[role]}"}
        for value in NASTY_VALUES:
            query = "&".join(f"{name}={value}" for name in QUERY_NAMES)
            url = f"{re.sub(r'{[^}]+}', '1', endpoint.path)}?{query}"
            response = await client.get(url, headers=headers, follow_redirects=False)
            text = response.text if response.status_code >= 400 else ""
            if response.status_code >= 500 or DEVELOPER_WORDS.search(text):
                failures.append(f"GET {url} as {role.value}: {response.status_code} {text[:200]!r}")
    assert not failures, "\n".join(failures)


async def test_a_nul_character_in_the_address_is_a_400_not_a_database_error(app, settings, new_client) -> None:
    # PostgreSQL refuses NUL in any text: the search box, a Stripe session id or a publisher
    # filter carrying %00 answered 500 there. Found by the test above.
    clients = await _clients(new_client, settings)
    for role, url in (
        (Role.publisher, "/publisher/campaigns?q=%00"),
        (Role.advertiser, "/advertiser/billing/return?session_id=cs_%00"),
        (Role.finance, "/finance/payouts/settings?publisher=%00"),
        (Role.finance, "/finance/stripe-events"),
    ):
        response = await clients[role][0].get(url.replace("stripe-events", "stripe-events?x=%00"))
        assert response.status_code == 400, (url, response.status_code)
        assert "The address contains a NUL character (%00), which nothing here accepts." in response.text
