"""A publisher signs up, an admin approves them, and the publisher logs in and sees the dashboard:
in headless Chromium, against the real server, on each database engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from server.accounts import mailbox
from server.accounts.tables import Publisher, PublisherStatus, Role
from tests.e2e.pages import log_in
from tests.factories import PASSWORD, make_staff, unique_email

DISPLAY_NAME = "Weekend Bakes"
BLOG_URL = "https://weekend-bakes.example"
AUDIENCE = "Home bakers, about 12k readers a month"


@pytest.mark.browser
async def test_publisher_signs_up_is_approved_and_sees_dashboard(live_server, new_page, tmp_path: Path):
    base = live_server.url
    admin_id, admin_email = await make_staff(Role.admin)
    email = unique_email("blogger")

    # The publisher signs up, is logged in straight away, and is told they wait for review.
    publisher = await new_page()
    await publisher.goto("/signup/publisher")
    await expect(publisher.locator("h1")).to_have_text("Join as a publisher")
    await publisher.fill("input[name=email]", email)
    await publisher.fill("input[name=password]", PASSWORD)
    await publisher.fill("input[name=display_name]", DISPLAY_NAME)
    await publisher.fill("input[name=blog_url]", BLOG_URL)
    await publisher.fill("textarea[name=audience]", AUDIENCE)
    await publisher.click("button:has-text('Create publisher account')")
    await publisher.wait_for_url(f"{base}/publisher")
    status = publisher.get_by_test_id("publisher-status")
    await expect(status).to_be_visible()
    await expect(status).to_contain_text("Your account is waiting for review")
    await expect(publisher.locator("h1")).to_have_text(f"Hello, {DISPLAY_NAME}")
    await expect(publisher.locator("header .email")).to_have_text(email)

    row = await Publisher.select(Publisher.status, Publisher.user).where(Publisher.user.email == email).first()
    assert row is not None and row["status"] == PublisherStatus.pending.value
    await mailbox.mark_verified(row["user"])  # as if they opened the link (approval needs a verified address)

    # The admin logs in, finds the pending publisher and approves them.
    admin = await new_page()
    await log_in(admin, admin_email)
    await admin.wait_for_url(f"{base}/admin")
    await admin.goto("/admin/publishers")
    assert admin.url == f"{base}/admin/publishers"
    pending_row = admin.locator(f'tr[data-publisher="{email}"]')
    await expect(pending_row).to_be_visible()
    await expect(pending_row).to_contain_text(DISPLAY_NAME)
    await expect(pending_row).to_contain_text(BLOG_URL)
    await expect(pending_row).to_contain_text(AUDIENCE)
    await expect(pending_row.get_by_test_id("review-status")).to_have_text("pending")
    await pending_row.get_by_role("button", name="Approve").click()
    await admin.wait_for_url(f"{base}/admin/publishers")
    # Approved publishers leave the pending list and show up, approved, under "approved".
    await expect(pending_row).to_have_count(0)
    await expect(admin.locator("main")).to_contain_text("No pending publishers.")
    await admin.goto("/admin/publishers?status=approved")
    approved_row = admin.locator(f'tr[data-publisher="{email}"]')
    await expect(approved_row.get_by_test_id("review-status")).to_have_text("approved")
    await expect(approved_row.get_by_role("button", name="Approve")).to_have_count(0)

    row = (
        await Publisher.select(Publisher.status, Publisher.reviewed_by, Publisher.reviewed_at)
        .where(Publisher.user.email == email)
        .first()
    )
    assert row is not None
    assert row["status"] == PublisherStatus.approved.value
    assert row["reviewed_by"] == admin_id
    assert row["reviewed_at"] is not None

    # In a fresh browser the publisher logs in and sees the approved dashboard.
    returning = await new_page()
    response = await returning.goto("/publisher")  # this browser has no session yet: asked to log in
    assert response is not None and response.status == 401
    await expect(returning.locator("h1")).to_have_text("Log in")
    await expect(returning.get_by_role("alert")).to_have_text("Please log in to continue.")
    await log_in(returning, email)
    await returning.wait_for_url(re.compile(rf"^{re.escape(base)}/publisher$"))
    status = returning.get_by_test_id("publisher-status")
    await expect(status).to_be_visible()
    await expect(status).to_contain_text("Your account is approved")
    await expect(returning.get_by_text("waiting for review")).to_have_count(0)
    await expect(returning.locator("h1")).to_have_text(f"Hello, {DISPLAY_NAME}")
    await expect(returning.locator("header .email")).to_have_text(email)
    await expect(returning.locator("dl.facts")).to_contain_text(BLOG_URL)
    await expect(returning.locator("dl.facts .badge")).to_have_text("approved")

    shot = tmp_path / "publisher-dashboard.png"
    await returning.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0

    # The session from sign-up is still valid and now shows the approval too.
    await publisher.reload()
    assert publisher.url == f"{base}/publisher"
    await expect(publisher.get_by_test_id("publisher-status")).to_contain_text("Your account is approved")
