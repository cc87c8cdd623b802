"""Kill the server with SIGKILL under click load, restart it, and count the answered clicks lost.

    .venv/bin/python bench/click_crash.py [--seconds 3] [--connections 32] [--postgres | --database-url URL]

Starts affnet (one uvicorn worker) on 127.0.0.1 with a fresh database, loads GET /c/{code} with
wrk, whose Lua script writes down the click id of every 302 it receives; after --seconds it sends
SIGKILL to the server mid-load (no shutdown hook runs), counts the answered click ids the
database lacks at that moment (what the buffer alone used to lose), starts the server again on
the same data directory (it replays the dead process's journal), stops it gracefully and
compares: every answered click id must be stored, once. Loopback only; the load lasts --seconds
(max 30) and wrk is stopped with the server. Needs wrk (installed if root).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click_redirect import seed  # noqa: E402
from common import (  # noqa: E402
    BROWSER_UA,
    ROOT,
    bench_database,
    durability,
    ensure_tools,
    load_average,
    machine,
    start_server,
)

sys.path.insert(0, str(ROOT))

# Each answered click id on its own line, written as the answer arrives (line-buffered, so a
# stopped wrk leaves every id it had read).
LUA = r"""
local out
function init(args)
  out = io.open(args[1], "w")
  out:setvbuf("line")
end
function response(status, headers, body)
  if status == 302 then
    local id = (headers["location"] or headers["Location"] or ""):match("click_id=([^&]+)")
    if id then out:write(id, "\n") end
  end
end
"""


async def stored(database_url: str) -> tuple[set[str], int]:
    """The click ids in the database, and how many rows hold them (equal unless one is stored twice)."""
    from server import piccolo_app
    from server.core import db
    from server.tracking.tables import Click

    engine = piccolo_app.bind(db.engine_for(database_url))
    await db.start(engine)
    try:
        ids = [r["click_id"] for r in await Click.select(Click.click_id)]
        return set(ids), len(ids)
    finally:
        await db.stop(engine)


def journaled_clicks(data_dir: Path) -> int | None:
    """Clicks a killed server's journal holds that its database may lack (None: no journal)."""
    try:
        from server.tracking.segment import read_segment
    except ImportError:
        return None  # a build from before the journal: what it had buffered is simply gone
    return sum(len(read_segment(p)[0]) for p in data_dir.glob("journal/clicks-*/*.seg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3, help="load before the kill (max 30)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 1), 30)
    ensure_tools("wrk")

    with tempfile.TemporaryDirectory(prefix="affnet-crash-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        server = start_server(workdir, url)
        database_url = server.env["DATABASE_URL"]
        settings, load_before = durability(database_url), load_average()
        try:
            code = asyncio.run(seed(database_url))
            script, ids_file = workdir / "ids.lua", workdir / "answered.txt"
            script.write_text(LUA)
            load = subprocess.Popen(  # noqa: S603
                [
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{int(seconds) + 30}s",
                    "-s",
                    str(script),  # noqa: S607
                    "-H",
                    f"User-Agent: {BROWSER_UA}",
                    f"{server.url}/c/{code}?sub1=crash",
                    "--",
                    str(ids_file),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(seconds)
                server.kill9()  # mid-load: requests in flight, clicks buffered
            finally:
                load.send_signal(signal.SIGINT)
                load.wait(timeout=30)
            answered = set(ids_file.read_text().split())
            at_kill, _ = asyncio.run(stored(database_url))
            leftover = journaled_clicks(workdir / "data")
            replay_seconds = server.restart(workdir)
        finally:
            exit_code = server.stop()
        after, rows = asyncio.run(stored(database_url))

    engine = f"{settings} (as the database reports them)"
    missing = answered - after
    print(f"machine:  {machine()}")
    print(
        f"settings: uvicorn, 1 worker, {engine}, wrk -t1 -c{args.connections}, SIGKILL after {seconds:g}s "
        f"of load, loopback only; load average {load_before} before, {load_average()} after"
    )
    print(f"clicks answered before the kill:            {len(answered)}")
    print(
        f"  not in the database at the kill:          {len(answered - at_kill)} "
        f"(left in the killed process's journal: {'no journal' if leftover is None else leftover})"
    )
    print(f"restart until answering (replay included):  {replay_seconds:.2f} s")
    print(f"answered clicks missing after restart:      {len(missing)}")
    print(f"clicks stored twice:                        {rows - len(after)}")
    print(f"stored but never answered (in flight):      {len(after - answered)} (server exit code {exit_code})")
    if missing or rows != len(after):
        sys.exit(1)


if __name__ == "__main__":
    main()
