"""An answered click is a promise: `kill -9` of the server mid-load, restart it, and every click id
a visitor was redirected with is in the database, once (issue 14, item 5)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from dev.services import free_port, wait_for_port
from server.core.settings import ROOT
from server.tracking.tables import Click
from tests.tracking.factories import campaign_with_link

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
VISITORS = 16
ANSWERED_BEFORE_KILL = 600


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env={**env, "BASE_URL": f"http://127.0.0.1:{port}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=60, proc=proc)  # uvicorn listens once startup (the replay) is done
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, f"http://127.0.0.1:{port}"


async def _stored_ids() -> list[str]:
    return [r["click_id"] for r in await Click.select(Click.click_id)]


async def _until(condition, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's end is reaped by whoever adopted it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["inline", "process"])
async def test_clicks_answered_before_kill_9_are_all_stored_once_after_restart(app, clean, settings, tmp_path, writer):
    # `process`: a click writer process stores what the server journals (server/tracking/writer_process.py).
    setup = await campaign_with_link(settings)
    journal_dir = tmp_path / "journal"
    env = {
        **os.environ,
        "AFFNET_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "MEDIA_DIR": settings.media_dir,
        "JOURNAL_DIR": str(journal_dir),
        "PYTHONUNBUFFERED": "1",
        "AFFNET_CLICK_WRITER": writer,
    }
    log = tmp_path / "server.log"
    proc, url = _serve(env, log)
    answered: set[str] = set()
    try:
        async with httpx.AsyncClient(timeout=10, headers={"user-agent": BROWSER}) as http:

            async def visitor(n: int) -> None:
                while True:
                    try:
                        response = await http.get(f"{url}/c/{setup.code}", params={"sub1": f"v{n}"})
                    except httpx.TransportError:
                        return  # the server is gone: requests in flight were never answered
                    assert response.status_code == 302, response.text
                    answered.update(parse_qs(urlsplit(response.headers["location"]).query)["click_id"])

            visitors = [asyncio.create_task(visitor(n)) for n in range(VISITORS)]
            await _until(
                lambda: asyncio.sleep(0, len(answered) >= ANSWERED_BEFORE_KILL),
                120,
                f"{ANSWERED_BEFORE_KILL} answered clicks",
            )
            helpers = _children(proc.pid)  # the click writer process, with `process`
            assert len(helpers) == (1 if writer == "process" else 0), helpers
            os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests in flight, clicks in the buffer
            proc.wait(timeout=10)
            await asyncio.gather(*visitors)
            # The orphaned writer finishes the batch it holds and exits: its input closed with the server.
            await _until(lambda: asyncio.sleep(0, not any(map(_running, helpers))), 30, "the writer process ended")
    finally:
        proc.kill()
        proc.wait()

    missing_at_kill = answered - set(await _stored_ids())
    # Clicks answered but not yet written when the process died: what the half-second buffer lost
    # before the journal. Without them this test would prove nothing.
    assert missing_at_kill, "the kill came when every answered click was already stored; nothing was tested"

    proc, url = _serve(env, log)
    try:

        async def all_stored() -> bool:
            return answered <= set(await _stored_ids())

        await _until(all_stored, 60, f"the {len(missing_at_kill)} clicks the killed process had answered")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    ids = await _stored_ids()
    print(
        f"answered {len(answered)}, missing at kill {len(missing_at_kill)}, stored after restart {len(ids)}, "
        f"of which answered {len(answered & set(ids))}"
    )
    assert answered - set(ids) == set()
    assert len(ids) == len(set(ids))  # replayed clicks are stored once
    assert await Click.count().where(Click.link == setup.link_id) == len(ids)
    assert [p for p in journal_dir.rglob("*.seg")] == []  # the graceful stop left nothing to replay
