"""The admin's mail page: what was sent, waits or failed, never a message's text; a failed message
can be sent again (not one whose single-use link was removed)."""

from __future__ import annotations

from datetime import timedelta

from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.core import clock, db
from server.mail import outbox
from server.mail.tables import MailOutbox, OutboxStatus
from tests.factories import post_form, staff_client


async def _write(kind: str, context: dict) -> int:
    async with db.transaction():
        return await outbox.enqueue(kind, outbox.Recipient(email="blogger@example.fr"), context)


async def test_an_admin_reads_the_outbox_and_sends_a_failed_message_again(new_client, mailbox):
    admin, _ = await staff_client(new_client, Role.admin, first_page="/admin/mail")
    secret = await _write("verify_email", {"verify_url": "http://x/verify-email/s3cret"})
    mailbox.catcher.refuse_with = "550 5.1.1 no such mailbox"
    await outbox.deliver_due()
    mailbox.catcher.refuse_with = None
    page = await admin.get("/admin/mail?status=failed")
    assert page.status_code == 200
    assert "blogger@example.fr" in page.text and "5.1.1 no such mailbox" in page.text
    assert "s3cret" not in page.text  # never a message's text

    # A message that held a single-use link cannot be sent again: its link is gone.
    refused = await post_form(admin, f"/admin/mail/{secret}/retry")
    assert refused.status_code == 409
    status = await MailOutbox.select(MailOutbox.status).where(MailOutbox.id == secret).first()
    assert status["status"] == OutboxStatus.failed

    other = await _write(
        "password_changed", {"when": clock.now(), "browser": "Firefox", "forgot_url": "http://x/forgot-password"}
    )
    await MailOutbox.update({MailOutbox.status: OutboxStatus.failed.value}).where(MailOutbox.id == other)
    again = await post_form(admin, f"/admin/mail/{other}/retry")
    assert again.status_code == 303
    assert await outbox.deliver_due(clock.now() + timedelta(seconds=1)) == 1
    assert [m.subject for m in mailbox.messages] == [
        (await MailOutbox.select(MailOutbox.subject).where(MailOutbox.id == other).first())["subject"]
    ]
    assert await AuditEvent.count().where(AuditEvent.action == "mail.retried") == 1


async def test_only_admins_read_the_mail_page(new_client):
    finance, _ = await staff_client(new_client, Role.finance)
    assert (await finance.get("/admin/mail")).status_code == 403
    assert (await post_form(finance, "/admin/mail/1/retry")).status_code == 403
