"""Finance's payout settings page: the schedule, minimums per currency and a publisher's own terms are
saved from the page (amounts typed as decimals, stored in minor units, every save audited) and the next
preparation uses them; a bad value answers 400 with the form as typed and changes nothing; only finance
may open or change it."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.http.payouts.settings_pages import cutoff_text
from server.ledger import service as ledger
from server.payouts import service as payouts
from server.payouts.service import ScheduleTerms
from server.payouts.tables import (
    PayoutBatch,
    PayoutCarryOver,
    PayoutLine,
    PayoutMinimum,
    PublisherPayoutTerms,
    Schedule,
)
from tests.factories import error_text, login, make_advertiser, make_staff, make_user, post_form
from tests.payouts.factories import after_next_cutoff, earning_publisher
from tests.payouts.test_history import email_of, rows, signed_in, text_of

PAGE = "/finance/payouts/settings"
SAVES = ["payout_schedule.saved", "payout_minimum.saved", "publisher_payout_terms.saved"]
SCHEDULE = {
    "schedule": "monthly",
    "cutoff_weekday": "0",
    "cutoff_day": "1",
    "cutoff_hour": "0",
    "large_change_percent": "50",
}


async def finance_client(new_client):
    user_id, email = await make_staff(Role.finance)
    client = new_client()
    await login(client, email)
    await client.get(PAGE)
    return user_id, client


async def everything_saved() -> tuple:
    """All that the page can change, and the audit trail: equal before and after means nothing changed."""
    return (
        await payouts.schedule_terms(),
        await PayoutMinimum.select(PayoutMinimum.currency, PayoutMinimum.minimum_minor).order_by(
            PayoutMinimum.currency
        ),
        await PublisherPayoutTerms.select(
            PublisherPayoutTerms.publisher,
            PublisherPayoutTerms.minimum_minor,
            PublisherPayoutTerms.minimum_currency,
            PublisherPayoutTerms.on_hold,
            PublisherPayoutTerms.hold_reason,
        ).order_by(PublisherPayoutTerms.publisher),
        await AuditEvent.count(),
    )


async def test_a_weekly_schedule_saved_on_the_page_is_what_the_next_prepare_uses(new_client, settings):
    finance_id, finance = await finance_client(new_client)
    page = await finance.get("/finance/payouts")
    assert 'href="/finance/payouts/settings"' in page.text

    saved = await post_form(
        finance,
        f"{PAGE}/schedule",
        {
            "schedule": "weekly",
            "cutoff_weekday": "2",
            "cutoff_day": "1",
            "cutoff_hour": "6",
            "large_change_percent": "30",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"{PAGE}?saved=schedule"
    wanted = ScheduleTerms(Schedule.weekly, 2, 1, 6, 30)
    assert await payouts.schedule_terms() == wanted

    page = await finance.get(saved.headers["location"])
    assert "Schedule saved" in page.text
    shown = text_of(page.text, "next-cutoff")
    assert shown == cutoff_text(payouts.next_cutoff(wanted, datetime.now(UTC)))
    assert shown.startswith("Wednesday ") and shown.endswith(" 6:00\u202fAM")  # the reader's zone: UTC
    assert re.search(r'value="weekly" checked', page.text) and re.search(r'<option value="2" selected>', page.text)
    [event] = await AuditEvent.select().where(AuditEvent.action == "payout_schedule.saved")
    assert event["actor"] == finance_id

    await earning_publisher(settings, 10_000)
    now = after_next_cutoff()
    outcome = await payouts.prepare_due(now)
    assert outcome.lines == 1
    batch = await PayoutBatch.select().first()
    end = batch["period_end"].astimezone(UTC)
    assert (end.weekday(), end.hour, end.minute) == (2, 6, 0)
    assert batch["period_end"] - batch["period_start"] == timedelta(days=7)
    assert now - timedelta(days=7) < end <= now
    assert await ledger.check() == []


async def test_a_minimum_typed_as_a_decimal_is_stored_in_minor_units_and_applies_at_the_next_prepare(
    new_client, settings
):
    _, finance = await finance_client(new_client)
    below = await earning_publisher(settings, 7_000)
    above = await earning_publisher(settings, 9_000)
    saved = await post_form(finance, f"{PAGE}/minimum", {"currency": "eur", "minimum": "80.00"})
    assert saved.status_code == 303
    assert await PayoutMinimum.select(PayoutMinimum.currency, PayoutMinimum.minimum_minor) == [
        {"currency": "EUR", "minimum_minor": 8_000}
    ]
    page = await finance.get(saved.headers["location"])
    assert "Minimum payout saved: €80.00." in page.text  # the amount as stored, echoed
    assert re.search(r'data-currency="EUR">\s*<td>EUR</td>\s*<td data-testid="minimum-amount">€80.00<', page.text)
    assert await AuditEvent.count().where(AuditEvent.action == "payout_minimum.saved") == 1

    await payouts.prepare_due(after_next_cutoff())
    assert [r["publisher"] for r in await PayoutLine.select(PayoutLine.publisher)] == [above]
    assert [(r["publisher"], r["reason"], r["minimum_minor"]) for r in await PayoutCarryOver.select()] == [
        (below, "below_minimum", 8_000)
    ]
    assert await ledger.check() == []


async def test_a_publisher_put_on_hold_is_carried_over_and_another_pays_from_their_own_minimum(new_client, settings):
    _, finance = await finance_client(new_client)
    held = await earning_publisher(settings, 9_000)
    low = await earning_publisher(settings, 3_000)
    hold = await post_form(
        finance,
        f"{PAGE}/publisher",
        {"email": (await email_of(held)).upper(), "on_hold": "on", "hold_reason": "identity check"},
    )
    assert hold.status_code == 303 and hold.headers["location"] == f"{PAGE}?saved=publisher&terms={held}"
    own = await post_form(
        finance,
        f"{PAGE}/publisher",
        {"email": await email_of(low), "publisher_minimum": "20.00", "publisher_currency": "EUR"},
    )
    assert own.status_code == 303

    page = (await finance.get(PAGE)).text
    listed = {r["publisher"]: r for r in rows(page, "publisher-terms")}
    assert listed[str(held)]["on-hold"] == "yes" and "identity check" in listed[str(held)]["text"]
    assert listed[str(low)]["on-hold"] == "no" and "€20.00" in listed[str(low)]["text"]
    editing = (await finance.get(PAGE, params={"publisher": await email_of(low)})).text
    assert 'name="publisher_minimum" value="20.00"' in editing and 'name="publisher_currency" value="EUR"' in editing

    await payouts.prepare_due(after_next_cutoff())
    assert [r["publisher"] for r in await PayoutLine.select(PayoutLine.publisher)] == [low]
    assert [(r["publisher"], r["reason"]) for r in await PayoutCarryOver.select()] == [(held, "on_hold")]
    # The publisher sees why, in words.
    mine = (await (await signed_in(new_client, held)).get("/publisher/payouts")).text
    [carried] = rows(mine, "payout-carried")
    assert carried["reason"] == "on_hold" and "payouts are on hold" in carried["text"]

    # Saving again without the box ticked releases the hold.
    released = await post_form(finance, f"{PAGE}/publisher", {"email": await email_of(held), "hold_reason": ""})
    assert released.status_code == 303
    row = await PublisherPayoutTerms.select().where(PublisherPayoutTerms.publisher == held).first()
    assert (row["on_hold"], row["hold_reason"], row["minimum_minor"]) == (False, "", None)
    assert await AuditEvent.count().where(AuditEvent.action == "publisher_payout_terms.saved") == 3
    assert await ledger.check() == []


BAD_SCHEDULES = [
    ({"cutoff_day": "29"}, "cutoff_day", "day of the month"),
    ({"cutoff_day": "0"}, "cutoff_day", "day of the month"),
    ({"cutoff_hour": "24"}, "cutoff_hour", "hour"),
    ({"cutoff_hour": "-1"}, "cutoff_hour", "hour"),
    ({"cutoff_weekday": "7"}, "cutoff_weekday", "weekday"),
    ({"cutoff_day": "1.5"}, "cutoff_day", "whole number"),
    ({"cutoff_day": "٣"}, "cutoff_day", "whole number"),  # a digit, but not an ASCII one
    ({"schedule": "daily"}, "schedule", "weekly or a monthly"),
    ({"large_change_percent": "0"}, "large_change_percent", "large-change"),
    ({"large_change_percent": ""}, "large_change_percent", "large-change"),
]
BAD_MINIMUMS = [
    ({"currency": "EUR", "minimum": "12.345"}, "minimum", "more decimals than EUR allows"),
    ({"currency": "EUR", "minimum": "-5.00"}, "minimum", "cannot be negative"),
    ({"currency": "EUR", "minimum": "0"}, "minimum", "more than zero"),
    ({"currency": "EUR", "minimum": "fifty"}, "minimum", "an amount such as"),
    ({"currency": "EUR", "minimum": ""}, "minimum", "Enter the minimum"),
    ({"currency": "JPY", "minimum": "50.5"}, "minimum", "more decimals than JPY allows"),
    ({"currency": "EURO", "minimum": "50.00"}, "currency", "not an ISO 4217 currency"),
    ({"currency": "", "minimum": "50.00"}, "currency", "ISO 4217"),
]
BAD_TERMS = [
    ({"email": "nobody@affnet.example"}, "email", "No publisher has the email address"),
    ({"email": ""}, "email", "Enter the publisher's email"),
    ({"email": "{advertiser}"}, "email", "No publisher has the email address"),
    ({"email": "{publisher}", "on_hold": "on", "hold_reason": "  "}, "hold_reason", "Say why"),
    ({"email": "{publisher}", "publisher_minimum": "20.00"}, "publisher_currency", "ISO 4217"),
    (
        {"email": "{publisher}", "publisher_minimum": "2O.00", "publisher_currency": "EUR"},
        "publisher_minimum",
        "an amount such as",
    ),
    ({"email": "{publisher}", "on_hold": "on", "hold_reason": "x" * 501}, "hold_reason", "limited to 500"),
]


@pytest.mark.parametrize(
    ("form", "cases"), [("schedule", BAD_SCHEDULES), ("minimum", BAD_MINIMUMS), ("publisher", BAD_TERMS)]
)
async def test_invalid_input_answers_400_with_the_form_as_typed_and_changes_nothing(new_client, settings, form, cases):
    _, finance = await finance_client(new_client)
    _, publisher_email = await make_user(Role.publisher, settings)
    _, advertiser_email = await make_advertiser()
    # Something saved already, so that "nothing changed" means more than "still empty".
    await payouts.save_schedule(ScheduleTerms(Schedule.weekly, 3, 5, 7, 40), actor_id=None)
    await payouts.set_minimum("EUR", 6_000, actor_id=None)
    before = await everything_saved()
    for overrides, field, message in cases:
        data = (
            {**SCHEDULE, **overrides}
            if form == "schedule"
            else {k: v.format(publisher=publisher_email, advertiser=advertiser_email) for k, v in overrides.items()}
        )
        refused = await post_form(finance, f"{PAGE}/{form}", data)
        where = f"{form} {overrides}"
        assert refused.status_code == 400, where
        assert message in html.unescape(error_text(refused.text)), (where, error_text(refused.text))
        if field != "schedule" and field != "cutoff_weekday":
            assert re.search(
                rf'<label class="field invalid">\s*<span>[^<]*</span>\s*<input [^>]*name="{field}"', refused.text
            ), where
        typed = next((v for k, v in data.items() if k in ("cutoff_day", "minimum", "email") and v), None)
        if typed is not None:
            assert f'value="{typed}"' in refused.text, where  # the form comes back as typed
        assert await everything_saved() == before, where


async def test_only_finance_opens_or_changes_the_payout_settings(new_client, settings):
    before = await everything_saved()
    for role in (Role.publisher, Role.advertiser, Role.admin):
        _, email = await make_user(role, settings)
        client = new_client()
        await login(client, email)
        assert (await client.get(PAGE)).status_code == 403
        for form, data in (
            ("schedule", {**SCHEDULE, "schedule": "weekly"}),
            ("minimum", {"currency": "EUR", "minimum": "1.00"}),
            ("publisher", {"email": email, "on_hold": "on", "hold_reason": "mine"}),
        ):
            response = await post_form(client, f"{PAGE}/{form}", data)
            assert response.status_code == 403, (role, form)
            assert "This page is for finance staff" in error_text(response.text)
    assert (await new_client().get(PAGE)).status_code == 401
    assert (await everything_saved())[:3] == before[:3]  # (signing the users up was audited, nothing else)
    assert await AuditEvent.count().where(AuditEvent.action.is_in(SAVES)) == 0
    assert await payouts.schedule_terms() == ScheduleTerms()


async def test_a_form_without_its_csrf_token_is_refused(new_client, settings):
    _, finance = await finance_client(new_client)
    before = await everything_saved()
    refused = await post_form(finance, f"{PAGE}/minimum", {"currency": "EUR", "minimum": "1.00"}, with_csrf=False)
    assert refused.status_code == 403
    assert await everything_saved() == before
