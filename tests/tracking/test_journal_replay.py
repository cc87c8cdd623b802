"""Replaying a journal into the database, on both engines: clicks and counted views (CPM is billed
on them) come back after their process died, and a row replayed twice, or replayed after its
process had stored it after all, is stored once."""

from __future__ import annotations

import shutil
from pathlib import Path

from server.ads.service import write_impressions
from server.ads.tables import Impression
from server.tracking.buffer import EventBuffer
from server.tracking.journal import Journal
from server.tracking.tables import Click
from tests.ads.factories import served_ad, view
from tests.tracking.factories import campaign_with_link


def _left_by_dead_process(journal: Journal, into: Path, owner: str) -> Path:
    """A copy of a live journal's files as a killed process would leave them: no lock held."""
    into.mkdir(parents=True, exist_ok=True)
    for n, segment in enumerate(journal.segments(), start=1):
        shutil.copy(segment, into / f"{owner}.{n:06d}.seg")
    return into


async def _replay(writer, directory: Path) -> None:
    buffer = EventBuffer(writer, journal=Journal(directory))
    await buffer.start()
    await buffer.stop()


async def test_a_replayed_click_is_stored_once_however_often_it_is_replayed(app, client, settings, tmp_path):
    setup = await campaign_with_link(settings)
    answer = await client.get(f"/c/{setup.code}", headers={"user-agent": "Mozilla/5.0 Firefox/128.0"})
    assert answer.status_code == 302
    live = app.state.click_buffer
    assert live.pending == 1
    # The killed process's journal, replayed by two processes one after the other (the second
    # finds the first's copy already stored), and the row also stored by the live buffer.
    # Replays go through the same writer as the live buffer: classified in Redis, then stored.
    store = app.state.redirector.store
    await _replay(store, _left_by_dead_process(live.journal, tmp_path / "a", "host.1.dead0001"))
    [row] = await Click.select(Click.click_id, Click.link, Click.reason)
    assert answer.headers["location"].endswith(row["click_id"]) and row["link"] == setup.link_id
    assert row["reason"] == "valid"
    await _replay(store, _left_by_dead_process(live.journal, tmp_path / "b", "host.2.dead0002"))
    await live.flush()
    # Stored once, and still valid: classified three times, counted once (not a duplicate of itself).
    assert [r["reason"] for r in await Click.select(Click.reason)] == ["valid"]
    assert int(await app.state.redis.get(f"affnet:clicks:{setup.campaign_id}:total")) == 1
    assert list((tmp_path / "a").iterdir()) == [] and list((tmp_path / "b").iterdir()) == []


async def test_a_counted_view_left_in_a_dead_process_journal_is_stored_once(app, client, settings, tmp_path):
    *_, answer = await served_ad(client, settings)
    assert (await view(client, answer["view_url"])).status_code == 202
    live = app.state.ads.buffer
    assert live.journal is not None and live.pending == 1
    await _replay(write_impressions, _left_by_dead_process(live.journal, tmp_path / "a", "host.1.dead0001"))
    assert [r["offer"] for r in await Impression.select(Impression.offer)] == [answer["offer"]]
    await _replay(write_impressions, _left_by_dead_process(live.journal, tmp_path / "b", "host.2.dead0002"))
    await live.flush()
    assert [r["offer"] for r in await Impression.select(Impression.offer)] == [answer["offer"]]


async def test_the_app_journals_clicks_and_views_apart_per_database(app, settings):
    clicks, views = app.state.click_buffer.journal, app.state.ads.buffer.journal
    assert clicks.is_open and views.is_open
    assert clicks.path != views.path
    assert clicks.path.parent == views.path.parent == Path(settings.journal_dir)
