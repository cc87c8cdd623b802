"""Finance review: four eyes on every batch, holds that give the money back and void approval,
a CSV of exactly what the page shows, and every action in the audit log. Finance only."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from server.accounts.tables import Role
from server.audit.tables import AuditEvent
from server.ledger import service as ledger
from server.ledger.tables import AccountKind as K
from server.payouts import review
from server.payouts import service as payouts
from server.payouts.tables import PayoutBatch, PayoutLine
from tests.factories import error_text, login, make_staff, make_user, post_form
from tests.payouts.factories import after_next_cutoff, earning_publisher


async def finance_client(new_client):
    user_id, email = await make_staff(Role.finance)
    client = new_client()
    await login(client, email)
    return user_id, client


async def prepared_batch(settings, preparer_id: int | None, *amounts: int) -> tuple[int, list[int]]:
    publishers = [await earning_publisher(settings, a) for a in amounts]
    outcome = await payouts.prepare_due(after_next_cutoff(), actor_id=preparer_id)
    return outcome.batches[0], publishers


async def test_the_preparer_cannot_approve_and_another_finance_person_can(new_client, settings):
    preparer_id, preparer = await finance_client(new_client)
    _, approver = await finance_client(new_client)
    batch_id, _ = await prepared_batch(settings, preparer_id, 10_000, 20_000)

    refused = await post_form(preparer, f"/finance/payouts/{batch_id}/approve")
    assert refused.status_code == 403 and "another finance person" in error_text(refused.text)
    assert (await review.batch(batch_id))["status"] == "prepared"

    await approver.get(f"/finance/payouts/{batch_id}")
    assert (await post_form(approver, f"/finance/payouts/{batch_id}/approve")).status_code == 303
    row = await review.batch(batch_id)
    assert row["status"] == "approved" and row["approved_fingerprint"] == await review.current_fingerprint(batch_id)
    page = await approver.get(f"/finance/payouts/{batch_id}")
    assert "Approved by" in page.text and 'data-testid="approve"' not in page.text


async def test_holding_a_line_returns_its_money_voids_approval_and_bars_the_editor_from_approving(new_client, settings):
    _, approver = await finance_client(new_client)
    _, editor = await finance_client(new_client)
    _, third = await finance_client(new_client)
    batch_id, (first, second) = await prepared_batch(settings, None, 10_000, 20_000)
    await approver.get("/finance/payouts")
    assert (await post_form(approver, f"/finance/payouts/{batch_id}/approve")).status_code == 303
    approved_print = (await review.batch(batch_id))["approved_fingerprint"]

    line = await PayoutLine.select().where(PayoutLine.publisher == second).first()
    await editor.get("/finance/payouts")
    held = await post_form(
        editor, f"/finance/payouts/{batch_id}/lines/{line['id']}/hold", {"reason": "traffic under review"}
    )
    assert held.status_code == 303
    row = await review.batch(batch_id)
    assert (row["status"], row["approved_by"], row["approved_fingerprint"]) == ("prepared", None, "")
    assert row["total_minor"] == 10_000 and row["held_count"] == 1
    assert await review.current_fingerprint(batch_id) != approved_print
    # The held line's money is the publisher's again; the other line stays reserved.
    assert await ledger.balance(K.publisher_available, "EUR", second) == 20_000
    assert await ledger.balance(K.publisher_available, "EUR", first) == 0
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 10_000
    assert await ledger.check() == []

    refused = await post_form(editor, f"/finance/payouts/{batch_id}/approve")
    assert refused.status_code == 403
    await third.get("/finance/payouts")
    assert (await post_form(third, f"/finance/payouts/{batch_id}/approve")).status_code == 303
    assert (await review.batch(batch_id))["status"] == "approved"


async def test_a_hold_needs_a_reason_and_a_line_is_held_once(new_client, settings):
    user_id, finance = await finance_client(new_client)
    batch_id, _ = await prepared_batch(settings, None, 10_000)
    line = await PayoutLine.select().first()
    await finance.get("/finance/payouts")
    missing = await post_form(finance, f"/finance/payouts/{batch_id}/lines/{line['id']}/hold", {"reason": " "})
    assert missing.status_code == 422 and "why" in error_text(missing.text).lower()
    path = f"/finance/payouts/{batch_id}/lines/{line['id']}/hold"
    assert (await post_form(finance, path, {"reason": "fraud check"})).status_code == 303
    again = await post_form(finance, path, {"reason": "fraud check"})
    assert again.status_code == 409
    assert await ledger.balance(K.payouts_in_transit, "EUR") == 0
    assert await ledger.check() == []


async def test_the_page_shows_totals_lines_flags_and_carry_overs_and_the_csv_matches_it(new_client, settings):
    _, finance = await finance_client(new_client)
    batch_id, (paid, _small) = await prepared_batch(settings, None, 12_345, 100)
    page = await finance.get(f"/finance/payouts/{batch_id}")
    assert page.status_code == 200
    assert "€123.45" in page.text and 'data-testid="first-payout"' in page.text
    assert 'data-reason="below_minimum"' in page.text and "below the minimum payout" in page.text

    export = await finance.get(f"/finance/payouts/{batch_id}/lines.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    shown = re.findall(r'data-testid="line" data-id="(\d+)" data-status="(\w+)"', page.text)
    assert [(r["line"], r["status"]) for r in rows] == shown
    assert [(int(r["publisher"]), int(r["amount"]), r["first_payout"]) for r in rows] == [(paid, 12_345, "yes")]

    listing = await finance.get("/finance/payouts")
    assert f'href="/finance/payouts/{batch_id}"' in listing.text


async def test_every_action_is_in_the_audit_log_finance_reads(new_client, settings):
    preparer_id, preparer = await finance_client(new_client)
    _, approver = await finance_client(new_client)
    batch_id, _ = await prepared_batch(settings, preparer_id, 10_000, 30_000)
    line = await PayoutLine.select().order_by(PayoutLine.id).first()
    await preparer.get("/finance/payouts")
    await post_form(preparer, f"/finance/payouts/{batch_id}/lines/{line['id']}/hold", {"reason": "check"})
    await approver.get("/finance/payouts")
    await post_form(approver, f"/finance/payouts/{batch_id}/approve")
    actions = await AuditEvent.select(AuditEvent.action).order_by(AuditEvent.id).output(as_list=True)
    assert actions[-3:] == ["payout_batch.prepared", "payout_line.held", "payout_batch.approved"]
    log = await approver.get("/finance/audit")
    assert "payout_batch.approved" in log.text and "payout_line.held" in log.text


async def test_finance_prepares_from_the_page_once(new_client, settings):
    _, finance = await finance_client(new_client)
    await finance.get("/finance/payouts")
    first = await post_form(finance, "/finance/payouts/prepare")
    assert first.status_code == 200  # nothing posted yet in the period that closed last: nothing to pay
    assert "No batch: no publisher has earned anything to pay out yet." in first.text
    again = await post_form(finance, "/finance/payouts/prepare")
    assert "No batch: no publisher has earned anything to pay out yet." in again.text
    assert await PayoutBatch.count() == 0


async def test_only_finance_sees_payout_batches(new_client, settings):
    batch_id, _ = await prepared_batch(settings, None, 10_000)
    for role in (Role.publisher, Role.advertiser, Role.admin):
        _, email = await make_user(role, settings)
        client = new_client()
        await login(client, email)
        assert (await client.get(f"/finance/payouts/{batch_id}")).status_code == 403
        assert (await client.get(f"/finance/payouts/{batch_id}/lines.csv")).status_code == 403
        assert (await post_form(client, f"/finance/payouts/{batch_id}/approve")).status_code == 403
        assert (await client.get(f"/finance/payouts/{batch_id}/status")).status_code == 403
        off_cycle = {"moment": datetime.now(UTC).replace(microsecond=0).isoformat()}
        assert (await post_form(client, "/finance/payouts/off-cycle", off_cycle)).status_code == 403
    assert (await review.batch(batch_id))["status"] == "prepared"
    assert await PayoutBatch.count() == 1
