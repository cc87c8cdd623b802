"""Postbacks committed a batch at a time (server/conversions/group_commit.py) and answered by the
fast path: each report is stored exactly once and gets the answer it would get alone (a repeat the
first conversion, a click over its limit click_limit_reached), and a batch whose statement fails
stores nothing of it while each of its reports is answered by its own outcome."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from server.conversions import group_commit
from server.conversions import service as intake
from server.conversions.group_commit import ConversionWriter
from server.conversions.tables import Conversion, ConversionSource
from server.tracking.tokens import issue_click_id, read_click_id
from tests.conversions.factories import api_key, campaign_and_click, conversions, postback

ANSWER_FIELDS = ("status", "duplicate", "http_status", "message", "code", "field")


def fresh_clicks(app, link_id: int, n: int) -> list[str]:
    """n click ids of the link, signed as the redirect signs them (intake needs no click row)."""
    return [issue_click_id(app.state.redirector.token_key, link_id, int(time.time()) - 60) for _ in range(n)]


async def test_concurrent_postbacks_with_repeats_in_one_batch_are_each_stored_once(app, client, settings):
    s, _, token = await campaign_and_click(settings, client)
    clicks = fresh_clicks(app, s.link_id, 20)
    # Each of 20 orders reported three times, all 60 at once: the copies land in the same batches.
    reports = [(f"order-{i}", clicks[i]) for i in range(20)] * 3
    batches_before = app.state.conversion_writer.batches
    responses = await asyncio.gather(
        *(postback(client, click_id=click, txn_id=txn, token=token) for txn, click in reports)
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    by_txn: dict[str, list[dict]] = {}
    for response in responses:
        body = response.json()
        by_txn.setdefault(body["txn_id"], []).append(body)
    assert len(by_txn) == 20
    for bodies in by_txn.values():
        assert sorted(b["status"] for b in bodies) == ["accepted", "duplicate", "duplicate"]
        # A duplicate is answered with the first conversion, field for field.
        first = next(b for b in bodies if b["status"] == "accepted")
        for b in bodies:
            assert {k: v for k, v in b.items() if k not in ("status", "duplicate", "message")} == {
                k: v for k, v in first.items() if k not in ("status", "duplicate", "message")
            }
    rows = await conversions()
    assert Counter(r["txn_id"] for r in rows) == {txn: 1 for txn in by_txn}
    assert {r["id"] for r in rows} == {bodies[0]["conversion_id"] for bodies in by_txn.values()}
    assert all(r["click_ordinal"] == 1 and r["source"] == "postback" for r in rows)
    assert app.state.conversion_writer.batches - batches_before < len(reports)  # grouped, not one by one


async def test_reports_racing_for_a_clicks_places_take_each_place_once(app, client, settings):
    # Two conversions per click: four different orders on one click at once, in one batch.
    s, click_id, token = await campaign_and_click(settings, client, goal_0_per_click="2")
    responses = await asyncio.gather(
        *(postback(client, click_id=click_id, txn_id=f"o{i}", token=token) for i in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 409, 409]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"click_limit_reached"}
    rows = await conversions()
    assert sorted(r["click_ordinal"] for r in rows) == [1, 2]
    accepted = {r.json()["txn_id"] for r in responses if r.status_code == 200}
    assert {r["txn_id"] for r in rows} == accepted


async def test_a_report_stored_before_is_a_duplicate_in_a_later_batch(app, client, settings):
    s, click_id, token = await campaign_and_click(settings, client)
    first = (await postback(client, click_id=click_id, txn_id="A-1", token=token)).json()
    other = fresh_clicks(app, s.link_id, 1)[0]
    # The repeat comes on another click id: still the first report's conversion.
    again = await asyncio.gather(
        postback(client, click_id=click_id, txn_id="A-1", token=token),
        postback(client, click_id=other, txn_id="A-1", token=token),
        postback(client, click_id=other, txn_id="A-2", token=token),
    )
    assert [r.json()["status"] for r in again] == ["duplicate", "duplicate", "accepted"]
    assert again[0].json()["conversion_id"] == again[1].json()["conversion_id"] == first["conversion_id"]
    assert await Conversion.count() == 2


async def _rows(app, link_id: int, txn_ids: list[str]) -> list[dict]:
    """Conversion rows as record_conversion builds them, one per txn id, each on a click of its own."""
    terms = await intake.load_terms(str(link_id))
    assert terms is not None
    now = datetime.now(UTC)
    return [
        intake._conversion_row(
            terms.campaign,
            terms.goals,
            read_click_id(app.state.redirector.token_key, click),
            txn,
            intake.Report(txn_id=txn),
            ConversionSource.postback,
            now,
        )
        for txn, click in zip(txn_ids, fresh_clicks(app, link_id, len(txn_ids)), strict=True)
    ]


async def test_a_batch_whose_statement_fails_stores_none_of_it_and_answers_each_report_alone(app, settings, clean):
    from tests.tracking.factories import campaign_with_link

    s = await campaign_with_link(settings)
    good = await _rows(app, s.link_id, ["g1", "g2", "g3"])
    bad = {**(await _rows(app, s.link_id, ["bad"]))[0], "goal": 10**9}  # no such goal: the foreign key refuses it
    writer = ConversionWriter()
    try:
        # All four in one batch (gather starts them before the writer's task runs): its statement
        # fails on the bad row, so nothing of it is stored; each report then goes alone.
        batch = await asyncio.gather(*(writer.insert(row) for row in [*good, bad]), return_exceptions=True)
        assert all(isinstance(outcome, group_commit.BatchFailed) for outcome in batch), batch
        assert await Conversion.count() == 0
        assert writer.batches == 0

        outcomes = await asyncio.gather(
            *(intake._store_grouped(writer, row, 1) for row in [*good, bad]), return_exceptions=True
        )
        assert isinstance(outcomes[-1], Exception) and not isinstance(outcomes[-1], group_commit.BatchFailed)
        assert all(outcome[1] is False for outcome in outcomes[:3])  # each stored, none a duplicate
        stored = {r["txn_id"]: r["id"] for r in await conversions()}
        assert stored == {outcome[0]["txn_id"]: outcome[0]["id"] for outcome in outcomes[:3]}

        # The writer goes on: the next batch stores and answers as usual, a repeat as a duplicate.
        fourth = await _rows(app, s.link_id, ["g4"])
        again = await asyncio.gather(writer.insert(good[0]), writer.insert(fourth[0]))
        assert again[0][1] is True and again[0][0]["id"] == stored["g1"]
        assert again[1][1] is False and await Conversion.count() == 4
        assert writer.batches == 1
    finally:
        await writer.close()


async def test_when_every_batch_fails_each_postback_is_still_answered_and_stored_once(
    app, client, settings, monkeypatch
):
    s, _, token = await campaign_and_click(settings, client)
    clicks = fresh_clicks(app, s.link_id, 10)

    async def failing(*args, **kwargs):
        raise RuntimeError("the batch's statement failed")

    monkeypatch.setattr(group_commit, "_write_postgres", failing)
    monkeypatch.setattr(group_commit._SQLiteWriter, "write", failing)
    responses = await asyncio.gather(
        *(postback(client, click_id=clicks[i % 5], txn_id=f"t{i % 5}", token=token) for i in range(10))
    )
    assert sorted(r.json()["status"] for r in responses) == ["accepted"] * 5 + ["duplicate"] * 5
    assert Counter(r["txn_id"] for r in await conversions()) == {f"t{i}": 1 for i in range(5)}


# --- the fast path answers as the route --------------------------------------------------------------------


def _comparable(response: httpx.Response) -> tuple:
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length",)}
    body = response.json()
    if isinstance(body, dict):
        for volatile in ("conversion_id", "txn_id", "hold_until"):
            body.pop(volatile, None)
    return response.status_code, headers, body


@pytest.fixture
async def route_client(app, clean):
    """The Litestar app itself, past the fast paths: what /postback answered before them."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app, client=("203.0.113.7", 50000)), base_url="http://testserver.local"
    ) as client:
        yield client


