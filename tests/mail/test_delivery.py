"""The outbox over a real SMTP server on loopback: written in the event's transaction, delivered by
the worker's job, the same message on every try, nothing lost while SMTP is away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from server.accounts import service as accounts
from server.accounts.tables import Role
from server.core import clock, db
from server.mail import outbox
from server.mail.tables import MailOutbox, OutboxStatus
from workers.jobs.mail import deliver_mail


class Crash(BaseException):
    """The worker dies here (a BaseException: nothing in the delivery code may swallow it)."""


async def _user(email: str = "reader@example.com", language: str = "") -> outbox.Recipient:
    user_id = await accounts.create_user(email, "a long enough password 1", Role.publisher)
    return outbox.Recipient(email=email, user_id=user_id, role="publisher", language=language)


async def _verify_mail(recipient: outbox.Recipient, n: int = 0) -> int:
    async with db.transaction():
        row_id = await outbox.enqueue("verify_email", recipient, {"verify_url": outbox.link(f"/verify-email/token{n}")})
    assert row_id is not None
    return row_id


async def test_a_message_is_written_in_its_transaction_and_nothing_when_it_rolls_back(app, clean, mailbox):
    recipient = await _user()
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await outbox.enqueue("verify_email", recipient, {"verify_url": "http://x/1"})
            raise RuntimeError("the event failed")
    assert await MailOutbox.count() == 0
    row_id = await _verify_mail(recipient)
    assert await deliver_mail({"clock": clock.now}) == 1
    [caught] = mailbox.messages
    row = await MailOutbox.select().where(MailOutbox.id == row_id).first()
    assert row["status"] == OutboxStatus.sent and row["sent_at"] is not None and row["attempts"] == 1
    assert caught.message_id == row["message_id"] and caught.recipients == ["reader@example.com"]
    assert caught.subject == "Confirm your e-mail address for affnet"
    assert "opening this link:\nhttp://testserver.local/verify-email/token0\n" in caught.text
    assert "/verify-email/token0" in caught.html
    assert caught.message["Auto-Submitted"] == "auto-generated"
    assert "List-Unsubscribe" not in caught.message  # an account message: always sent, no unsubscribe
    assert "<img" not in caught.html  # no tracking pixel in our own mail
    assert await deliver_mail({"clock": clock.now}) == 0  # nothing twice
    assert len(mailbox.messages) == 1
    # Delivered, its single-use link is gone from the database (the token itself is stored hashed).
    kept = await MailOutbox.select(MailOutbox.text_body, MailOutbox.html_body).where(MailOutbox.id == row_id).first()
    assert kept == {"text_body": outbox.REDACTED, "html_body": outbox.REDACTED}


async def test_the_recipients_language_writes_the_message(app, clean, mailbox):
    french = await _user("lecteur@example.fr", language="fr")
    italian = await _user("lettore@example.it", language="it")
    await _verify_mail(french, 1)
    await _verify_mail(italian, 2)
    await deliver_mail({"clock": clock.now})
    [fr] = mailbox.catcher.to("lecteur@example.fr")
    [it] = mailbox.catcher.to("lettore@example.it")
    assert fr.subject != it.subject != "Confirm your e-mail address for affnet"
    assert 'lang="fr"' in fr.html and 'lang="it"' in it.html


async def test_smtp_down_during_the_event_the_mail_arrives_once_after_it_returns(app, clean, mailbox):
    recipient = await _user()
    mailbox.stop()
    row_id = await _verify_mail(recipient)
    now = clock.now()
    assert await outbox.deliver_due(now) == 0
    row = await MailOutbox.select().where(MailOutbox.id == row_id).first()
    assert row["status"] == OutboxStatus.pending and row["attempts"] == 1 and row["last_error"]
    assert await outbox.deliver_due(now + timedelta(seconds=5)) == 0  # not due yet: backoff
    mailbox.start()
    assert await outbox.deliver_due(now + timedelta(seconds=31)) == 1
    assert await outbox.deliver_due(now + timedelta(hours=2)) == 0
    assert [m.message_id for m in mailbox.messages] == [row["message_id"]]


async def test_a_refused_address_fails_for_good_and_the_rest_go(app, clean, mailbox):
    recipient = await _user()
    first = await _verify_mail(recipient, 1)
    mailbox.catcher.refuse_with = "550 5.1.1 no such mailbox"
    assert await outbox.deliver_due() == 0
    mailbox.catcher.refuse_with = None
    second = await _verify_mail(recipient, 2)
    assert await outbox.deliver_due(clock.now() + timedelta(days=1)) == 1
    rows = {r["id"]: r for r in await MailOutbox.select(MailOutbox.id, MailOutbox.status, MailOutbox.last_error)}
    assert rows[first]["status"] == OutboxStatus.failed and "550" in rows[first]["last_error"]
    assert rows[second]["status"] == OutboxStatus.sent


CRASH_POINTS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=5), st.sampled_from(["before_send", "after_send"])),
    max_size=6,
)


@hypothesis_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(crashes=CRASH_POINTS)
async def test_property_each_row_is_delivered_once_across_crashes_and_retries(app, clean, mailbox, crashes):
    """Workers die at random steps; their leases end; other runs take over. Every row arrives, under
    its one Message-ID; a second copy only where a worker died after the server took it and before it
    marked it sent (the same message, byte for byte)."""
    await db_wipe_mail()
    mailbox.catcher.clear()
    recipient = outbox.Recipient(email="reader@example.com")
    ids = [await _verify_mail(recipient, n) for n in range(6)]
    pending = list(crashes)
    now = clock.now()
    died_after_accept: list[int] = []

    async def checkpoint(step: str, row_id: int) -> None:
        if pending and pending[0] == (ids.index(row_id), step):
            pending.pop(0)
            if step == "after_send":
                died_after_accept.append(row_id)
            raise Crash(step)

    for _ in range(30):
        try:
            await outbox.deliver_due(now, limit=4, checkpoint=checkpoint)
        except Crash:
            pass
        if await MailOutbox.count().where(MailOutbox.status == OutboxStatus.pending.value) == 0:
            break
        now += timedelta(seconds=outbox.CLAIM_SECONDS + 1)  # the dead worker's lease ends
    rows = await MailOutbox.select(MailOutbox.id, MailOutbox.message_id, MailOutbox.status).order_by(MailOutbox.id)
    assert all(r["status"] == OutboxStatus.sent for r in rows)
    received: dict[str, list[bytes]] = {}
    for m in mailbox.messages:
        received.setdefault(m.message_id, []).append(m.raw)
    assert set(received) == {r["message_id"] for r in rows}
    for row in rows:
        copies = received[row["message_id"]]
        assert len(copies) == 1 + died_after_accept.count(row["id"])
        assert all(c == copies[0] for c in copies)


async def db_wipe_mail() -> None:
    async with db.transaction():
        await MailOutbox.delete(force=True)


async def test_healthz_says_when_mail_has_waited_too_long(app, clean, mailbox, client):
    recipient = outbox.Recipient(email="reader@example.com")
    mailbox.stop()
    async with db.transaction():
        await outbox.enqueue(
            "verify_email", recipient, {"verify_url": "http://x/1"}, now=clock.now() - timedelta(minutes=11)
        )
    await outbox.deliver_due()
    body = (await client.get("/healthz")).json()
    assert body["mail"]["pending"] == 1 and body["mail"]["oldest_pending_age_s"] >= 660
    [said] = [line for line in body["degraded"] if line.startswith("mail:")]
    assert said.startswith("mail: 1 message(s) wait to be sent, the oldest for 11 min (SMTPConnectError")
    mailbox.start()
    assert await outbox.deliver_due(clock.now() + timedelta(minutes=5)) == 1
    body = (await client.get("/healthz")).json()
    assert body["mail"] == {"pending": 0, "oldest_pending_age_s": None, "failed": 0}
    assert not [line for line in body["degraded"] if line.startswith("mail:")]


async def test_a_message_no_server_took_for_three_days_fails_and_stays_visible(app, clean, mailbox):
    row_id = await _verify_mail(await _user())
    mailbox.stop()
    now = clock.now()
    assert await outbox.deliver_due(now) == 0
    assert await outbox.deliver_due(now + outbox.GIVE_UP_AFTER + timedelta(minutes=1)) == 0
    row = await MailOutbox.select(MailOutbox.status, MailOutbox.last_error).where(MailOutbox.id == row_id).first()
    assert row["status"] == OutboxStatus.failed and "SMTPConnectError" in row["last_error"]
    mailbox.start()
    assert await outbox.deliver_due(now + outbox.GIVE_UP_AFTER + timedelta(hours=2)) == 0  # failed is final
    assert mailbox.messages == []
