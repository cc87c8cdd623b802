"""The header every page shares: on a phone its navigation folds behind one menu button, so the
button must control the panel that holds every entry of the role's menu, log out included."""

from __future__ import annotations

import re

import pytest

from server.accounts.tables import Role
from tests.factories import login, make_user

MENU_BUTTON = '<button type="button" class="menu-button" aria-expanded="false" aria-controls="site-menu">'
EXPECTED = {
    Role.publisher: [
        "/publisher/conversions",
        "/publisher/payouts",
        "/account/api-keys",
        "/account",
        "/account/notifications",
    ],
    Role.advertiser: [
        "/advertiser/conversions",
        "/advertiser/billing",
        "/account/api-keys",
        "/account",
        "/account/notifications",
    ],
    Role.finance: ["/finance/payouts", "/finance/review", "/account/api-keys", "/account", "/account/notifications"],
    Role.admin: ["/admin/publishers", "/admin/settings", "/account", "/account/notifications"],
}


def menu_panel(page: str) -> str:
    start = page.index('<div class="menu-panel" id="site-menu">')
    return page[start : page.index("</header>", start)]


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
async def test_the_menu_button_opens_a_panel_with_every_entry_of_the_role_and_log_out(client, settings, role):
    _, email = await make_user(role, settings)
    await login(client, email)
    page = (await client.get("/account/password")).text
    assert MENU_BUTTON in page
    assert '<script src="/static/menu.js" defer></script>' in page
    panel = menu_panel(page)
    links = re.findall(r'<a href="([^"]+)"', panel)
    assert set(EXPECTED[role]) <= set(links)
    assert 'action="/logout"' in panel
    # Nothing of the navigation lies outside the panel the button opens.
    header = page[page.index('<header class="topbar"') : page.index("</header>")]
    assert re.findall(r'<a [^>]*href="([^"]+)"', header) == ["/", *links]


async def test_a_visitor_finds_log_in_and_sign_up_behind_the_menu_button(client):
    page = (await client.get("/login")).text
    assert MENU_BUTTON in page
    assert re.findall(r'<a href="([^"]+)"', menu_panel(page)) == ["/login", "/signup"]


async def test_the_header_speaks_the_readers_language(client, settings):
    _, email = await make_user(Role.publisher, settings)
    await login(client, email)
    page = (await client.get("/publisher", headers={"Accept-Language": "it-IT"})).text
    panel = menu_panel(page)
    assert ">Pagamenti</a>" in panel and ">Chiavi API</a>" in panel and ">Esci</button>" in panel
    assert ">Menu</button>" in page.replace("\n", "").replace("  ", "")
