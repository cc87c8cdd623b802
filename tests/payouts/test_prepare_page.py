"""Finance's payout batches page: "Prepare the last period now" says what it did (a batch made, found
made before, or none and why), an off-cycle run pays what is available now under the same rules and
once per moment, the preparer is shown what the batch waits for instead of an Approve button, and a
batch being paid is followed by its page through a finance-only status route. Through HTTP."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from server.accounts.tables import Role
from server.core import clock
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.payouts import service as payouts
from server.payouts.tables import PayoutBatch, PayoutLine
from tests.factories import login, make_user, post_form
from tests.payouts.factories import after_next_cutoff, earning_publisher
from tests.payouts.test_review import finance_client

PAGE = "/finance/payouts"


def text(page: str) -> str:
    """The page's words, one space apart, as a person reads them."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def last_cutoff() -> datetime:
    return payouts.last_cutoff(await payouts.schedule_terms(), clock.now())[1]


def moment_of(page: str) -> str:
    return html.unescape(re.search(r'name="moment" value="([^"]+)"', page).group(1))


async def test_preparing_a_period_with_nothing_available_at_its_cut_off_says_so_and_makes_no_batch(
    new_client, settings
):
    await earning_publisher(settings, 12_000)  # earned now: after the cut-off that closed last
    _, finance = await finance_client(new_client)
    await finance.get(PAGE)

    answer = await post_form(finance, f"{PAGE}/prepare")

    assert answer.status_code == 200
    words = text(answer.text)
    assert "No EUR batch: no publisher had an available balance at the cut-off." in words
    assert "1 publisher has one now, earned after the cut-off: it waits for the next period" in words
    assert "No payout batches yet." in words and "exist already" not in words
    assert await PayoutBatch.count() == 0


async def test_preparing_a_period_where_nobody_reaches_the_minimum_says_who_was_carried_over_and_why(
    new_client, settings
):
    before = await last_cutoff() - timedelta(minutes=5)
    await earning_publisher(settings, 1_000, effective_at=before)  # below the 50.00 minimum
    await earning_publisher(settings, 2_000, effective_at=before, ready=False)
    _, finance = await finance_client(new_client)
    await finance.get(PAGE)

    first = text((await post_form(finance, f"{PAGE}/prepare")).text)

    [batch] = await PayoutBatch.select()
    assert (batch["line_count"], batch["carried_count"], batch["off_cycle"]) == (0, 2, False)
    assert f"Batch #{batch['id']} (EUR) prepared now. 0 lines to pay. 2 publishers carried over:" in first
    assert "below the minimum payout: 2" in first  # the unready account is below the minimum first
    assert "Nobody in it is paid: it only records who was carried over and why." in first
    assert f'data-id="{batch["id"]}"' in (await finance.get(PAGE)).text  # the list agrees

    again = text((await post_form(finance, f"{PAGE}/prepare")).text)
    assert f"Batch #{batch['id']} (EUR) was prepared before: nothing new was made." in again
    assert await PayoutBatch.count() == 1


async def test_an_off_cycle_run_pays_what_is_available_now_marked_off_cycle_and_a_second_click_makes_no_second_batch(
    new_client, settings
):
    publisher = await earning_publisher(settings, 12_000)  # earned after the last cut-off
    small = await earning_publisher(settings, 1_000)
    preparer_id, preparer = await finance_client(new_client)
    _, approver = await finance_client(new_client)
    moment = moment_of((await preparer.get(PAGE)).text)

    first = await post_form(preparer, f"{PAGE}/off-cycle", {"moment": moment})
    again = await post_form(preparer, f"{PAGE}/off-cycle", {"moment": moment})

    [batch] = await PayoutBatch.select()
    assert batch["off_cycle"] is True and batch["prepared_by"] == preparer_id
    assert batch["period_end"].astimezone(UTC) == datetime.fromisoformat(moment)
    lines = await PayoutLine.select().where(PayoutLine.batch == batch["id"])
    assert [(line["publisher"], line["amount_minor"]) for line in lines] == [(publisher, 12_000)]
    assert "Off-cycle run with its cut-off at" in text(first.text)
    assert f"Batch #{batch['id']} (EUR) prepared now. 1 line to pay. 1 publisher carried over:" in text(first.text)
    assert f"Batch #{batch['id']} (EUR) was prepared before: nothing new was made." in text(again.text)
    listing = (await preparer.get(PAGE)).text
    assert re.search(rf'data-id="{batch["id"]}" data-off-cycle="yes">\s*<td><a[^>]*>#{batch["id"]}</a> <span', listing)
    assert 'data-testid="off-cycle"' in listing
    # The same rules: the small balance waits, the money is reserved once, and four eyes holds.
    assert await ledger.balance(K.publisher_available, "EUR", small) == 1_000
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 12_000
    assert (await post_form(preparer, f"{PAGE}/{batch['id']}/approve")).status_code == 403
    await approver.get(f"{PAGE}/{batch['id']}")
    assert (await post_form(approver, f"{PAGE}/{batch['id']}/approve")).status_code == 303
    # The next regular period does not pay the same money again.
    later = await payouts.prepare_due(after_next_cutoff())
    assert later.lines == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 12_000
    assert await ledger.check() == []


async def test_an_off_cycle_run_from_a_stale_future_or_missing_moment_is_refused_and_changes_nothing(
    new_client, settings
):
    await earning_publisher(settings, 12_000)
    _, finance = await finance_client(new_client)
    await finance.get(PAGE)
    now = clock.now().replace(microsecond=0)
    for moment in ((now - timedelta(hours=2)).isoformat(), (now + timedelta(minutes=5)).isoformat(), "", "soon"):
        answer = await post_form(finance, f"{PAGE}/off-cycle", {"moment": moment})
        assert answer.status_code == 422, moment
        assert "read the page again" in text(answer.text) or "read it again" in text(answer.text)
    assert await PayoutBatch.count() == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0


