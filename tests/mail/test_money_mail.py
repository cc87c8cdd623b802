"""The mail money moves send, over a real SMTP server on loopback: a publisher paid reads the amount
in their own currency and language, once however often the payment is retried; a refused transfer
tells the publisher and finance; a prepared batch tells every finance person but its preparer; a
nightly ledger check that found a problem, and a Stripe event that could not be applied, tell finance
once. And a payout paid while SMTP is down arrives once when it is back."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest

from server.accounts import service as accounts
from server.accounts.identity import CurrentUser
from server.accounts.tables import Role
from server.billing import stripe_api
from server.core import clock
from server.ledger.tables import AccountKind as K
from server.ledger.tables import LedgerAccount
from server.mail import outbox
from server.mail.tables import MailOutbox
from server.payouts import execute
from server.payouts import service as payouts
from server.stripe_events.tables import StripeEvent
from tests.billing import helpers as billing
from tests.conftest import BASE_URL
from tests.factories import make_staff, post_form, staff_client
from tests.payouts.factories import approved_batch, earning_publisher, lines_of
from tests.payouts.test_connect import account_events, process, publisher_client, set_up, stored
from tests.stripe_fixtures import deliver
from workers.jobs.billing import process_stripe_event, sweep_stripe_events
from workers.jobs.ledger import check_ledger
from workers.jobs.payouts import sweep_payout_batches

NBSP, NNBSP = "\u00a0", "\u202f"  # French amounts: 1 250,00 € with a narrow space and a no-break space


async def caught(mailbox, kind: str, to: str | None = None) -> list:
    """The messages of this kind the SMTP server received (to one address, if given)."""
    ids = await MailOutbox.select(MailOutbox.message_id).where(MailOutbox.kind == kind).output(as_list=True)
    return [m for m in mailbox.messages if m.message_id in set(ids) and (to is None or to in m.recipients)]


async def deliver_all(now=None) -> int:
    return await outbox.deliver_due(now or clock.now())


async def email_of(user_id: int) -> str:
    from server.accounts.tables import User  # noqa: PLC0415

    return (await User.select(User.email).where(User.id == user_id).first())["email"]


async def reads_french(user_id: int) -> None:
    await accounts.set_language(CurrentUser(id=user_id, email="", role=Role.publisher, via="test"), "fr")


def words(message) -> str:
    return " ".join(html.unescape(message.text).split())


async def test_a_payout_paid_mails_the_publisher_the_amount_in_their_currency_once(
    new_client, settings, stripe_local, mailbox
):
    batch_id, accounts_ = await approved_batch(new_client, settings, stripe_local, 125_000)
    [publisher_id] = accounts_
    await reads_french(publisher_id)
    address = await email_of(publisher_id)
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
        assert await execute.execute(batch_id, gateway.client) == "done"  # the execution retried
        [line] = await lines_of(batch_id)
        # The transfer learnt again, as a late Stripe event would hand it over: nothing more is written.
        await execute.settle_recorded(line["id"], line["stripe_transfer_id"])
    assert await sweep_payout_batches({"settings": settings, "redis": None}) == {}
    await deliver_all()
    await deliver_all(clock.now() + timedelta(hours=2))

    [mail] = await caught(mailbox, "payout_sent")
    assert mail.recipients == [address]
    amount = f"1{NNBSP}250,00{NBSP}€"
    # (The subject's spaces are folded into plain ones when it is written: server/mail/compose.py.)
    assert " ".join(mail.subject.split()) == "Votre paiement de 1 250,00 € est en route"
    assert amount in mail.text and amount in html.unescape(mail.html)
    assert "1250" not in mail.text and "12.50" not in mail.text  # no float, no minor units
    assert f":\n{BASE_URL}/publisher/payouts/lines/{line['id']}\n" in mail.text.replace("\r\n", "\n")  # on its own line
    assert f'href="{BASE_URL}/publisher/payouts/lines/{line["id"]}"' in mail.html
    assert 'lang="fr"' in mail.html and "List-Unsubscribe" in mail.message


async def test_smtp_down_when_the_payout_is_paid_the_mail_arrives_once_after_it_returns(
    new_client, settings, stripe_local, mailbox
):
    batch_id, accounts_ = await approved_batch(new_client, settings, stripe_local, 60_000)
    [publisher_id] = accounts_
    await deliver_all()  # what the set-up wrote (sign-up mail) goes before the outage
    mailbox.stop()
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
    now = clock.now()
    assert await deliver_all(now) == 0  # SMTP is away: the message waits in the outbox
    assert await MailOutbox.count().where(MailOutbox.kind == "payout_sent") == 1
    mailbox.start()
    await deliver_all(now + timedelta(minutes=5))
    await deliver_all(now + timedelta(hours=1))
    [mail] = await caught(mailbox, "payout_sent")
    assert mail.recipients == [await email_of(publisher_id)]
    assert "€600.00" in mail.text


async def test_a_refused_transfer_tells_the_publisher_and_finance(new_client, settings, stripe_local, mailbox):
    _, admin_email = await make_staff(Role.admin)
    batch_id, accounts_ = await approved_batch(new_client, settings, stripe_local, 10_000, 25_000)
    refused, paid = list(accounts_)
    stripe_local.control(
        "POST", f"/_local/accounts/{accounts_[refused]}/fail_next_transfer", code="transfers_not_allowed", status="400"
    )
    async with stripe_api.gateway(settings) as gateway:
        assert await execute.execute(batch_id, gateway.client) == "done"
        assert await execute.execute(batch_id, gateway.client) == "done"
    await deliver_all()

    [problem] = await caught(mailbox, "payout_problem")
    assert problem.recipients == [await email_of(refused)]
    assert problem.subject == "Your payout could not be sent"
    assert "€100.00" in problem.text and "back in your available balance" in problem.text
    assert f"{BASE_URL}/publisher/payouts" in problem.text
    assert "transfers_not_allowed" not in problem.text  # the publisher reads plain words
    [sent] = await caught(mailbox, "payout_sent")
    assert sent.recipients == [await email_of(paid)]

    failed = await caught(mailbox, "transfer_failed")
    recipients = sorted(r for m in failed for r in m.recipients)
    approver = await approver_of(batch_id)
    assert recipients == [approver]  # finance; not the admin, who cannot open the batch's page
    mail = failed[0]
    assert mail.subject == "A payout transfer failed: Cooking Blog, €100.00"
    assert "transfers_not_allowed" in mail.text
    assert f"{BASE_URL}/finance/payouts/{batch_id}" in mail.text


async def approver_of(batch_id: int) -> str:
    from server.payouts.review import batch  # noqa: PLC0415

    return (await batch(batch_id))["approved_by_email"]


async def test_a_prepared_batch_tells_finance_but_not_its_preparer(new_client, settings, mailbox):
    before = payouts.last_cutoff(await payouts.schedule_terms(), clock.now())[1] - timedelta(minutes=5)
    await earning_publisher(settings, 12_000, effective_at=before)
    await earning_publisher(settings, 30_000, effective_at=before)
    preparer, preparer_email = await staff_client(new_client, Role.finance, first_page="/finance/payouts")
    _, colleague = await make_staff(Role.finance)
    await make_staff(Role.admin)

    assert (await post_form(preparer, "/finance/payouts/prepare")).status_code == 200
    assert (await post_form(preparer, "/finance/payouts/prepare")).status_code == 200  # prepares nothing more
    await deliver_all()

    mails = await caught(mailbox, "batch_awaiting_approval")
    assert sorted(r for m in mails for r in m.recipients) == [colleague]  # not the preparer, not the admin
    [batch_id] = {m.subject.split("#")[1].split(" ")[0] for m in mails}
    mail = mails[0]
    assert mail.subject == f"Payout batch #{batch_id} (€420.00) waits for approval"
    assert "It pays €420.00 to 2 publishers." in words(mail)
    assert f"{BASE_URL}/finance/payouts/{batch_id}" in mail.text
    assert f'href="{BASE_URL}/finance/payouts/{batch_id}"' in mail.html


async def test_a_batch_the_scheduled_job_prepared_tells_every_finance_person(new_client, settings, mailbox):
    _, one = await make_staff(Role.finance)
    _, two = await make_staff(Role.finance)
    await earning_publisher(settings, 12_000)
    from tests.payouts.factories import after_next_cutoff  # noqa: PLC0415

    outcome = await payouts.prepare_due(after_next_cutoff())  # the cron job: no preparer
    await payouts.prepare_due(after_next_cutoff())
    await deliver_all()
    mails = await caught(mailbox, "batch_awaiting_approval")
    assert sorted(r for m in mails for r in m.recipients) == sorted([one, two])
    assert all(f"#{outcome.batches[0]} " in m.subject for m in mails)


async def test_the_nightly_ledger_check_mails_finance_once_when_it_finds_a_problem(settings, clean, mailbox):
    _, finance = await make_staff(Role.finance)
    assert await check_ledger({"clock": clock.now}) == {"ok": True, "problem_count": 0}
    await deliver_all()
    assert await caught(mailbox, "ledger_check_failed") == []  # clean: no mail

    from server.ledger import postings  # noqa: PLC0415
    from tests.factories import make_advertiser  # noqa: PLC0415

    await postings.fund_advertiser((await make_advertiser())[0], 1_000, "EUR", reference_id=1, key="fund")
    await LedgerAccount.update({LedgerAccount.balance_minor: LedgerAccount.balance_minor + 1}).where(
        LedgerAccount.kind == K.advertiser_balance.value
    )
    assert await check_ledger({"clock": clock.now}) == {"ok": False, "problem_count": 1}
    assert await check_ledger({"clock": clock.now}) == {"ok": False, "problem_count": 1}  # the job run again
    await deliver_all()
    [mail] = await caught(mailbox, "ledger_check_failed")
    assert mail.recipients == [finance]
    assert mail.subject == "The nightly ledger check found 1 problem"
    assert "- I3 account" in mail.text and f"{BASE_URL}/finance#ledger-check" in mail.text


async def test_a_stripe_event_that_cannot_be_applied_mails_finance_once_per_event(new_client, settings, mailbox):
    _, finance = await make_staff(Role.finance)
    client = new_client()
    broken = []
    for n in range(2):
        event = billing.event("charge.refunded", {}, event_id=f"evt_money_mail_{n}")
        del event["data"]  # a body the worker cannot apply
        answer = await billing.deliver(client, event, settings.stripe_webhook_secret)
        assert answer.status_code == 200, answer.text
        broken.append(event["id"])
    ctx = {"settings": settings, "job_try": 1}
    for event_id in broken:
        for _ in range(3):  # the job, arq's retries, and finance's "Try again"
            with pytest.raises(KeyError):
                await process_stripe_event(ctx, event_id)
    await sweep_stripe_events({**ctx, "clock": lambda: clock.now() + timedelta(minutes=5)})
    assert {r["attempts"] for r in await StripeEvent.select(StripeEvent.attempts)} == {4}
    await deliver_all()

    mails = await caught(mailbox, "stripe_event_failed")
    assert len(mails) == 2 and {r for m in mails for r in m.recipients} == {finance}
    assert {m.subject for m in mails} == {f"A Stripe event could not be applied: {e}" for e in broken}
    for mail in mails:
        assert "charge.refunded" in mail.text and "KeyError" in mail.text
        assert f"{BASE_URL}/finance/stripe-events" in mail.text


async def test_a_payout_account_stripe_stops_tells_its_publisher_once(new_client, settings, stripe_local, mailbox):
    client, publisher_id = await publisher_client(new_client, settings)
    await set_up(client)
    account_id = (await stored(publisher_id))["stripe_account_id"]
    stripe_local.control("POST", f"/_local/accounts/{account_id}/complete_onboarding")
    [completed] = await account_events(stripe_local, account_id)
    await deliver(client, stripe_local, completed["id"])
    await process(settings)
    await deliver_all()
    assert await caught(mailbox, "payout_problem") == []  # an account becoming ready needs nobody

    stripe_local.control("POST", f"/_local/accounts/{account_id}/restrict")
    [_, restricted] = await account_events(stripe_local, account_id)
    await deliver(client, stripe_local, restricted["id"], times=2)  # Stripe delivers it again
    await process(settings)
    assert (await client.get("/publisher/payouts/return")).status_code == 200  # the same state, read at Stripe
    await deliver_all()

    [mail] = await caught(mailbox, "payout_problem")
    assert mail.recipients == [await email_of(publisher_id)]
    assert mail.subject == "Your payout account needs your attention"
    assert "Stripe has stopped payouts to your account" in words(mail)
    assert f"{BASE_URL}/publisher/payouts" in mail.text
