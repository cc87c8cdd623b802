"""Four eyes on every batch, the scheduled job's too (issue 14, item 6): a finance person who shaped a
batch (its schedule, a minimum, a publisher's minimum or hold, a held line) cannot approve it, and
another finance person who changed nothing can. Everything through HTTP as the finance users."""

from __future__ import annotations

import html
import itertools
import re
from datetime import datetime, timedelta

from server.accounts.tables import Publisher, Role, User
from server.audit.tables import AuditEvent
from server.core import clock
from server.ledger import postings
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.payouts import review
from server.payouts import service as payouts
from server.payouts.tables import PayoutBatch, PayoutChange, PayoutLine
from tests.factories import error_text, login, make_advertiser, make_staff, post_form
from tests.payouts.factories import after_next_cutoff, earning_publisher

SETTINGS = "/finance/payouts/settings"
_seq = itertools.count(1)


async def finance_client(new_client) -> tuple[int, object]:
    user_id, email = await make_staff(Role.finance)
    client = new_client()
    await login(client, email)
    await client.get("/finance/payouts")  # a page, so forms carry the CSRF token
    return user_id, client


async def named_publisher(
    settings, name: str, available: int, *, effective_at: datetime | None = None
) -> tuple[int, str]:
    publisher_id = await earning_publisher(settings, available, effective_at=effective_at)
    await Publisher.update({Publisher.display_name: name}).where(Publisher.user == publisher_id)
    email = (await Publisher.select(Publisher.user.email).where(Publisher.user == publisher_id).first())["user.email"]
    return publisher_id, email


async def earn(publisher_id: int, amount: int) -> None:
    """More available money for the publisher, after the last batch was prepared: for the next period."""
    advertiser_id, _ = await make_advertiser()
    n = next(_seq)
    await postings.fund_advertiser(advertiser_id, 2 * amount, "EUR", reference_id=n, key=f"four-eyes-fund:{n}")
    await postings.approve_earning(
        advertiser_id=advertiser_id,
        publisher_id=publisher_id,
        price=amount,
        payout=amount,
        currency="EUR",
        reference_type="manual",
        reference_id=n,
        key=f"four-eyes-earn:{n}",
    )
    await postings.release_earning(
        publisher_id, amount, "EUR", reference_type="manual", reference_id=n, key=f"four-eyes-release:{n}"
    )


async def scheduled_batch(*, later: timedelta = timedelta(), at: datetime | None = None) -> int:
    """What the cron job prepares: no preparer. `at`: the moment it runs (default: past the next cut-off)."""
    outcome = await payouts.prepare_due((at or after_next_cutoff()) + later)
    assert len(outcome.batches) == 1
    row = await review.batch(outcome.batches[0])
    assert row["prepared_by"] is None
    return row["id"]


async def approve(client, batch_id: int):
    return await post_form(client, f"/finance/payouts/{batch_id}/approve")


async def untouched(batch_id: int, in_transit: int) -> None:
    """A refused approval changed nothing: still prepared, nobody approved, the money still reserved."""
    row = await review.batch(batch_id)
    assert (row["status"], row["approved_by"], row["approved_fingerprint"]) == ("prepared", None, "")
    assert await AuditEvent.count().where(AuditEvent.action == "payout_batch.approved") == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == in_transit
    assert await ledger.check() == []


async def test_the_attack_a_person_who_changed_a_publishers_minimum_cannot_approve_the_scheduled_batch(
    new_client, settings
):
    a_id, a = await finance_client(new_client)
    b_id, b = await finance_client(new_client)
    ana, ana_email = await named_publisher(settings, "Ana", 12_000)
    await earning_publisher(settings, 30_000)
    batch_id = await scheduled_batch()
    in_transit = await ledger.balance(K.payouts_in_transit, "EUR")
    assert in_transit == 42_000

    changed = await post_form(
        a, f"{SETTINGS}/publisher", {"email": ana_email, "publisher_minimum": "1.00", "publisher_currency": "EUR"}
    )
    assert changed.status_code == 303

    refused = await approve(a, batch_id)
    message = html.unescape(error_text(refused.text))
    assert refused.status_code == 403
    assert message.startswith(
        f"You changed the minimum payout of Ana ({ana_email}) from the network minimum to €1.00 on "
    )
    assert message.endswith(": another finance person must approve this batch.")
    await untouched(batch_id, in_transit)
    # A's page says so before A tries, and names who can approve.
    page = (await a.get(f"/finance/payouts/{batch_id}")).text
    assert 'data-testid="approve"' not in page and 'data-testid="cannot-approve"' in page
    approvers = re.search(r'data-testid="approvers">Can approve: (.*?)\.</p>', page).group(1)
    assert await email_of(b_id) in approvers.split(", ") and await email_of(a_id) not in approvers.split(", ")
    # B sees what A changed, and approves.
    b_page = (await b.get(f"/finance/payouts/{batch_id}")).text
    assert f"{await email_of(a_id)} changed the minimum payout of Ana" in html.unescape(b_page)
    assert 'data-testid="approve"' in b_page
    assert (await approve(b, batch_id)).status_code == 303
    row = await review.batch(batch_id)
    assert (row["status"], row["approved_by"]) == ("approved", b_id)
    assert row["approved_fingerprint"] == await review.current_fingerprint(batch_id)
    assert await ledger.balance(K.payouts_in_transit, "EUR") == in_transit
    assert await ledger.check() == []
    assert ana in {r["publisher"] for r in await PayoutLine.select(PayoutLine.publisher)}