async def test_the_fast_path_answers_every_postback_as_the_route_does(app, client, route_client, settings):
    s, click_id, token = await campaign_and_click(settings, client, goal_0_per_click="100")
    key = await api_key(s.advertiser)
    await postback(client, click_id=click_id, txn_id="dup", token=token)  # both answers below: duplicates
    cases = [
        ({"click_id": click_id, "txn_id": "{n}", "token": token}, {}),  # accepted
        ({"click_id": click_id, "txn_id": "dup", "token": token}, {}),
        ({"click_id": click_id, "txn_id": "{n}"}, {"authorization": f"Bearer {key}"}),
        ({"click_id": click_id, "txn_id": "{n}"}, {"authorization": "Bearer afn_adv_nope_" + "0" * 64}),
        ({"click_id": click_id, "txn_id": "{n}"}, {"authorization": "Basic x"}),
        ({"click_id": click_id, "txn_id": "{n}"}, {}),  # no token
        ({"click_id": click_id, "txn_id": "{n}", "token": "wrong"}, {}),
        ({"click_id": "forged", "txn_id": "{n}", "token": token}, {}),
        ({"click_id": click_id, "txn_id": "", "token": token}, {}),
        ({"click_id": click_id, "txn_id": "x" * 101, "token": token}, {}),
        ({"click_id": click_id, "txn_id": "{n}", "token": token, "goal": "nope"}, {}),
        ({"click_id": click_id, "txn_id": "{n}", "token": token, "amount": "12.5"}, {}),
        ({"click_id": click_id, "txn_id": "{n}", "token": token, "currency": "USD"}, {}),
        ({"click_id": click_id, "txn_id": "{n} é+%", "token": token, "goal": " SALE "}, {}),
    ]
    n = 0
    for params, headers in cases:
        answers = []
        for target in (route_client, client):
            n += 1
            query = {k: v.replace("{n}", f"t{n}") for k, v in params.items()}
            answers.append(await target.get("/postback", params=query, headers=headers))
        assert _comparable(answers[0]) == _comparable(answers[1]), (params, headers, answers[0].text)
    # Raw query strings: repeated names (the first wins), blank values, a NUL, bad escapes.
    for raw in (
        f"click_id={click_id}&txn_id=r{{n}}&txn_id=other&token={token}&token=x",
        f"click_id={click_id}&txn_id=&token={token}",
        f"click_id={click_id}&txn_id=a%00b&token={token}",
        f"click_id={click_id}&txn_id=%ZZ%E9{{n}}&token={token}",
        "token",
        "",
    ):
        answers = []
        for target in (route_client, client):
            n += 1
            answers.append(await target.get("/postback?" + raw.replace("{n}", str(n))))
        assert _comparable(answers[0]) == _comparable(answers[1]), (raw, answers[0].text, answers[1].text)
