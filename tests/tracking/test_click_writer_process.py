"""The click writer process (settings.click_writer = "process", server/tracking/writer_process.py):
the serving process journals each click and a process of its own stores it, with the same reasons
as the inline writer (duplicates, caps), each click once, through a writer that dies, and with
the campaign's cap reaching this process's redirects as soon as the writer's answer does."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from server import piccolo_app
from server.app import create_app
from server.core import db
from server.core.settings import Settings
from server.tracking.tables import Click
from server.tracking.writer_process import WriterProcessError
from tests.tracking.factories import campaign_with_link, cookieless

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


@pytest.fixture
async def writer_app(app, clean, settings: Settings, tmp_path: Path) -> AsyncIterator:
    """An app of its own on the tests' database and Redis, whose clicks a writer process stores."""
    own = replace(settings, click_writer="process", journal_dir=str(tmp_path / "journal"))
    shared_engine = db._engine  # startup of this app rebinds the tables: the session's app gets them back
    application = create_app(own)
    application.state.click_buffer._flush_interval = 3600.0  # no background flush: the test flushes
    for hook in application.on_startup:
        await hook(application)
    try:
        yield application
    finally:
        try:
            for hook in application.on_shutdown:
                await hook(application)
        finally:
            piccolo_app.bind(shared_engine)


async def _click(app, code: str, reader: int, sub: str = "") -> str:
    """A reader's click (`reader` picks its network and browser): where it went."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(f"192.0.{reader}.1", 4000)),
        base_url="http://t",
        cookies=cookieless(),
    ) as http:
        response = await http.get(f"/c/{code}?sub1={sub}", headers={"user-agent": f"{BROWSER} r/{reader}"})
    assert response.status_code == 302, response.text
    return response.headers["location"]


def _click_id(location: str) -> str:
    return parse_qs(urlsplit(location).query)["click_id"][0]


async def _stored() -> dict[str, str]:
    return {r["click_id"]: r["reason"] for r in await Click.select(Click.click_id, Click.reason)}


async def test_clicks_are_stored_once_by_the_writer_process_with_their_reasons(writer_app, settings, tmp_path):
    s = await campaign_with_link(settings)
    answered = [_click_id(await _click(writer_app, s.code, reader)) for reader in range(30)]
    again = _click_id(await _click(writer_app, s.code, 3))  # the same reader, the same browser, again
    buffer = writer_app.state.click_buffer
    assert buffer.pending == 31 and await _stored() == {}  # journaled only: this process holds none
    assert await buffer.flush() == 31
    writer = buffer._remote
    assert writer.pid is not None and writer.pid != os.getpid() and writer.started == 1
    stored = await _stored()
    assert set(stored) == {*answered, again} and len(stored) == 31
    assert stored[again] == "duplicate" and {stored[c] for c in answered} == {"valid"}
    assert buffer.pending == 0 and buffer.written == 31
    # What the journal held is committed: a restart would replay nothing.
    assert await buffer.flush() == 0


async def test_a_writer_process_that_dies_is_replaced_and_every_click_is_stored_once(writer_app, settings):
    s = await campaign_with_link(settings)
    buffer = writer_app.state.click_buffer
    writer = buffer._remote
    answered = [_click_id(await _click(writer_app, s.code, reader)) for reader in range(5)]
    await buffer.flush()
    # Killed between batches: the next batch starts a new one.
    first = writer.pid
    os.kill(first, signal.SIGKILL)
    answered += [_click_id(await _click(writer_app, s.code, reader)) for reader in range(5, 8)]
    await asyncio.sleep(0.2)
    assert await buffer.flush() == 3
    second = writer.pid
    assert second not in (None, first) and writer.started == 2
    # Killed while it holds a batch (frozen first, so that it cannot answer before): the write fails,
    # the buffer keeps the rows, and the next try stores them with a third process.
    answered += [_click_id(await _click(writer_app, s.code, reader)) for reader in range(8, 15)]
    os.kill(second, signal.SIGSTOP)
    attempt = asyncio.create_task(buffer.flush())
    await asyncio.sleep(0.3)
    assert not attempt.done()
    os.kill(second, signal.SIGKILL)
    with pytest.raises(WriterProcessError):
        await attempt
    assert buffer.pending == 7
    assert await buffer.flush() == 7
    assert writer.pid not in (None, first, second) and writer.started == 3
    stored = await _stored()
    assert set(stored) == set(answered) and len(answered) == 15 and set(stored.values()) == {"valid"}


async def test_a_full_campaign_sends_readers_to_its_fallback_from_the_writer_process_answer(writer_app, settings):
    s = await campaign_with_link(settings, cap_clicks_daily=2)
    for reader in range(3):
        assert (await _click(writer_app, s.code, reader)).startswith("https://shop.example.com/boots")
    await writer_app.state.click_buffer.flush()
    assert sorted((await _stored()).values()) == ["over_cap", "valid", "valid"]
    # The writer's answer said the campaign is full: the next reader goes to the fallback URL.
    assert writer_app.state.redirector.counter.flagged
    assert (await _click(writer_app, s.code, 3)).startswith("https://fallback.example.org/")


async def test_stopping_the_server_stores_every_click_and_ends_the_writer_process(
    app, clean, settings: Settings, tmp_path: Path
):
    own = replace(settings, click_writer="process", journal_dir=str(tmp_path / "journal"))
    shared_engine = db._engine
    application = create_app(own)
    for hook in application.on_startup:
        await hook(application)
    try:
        s = await campaign_with_link(settings)
        answered = {_click_id(await _click(application, s.code, reader)) for reader in range(20)}
        await application.state.click_buffer.flush()  # a writer process runs
        answered |= {_click_id(await _click(application, s.code, reader)) for reader in range(20, 40)}
        writer = application.state.click_buffer._remote
        pid = writer.pid
        assert pid is not None
    finally:
        for hook in application.on_shutdown:
            await hook(application)
        piccolo_app.bind(shared_engine)
    assert set(await _stored()) == answered  # the 20 still journaled were stored at the stop
    assert writer.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the writer process has exited (and was waited for)
    assert list((tmp_path / "journal").rglob("*.seg")) == []  # nothing left to replay