async def test_the_attack_a_person_who_released_a_hold_cannot_approve_the_scheduled_batch(new_client, settings):
    a_id, a = await finance_client(new_client)
    b_id, b = await finance_client(new_client)
    ana, ana_email = await named_publisher(settings, "Ana", 12_000)
    await earning_publisher(settings, 30_000)
    await payouts.set_publisher_terms(ana, actor_id=None, on_hold=True, hold_reason="identity check")
    batch_id = await scheduled_batch()  # Ana is carried over, on hold
    in_transit = await ledger.balance(K.payouts_in_transit, "EUR")

    released = await post_form(a, f"{SETTINGS}/publisher", {"email": ana_email, "hold_reason": ""})
    assert released.status_code == 303

    refused = await approve(a, batch_id)
    assert refused.status_code == 403
    message = html.unescape(error_text(refused.text))
    assert message.startswith(f"You released the payout hold on Ana ({ana_email}) on ")
    assert "another finance person must approve this batch" in message
    await untouched(batch_id, in_transit)
    assert (await approve(b, batch_id)).status_code == 303
    assert (await review.batch(batch_id))["approved_by"] == b_id
    assert await ledger.check() == []


async def test_the_network_minimum_and_the_schedule_bar_their_author_from_every_batch_they_shape(new_client, settings):
    a_id, a = await finance_client(new_client)
    s_id, s = await finance_client(new_client)
    _, b = await finance_client(new_client)
    await earning_publisher(settings, 12_000)
    batch_id = await scheduled_batch()
    assert (await post_form(a, f"{SETTINGS}/minimum", {"currency": "EUR", "minimum": "60.00"})).status_code == 303
    assert (
        await post_form(
            s,
            f"{SETTINGS}/schedule",
            {
                "schedule": "monthly",
                "cutoff_weekday": "0",
                "cutoff_day": "2",
                "cutoff_hour": "0",
                "large_change_percent": "50",
            },
        )
    ).status_code == 303
    # Another currency's minimum does not shape a EUR batch, and saving what is already there changes nothing.
    assert (await post_form(b, f"{SETTINGS}/minimum", {"currency": "USD", "minimum": "10.00"})).status_code == 303
    assert (await post_form(b, f"{SETTINGS}/minimum", {"currency": "EUR", "minimum": "60.00"})).status_code == 303

    refused = await approve(a, batch_id)
    assert refused.status_code == 403
    assert "You changed the EUR minimum payout from €50.00 to €60.00 on " in html.unescape(error_text(refused.text))
    refused = await approve(s, batch_id)
    assert refused.status_code == 403 and "You changed the payout schedule from monthly, cut-off on day 1" in (
        html.unescape(error_text(refused.text))
    )
    await untouched(batch_id, 12_000)
    assert (await approve(b, batch_id)).status_code == 303


async def test_a_change_binds_its_author_until_someone_else_approved_a_batch_it_shaped(new_client, settings):
    a_id, a = await finance_client(new_client)
    _, b = await finance_client(new_client)
    ana, ana_email = await named_publisher(settings, "Ana", 12_000)
    other = await earning_publisher(settings, 30_000)
    # A changes Ana's minimum before the batch exists: it shapes the batch all the same.
    assert (
        await post_form(
            a, f"{SETTINGS}/publisher", {"email": ana_email, "publisher_minimum": "100.00", "publisher_currency": "EUR"}
        )
    ).status_code == 303
    first = await scheduled_batch()
    assert (await approve(a, first)).status_code == 403
    assert (await approve(b, first)).status_code == 303

    # The next period: B's approval had A's change in front of it, so it no longer binds A.
    await earn(ana, 20_000)
    await earn(other, 20_000)
    second = await scheduled_batch(later=timedelta(days=31))
    assert {
        r["publisher"] for r in await PayoutLine.select(PayoutLine.publisher).where(PayoutLine.batch == second)
    } == {ana, other}
    assert (await approve(a, second)).status_code == 303
    assert (await review.batch(second))["approved_by"] == a_id
    assert await ledger.check() == []


