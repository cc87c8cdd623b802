"""Admins review pending publishers; everyone else is kept out of admin pages."""

from __future__ import annotations

from server.accounts.tables import Publisher, Role
from server.audit.tables import AuditEvent
from tests.factories import error_text, login, make_publisher, make_staff, post_form


async def publisher_row(user_id: int) -> dict:
    return await Publisher.select().where(Publisher.user == user_id).first()


async def test_admin_sees_pending_publishers_and_approves_one(client, new_client, settings):
    pub_user, pub_email = await make_publisher(settings, approved=False, display_name="Pending Pages")
    admin_id, admin_email = await make_staff(Role.admin)
    await login(client, admin_email)

    dashboard = await client.get("/admin")
    assert "Publishers waiting for review (1)" in dashboard.text
    listing = await client.get("/admin/publishers")
    assert "Pending Pages" in listing.text and pub_email in listing.text

    pub_id = (await publisher_row(pub_user))["id"]
    response = await post_form(client, f"/admin/publishers/{pub_id}/approve")
    assert response.status_code == 303
    row = await publisher_row(pub_user)
    assert row["status"] == "approved" and row["reviewed_by"] == admin_id
    event = await AuditEvent.select().where(AuditEvent.action == "publisher.approved").first()
    assert event["actor"] == admin_id and event["object_id"] == pub_id

    publisher = new_client()
    await login(publisher, pub_email)
    assert "Your account is approved" in (await publisher.get("/publisher")).text


async def test_rejecting_needs_a_reason_that_the_publisher_then_sees(client, new_client, settings):
    pub_user, pub_email = await make_publisher(settings, approved=False)
    _, admin_email = await make_staff(Role.admin)
    await login(client, admin_email)
    pub_id = (await publisher_row(pub_user))["id"]

    refused = await post_form(client, f"/admin/publishers/{pub_id}/reject", {"reason": ""})
    assert refused.status_code == 422
    assert "Reason is required" in error_text(refused.text)
    assert (await publisher_row(pub_user))["status"] == "pending"

    done = await post_form(client, f"/admin/publishers/{pub_id}/reject", {"reason": "The blog has no posts yet"})
    assert done.status_code == 303
    assert (await publisher_row(pub_user))["status"] == "rejected"

    publisher = new_client()
    await login(publisher, pub_email)
    page = (await publisher.get("/publisher")).text
    assert "not accepted" in page and "The blog has no posts yet" in page


async def test_reviewing_a_publisher_that_does_not_exist_answers_404(client):
    _, admin_email = await make_staff(Role.admin)
    await login(client, admin_email)
    response = await post_form(client, "/admin/publishers/999999/approve")
    assert response.status_code == 404
    assert await AuditEvent.count().where(AuditEvent.action == "publisher.approved") == 0


async def test_a_publisher_cannot_open_admin_or_advertiser_pages(client, settings):
    pub_user, email = await make_publisher(settings, approved=False)
    await login(client, email)
    advertiser_page = await client.get("/advertiser")
    assert advertiser_page.status_code == 403
    assert "This page is for advertisers; you are signed in as publisher." in advertiser_page.text
    pub_id = (await publisher_row(pub_user))["id"]
    self_approval = await post_form(client, f"/admin/publishers/{pub_id}/approve")
    assert self_approval.status_code == 403
    assert (await publisher_row(pub_user))["status"] == "pending"


async def test_admin_toggles_auto_approval_and_it_is_audited(client):
    admin_id, admin_email = await make_staff(Role.admin)
    await login(client, admin_email)
    response = await post_form(client, "/admin/settings", {"auto_approve": "on"})
    assert response.status_code == 200 and "checked" in response.text
    response = await post_form(client, "/admin/settings", {})
    assert "checked" not in response.text
    events = await AuditEvent.select(AuditEvent.detail).where(AuditEvent.action == "setting.changed")
    assert len(events) == 2


async def test_finance_reads_the_audit_log(client, settings):
    await make_publisher(settings, display_name="Audited")
    _, email = await make_staff(Role.finance)
    await login(client, email)
    page = await client.get("/finance/audit")
    assert page.status_code == 200
    assert "publisher.signed_up" in page.text and "publisher.approved" in page.text
