"""A paid publisher reads their pages on a phone (360 px wide), in headless Chromium against the real
server, on each database engine: no page scrolls sideways; a table wider than the screen (the payout
history, with its Stripe transfer ids) scrolls inside its own card instead."""

from __future__ import annotations

import pytest

from server.accounts.tables import Role
from tests.ads.factories import as_user, slot
from tests.e2e.pages import log_in
from tests.payouts.test_history import email_of, paid_publisher

PHONE = {"width": 360, "height": 740}

# Per page: how wide the document is against the screen, and each table's scrolling wrapper.
LAYOUT = """() => ({
  page: document.documentElement.scrollWidth,
  screen: window.innerWidth,
  tables: [...document.querySelectorAll("table")].map((table) => {
    const wrapper = table.closest(".table-scroll");
    return {
      testid: table.dataset.testid || table.closest("[data-testid]")?.dataset.testid || "",
      wrapped: wrapper !== null,
      overflow: wrapper ? getComputedStyle(wrapper).overflowX : "",
      inside: (wrapper || table).getBoundingClientRect().right <= window.innerWidth + 1,
      scrolls: wrapper ? wrapper.scrollWidth > wrapper.clientWidth : false,
    };
  }),
})"""


@pytest.mark.browser
async def test_a_paid_publishers_pages_fit_a_phone_and_wide_tables_scroll_inside_their_card(
    live_server, new_page, settings, stripe_local
):
    publisher, line = await paid_publisher(settings, stripe_local, 10_000)
    email = await email_of(publisher)
    ad_slot = await slot(as_user(publisher, email, Role.publisher), name="Sidebar, every recipe page")
    phone = await new_page()
    await phone.set_viewport_size(PHONE)
    await log_in(phone, email)

    seen = {}
    for path in (
        "/publisher",
        "/publisher/payouts",
        f"/publisher/payouts/lines/{line['id']}",
        "/publisher/conversions",
        "/publisher/slots",
        f"/publisher/slots/{ad_slot['id']}",
    ):
        await phone.goto(path)
        layout = await phone.evaluate(LAYOUT)
        assert layout["page"] <= layout["screen"], f"{path} scrolls sideways: {layout}"
        for table in layout["tables"]:
            assert table["wrapped"] and table["overflow"] == "auto", f"{path}: {table}"
            assert table["inside"], f"{path}: {table}"
        seen[path] = layout["tables"]

    await phone.goto("/publisher")
    assert await phone.get_by_test_id("earnings-paid").inner_text() == "€100.00"
    history = [t for t in seen["/publisher/payouts"] if t["testid"] == "payout-history"]
    assert len(history) == 1 and history[0]["scrolls"], seen["/publisher/payouts"]
    assert len(seen["/publisher/slots"]) == 1