async def test_the_preparer_sees_waiting_for_a_second_person_instead_of_the_approve_button(new_client, settings):
    await earning_publisher(settings, 12_000, effective_at=await last_cutoff() - timedelta(minutes=5))
    preparer_id, preparer = await finance_client(new_client)
    _, other = await finance_client(new_client)
    await preparer.get(PAGE)
    assert (await post_form(preparer, f"{PAGE}/prepare")).status_code == 200
    [batch] = await PayoutBatch.select()
    assert batch["prepared_by"] == preparer_id

    page = (await preparer.get(f"{PAGE}/{batch['id']}")).text
    assert 'data-testid="approve"' not in page and f'action="{PAGE}/{batch["id"]}/approve"' not in page
    assert "Waiting for a second person to approve." in text(page)
    assert "You prepared this batch" in text(page)
    assert (await post_form(preparer, f"{PAGE}/{batch['id']}/approve")).status_code == 403  # still refused

    theirs = (await other.get(f"{PAGE}/{batch['id']}")).text
    assert 'data-testid="approve"' in theirs and "Waiting for a second person" not in theirs


async def test_a_batch_being_paid_is_followed_by_its_page_through_a_finance_only_status_route(new_client, settings):
    await earning_publisher(settings, 12_000)
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    _, finance = await finance_client(new_client)
    publisher = new_client()
    _, email = await make_user(Role.publisher, settings)
    await login(publisher, email)

    prepared = (await finance.get(f"{PAGE}/{batch_id}")).text
    assert "data-poll-status" not in prepared and "payout_batch.js" not in prepared  # nothing in flight

    for status in ("approved", "executing"):
        await PayoutBatch.update({PayoutBatch.status: status}).where(PayoutBatch.id == batch_id)
        page = (await finance.get(f"{PAGE}/{batch_id}")).text
        assert f'data-poll-status="{PAGE}/{batch_id}/status" data-status="{status}"' in page
        assert '<script src="/static/payout_batch.js" defer></script>' in page
        assert "Last checked" in text(page)
        answer = await finance.get(f"{PAGE}/{batch_id}/status")
        assert answer.status_code == 200
        body = answer.json()
        assert (body["status"], body["final"], body["lines"]) == (status, False, {"approved": 1})
        assert body["checked_text"].startswith("Last checked ")

    await PayoutBatch.update({PayoutBatch.status: "done"}).where(PayoutBatch.id == batch_id)
    done = (await finance.get(f"{PAGE}/{batch_id}")).text
    assert "data-poll-status" not in done and "payout_batch.js" not in done  # final: no more asking
    assert (await finance.get(f"{PAGE}/{batch_id}/status")).json()["final"] is True
    assert (await publisher.get(f"{PAGE}/{batch_id}/status")).status_code in (401, 403)
    assert (await new_client().get(f"{PAGE}/{batch_id}/status")).status_code in (401, 403)
    js = (await finance.get("/static/payout_batch.js")).text
    assert "data-poll-status" in js and "location.reload" in js


async def test_the_payout_pages_read_in_french_and_italian_with_local_money_and_dates(new_client, settings):
    await earning_publisher(settings, 123_456)
    batch_id = (await payouts.prepare_due(after_next_cutoff())).batches[0]
    _, finance = await finance_client(new_client)
    end = (await PayoutBatch.select(PayoutBatch.period_end).first())["period_end"].astimezone(UTC)

    french = text((await finance.get(f"{PAGE}/{batch_id}", headers={"Accept-Language": "fr-FR"})).text)
    assert f"Lot de paiements n° {batch_id}" in french
    assert "1 234,56 €" in french  # text() reads the narrow no-break spaces as spaces
    assert f"au {end:%d/%m/%Y} " in french and "Heures en UTC." in french
    assert "Approuver ces lignes" in french and "à payer" in french

    italian = text((await finance.get(PAGE, headers={"Accept-Language": "it-IT"})).text)
    assert "Lotti di pagamenti" in italian and "Prepara ora un pagamento fuori calendario" in italian
    assert "1.234,56 €" in italian and "preparato" in italian


async def test_four_eyes_reasons_are_kept_as_phrases_and_read_in_each_readers_language(new_client, settings):
    await earning_publisher(settings, 12_000, effective_at=await last_cutoff() - timedelta(minutes=5))
    a_id, a = await finance_client(new_client)
    _, b = await finance_client(new_client)
    await a.get(f"{PAGE}/settings")
    saved = await post_form(a, f"{PAGE}/settings/minimum", {"currency": "EUR", "minimum": "60.00"})
    assert saved.status_code == 303
    await post_form(a, f"{PAGE}/prepare")
    [batch] = await PayoutBatch.select()

    italian = text((await a.get(f"{PAGE}/{batch['id']}", headers={"Accept-Language": "it"})).text)
    assert "In attesa dell'approvazione di una seconda persona." in italian
    assert (
        "Hai preparato questo lotto; Hai modificato il pagamento minimo in EUR (prima: 50,00 €; ora: 60,00 €) il "
        in (italian)
    )
    french = text((await b.get(f"{PAGE}/{batch['id']}", headers={"Accept-Language": "fr"})).text)
    assert "a modifié le paiement minimum en EUR (avant : 50,00 € ; désormais : 60,00 €) le " in french
    english = text((await b.get(f"{PAGE}/{batch['id']}")).text)
    assert "changed the EUR minimum payout from €50.00 to €60.00 on " in english
    assert 'data-testid="approve"' not in (await a.get(f"{PAGE}/{batch['id']}")).text