async def test_a_change_to_a_publisher_outside_the_batch_does_not_bar_its_author(new_client, settings):
    a_id, a = await finance_client(new_client)
    await earning_publisher(settings, 12_000)
    _, stranger_email = await named_publisher(settings, "Bea", 0)  # no balance: in no batch
    batch_id = await scheduled_batch()
    assert (
        await post_form(
            a, f"{SETTINGS}/publisher", {"email": stranger_email, "on_hold": "on", "hold_reason": "identity check"}
        )
    ).status_code == 303
    assert await PayoutChange.count() == 1
    assert (await approve(a, batch_id)).status_code == 303
    assert (await review.batch(batch_id))["approved_by"] == a_id


async def test_a_line_holder_is_an_editor_of_the_batch_and_of_the_publishers_next_one(new_client, settings):
    a_id, a = await finance_client(new_client)
    _, b = await finance_client(new_client)
    # Earned in a period that closed before today, so its batch is prepared now, before the hold (a
    # batch's preparation is stamped with the moment it is prepared for, and the hold with the time it
    # was made: a hold after a batch was prepared is not answered by that batch's approval).
    long_ago = clock.now() - timedelta(days=40)
    ana, _ = await named_publisher(settings, "Ana", 12_000, effective_at=long_ago)
    other = await earning_publisher(settings, 30_000, effective_at=long_ago)
    first = await scheduled_batch(at=clock.now())
    line = await PayoutLine.select().where(PayoutLine.publisher == ana).first()
    held = await post_form(a, f"/finance/payouts/{first}/lines/{line['id']}/hold", {"reason": "traffic check"})
    assert held.status_code == 303
    page = (await b.get(f"/finance/payouts/{first}")).text
    assert "Changed by " + await email_of(a_id) in page
    refused = await approve(a, first)
    assert refused.status_code == 403 and f"You held line #{line['id']} of Ana" in html.unescape(
        error_text(refused.text)
    )
    assert (await approve(b, first)).status_code == 303

    # The held money goes out with Ana's next batch: A held it back, so A does not approve that one alone.
    await earn(other, 20_000)
    second = await scheduled_batch(later=timedelta(days=31))
    assert ana in {
        r["publisher"] for r in await PayoutLine.select(PayoutLine.publisher).where(PayoutLine.batch == second)
    }
    assert (await approve(a, second)).status_code == 403
    assert (await approve(b, second)).status_code == 303
    assert await ledger.check() == []


async def test_a_batch_that_only_its_one_finance_person_shaped_waits_and_the_page_says_so(new_client, settings):
    a_id, a = await finance_client(new_client)
    ana, ana_email = await named_publisher(settings, "Ana", 12_000)
    batch_id = await scheduled_batch()
    assert (
        await post_form(
            a, f"{SETTINGS}/publisher", {"email": ana_email, "publisher_minimum": "1.00", "publisher_currency": "EUR"}
        )
    ).status_code == 303
    page = (await a.get(f"/finance/payouts/{batch_id}")).text
    assert 'data-testid="nobody-can-approve"' in page and "It waits, and nothing is paid" in page
    assert 'data-testid="approve"' not in page
    assert (await approve(a, batch_id)).status_code == 403
    await untouched(batch_id, 12_000)
    # A second finance person who changed nothing can.
    _, b = await finance_client(new_client)
    assert 'data-testid="approvers"' in (await b.get(f"/finance/payouts/{batch_id}")).text
    assert (await approve(b, batch_id)).status_code == 303


async def test_a_manually_prepared_batch_is_still_not_approved_by_its_preparer(new_client, settings):
    a_id, a = await finance_client(new_client)
    _, b = await finance_client(new_client)
    await earning_publisher(settings, 12_000)
    await payouts.prepare_due(after_next_cutoff(), actor_id=a_id)  # what "Prepare now" does, a period on
    [row] = await PayoutBatch.select().where(PayoutBatch.prepared_by == a_id)
    refused = await approve(a, row["id"])
    assert refused.status_code == 403
    assert html.unescape(error_text(refused.text)) == (
        "You prepared this batch: another finance person must approve this batch."
    )
    await untouched(row["id"], 12_000)
    assert (await approve(b, row["id"])).status_code == 303
    assert await ledger.check() == []


async def email_of(user_id: int) -> str:
    return (await User.select(User.email).where(User.id == user_id).first())["email"]
