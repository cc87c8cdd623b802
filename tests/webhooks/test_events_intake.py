"""conversion.recorded under load: reports arriving together are stored a batch at a time by the
server's group commit, and each stored conversion is told exactly once, its repeats (in the same
batch or a later one) never; a batch whose statement fails stores nothing and tells nothing, and
each of its reports, stored alone, is told once with it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

from server.conversions import service as intake
from server.conversions.group_commit import BatchFailed, ConversionWriter
from server.conversions.tables import Conversion, ConversionSource
from server.tracking.tokens import issue_click_id, read_click_id
from server.webhooks.tables import WebhookMessage
from tests.conversions.factories import campaign_and_click, postback


def fresh_clicks(app, link_id: int, n: int) -> list[str]:
    """n click ids of the link, signed as the redirect signs them (intake needs no click row)."""
    return [issue_click_id(app.state.redirector.token_key, link_id, int(time.time()) - 60) for _ in range(n)]


async def told() -> Counter:
    """The queued conversion.recorded messages, by (owner, object)."""
    rows = await WebhookMessage.select(WebhookMessage.owner, WebhookMessage.object_id, WebhookMessage.event_type)
    assert {r["event_type"] for r in rows} <= {"conversion.recorded"}
    return Counter((r["owner"], r["object_id"]) for r in rows)


async def test_reports_arriving_together_are_each_told_once_however_often_repeated(
    app, client, settings, receiver, webhook_endpoint
):
    setup, _, token = await campaign_and_click(settings, client)
    await webhook_endpoint(setup.advertiser.id, receiver.url("/a"), events=["conversion.recorded"])
    await webhook_endpoint(setup.publisher.id, receiver.url("/p"), events=["conversion.recorded"])
    clicks = fresh_clicks(app, setup.link_id, 8)
    reports = [(f"order-{i}", clicks[i]) for i in range(8)] * 3  # each order three times, all at once
    batches = app.state.conversion_writer.batches
    answers = await asyncio.gather(*(postback(client, click_id=c, txn_id=t, token=token) for t, c in reports))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert app.state.conversion_writer.batches - batches < len(reports)  # grouped, not one by one
    ids = {a.json()["conversion_id"] for a in answers}
    assert len(ids) == 8 and await Conversion.count() == 8
    expected = Counter(
        {(owner, f"conversion:{i}"): 1 for i in ids for owner in (setup.advertiser.id, setup.publisher.id)}
    )
    assert await told() == expected
    # Reported again later: duplicates, told nothing more.
    again = await asyncio.gather(*(postback(client, click_id=c, txn_id=t, token=token) for t, c in reports[:8]))
    assert {a.json()["status"] for a in again} == {"duplicate"}
    assert await told() == expected


async def test_a_failed_batch_tells_nothing_and_its_reports_stored_alone_are_told_once(
    app, client, settings, receiver, webhook_endpoint
):
    setup, _, _ = await campaign_and_click(settings, client)
    await webhook_endpoint(setup.advertiser.id, receiver.url("/a"), events=["conversion.recorded"])
    terms = await intake.load_terms(str(setup.link_id))
    now = datetime.now(UTC)
    rows = [
        intake._conversion_row(
            terms.campaign,
            terms.goals,
            read_click_id(app.state.redirector.token_key, click),
            txn,
            intake.Report(txn_id=txn),
            ConversionSource.postback,
            now,
        )
        for txn, click in zip(["g1", "g2", "bad"], fresh_clicks(app, setup.link_id, 3), strict=True)
    ]
    rows[-1]["goal"] = 10**9  # no such goal: the foreign key refuses it, and with it the whole batch
    writer = ConversionWriter()
    advertiser = setup.advertiser.id
    try:
        batch = await asyncio.gather(
            *(writer.insert(row, advertiser_id=advertiser) for row in rows), return_exceptions=True
        )
        assert all(isinstance(outcome, BatchFailed) for outcome in batch), batch
        assert await Conversion.count() == 0 and await told() == Counter()

        outcomes = await asyncio.gather(
            *(intake._store_grouped(writer, row, 1, advertiser) for row in rows), return_exceptions=True
        )
        assert isinstance(outcomes[-1], Exception)
        stored = [outcome[0]["id"] for outcome in outcomes[:2]]
        assert await Conversion.count() == 2
        assert await told() == Counter({(advertiser, f"conversion:{i}"): 1 for i in stored})
    finally:
        await writer.close()
