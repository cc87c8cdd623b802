"""affnet's own Python per click, without an HTTP server or a load generator in the way.

    .venv/bin/python bench/click_inprocess.py [--clicks 200000] [--postgres] [--profile 30]

Starts the real app (its lifespan: link cache, click buffer and journal, Redis counters) on a
throwaway database and Redis, then calls the ASGI app directly with `/c/{code}` scopes, as an ASGI
server would after parsing a request: every request from another client network with a browser's
headers, recording on. The buffer's flushes (Redis classification, the batched INSERT or COPY) run
on the same loop as they do in a server, and the last batch is flushed before the clock stops, so
the figure is all the process's CPU per click: the handler and its share of the writing. On
SQLite that includes the database's own work (it runs in the process); on PostgreSQL the server's
CPU is given apart.

The same requests through a raw ASGI app answering 302 (`bench/raw302.py`) give what calling an
app costs at all; `--profile N` prints cProfile's top N functions by own time.

Loopback only (Redis, PostgreSQL), bounded by --clicks."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click_redirect import count_clicks, seed  # noqa: E402
from common import ROOT, SECRET, bench_database, database_cpu_seconds, durability, load_average, machine  # noqa: E402

from dev.services import start_redis  # noqa: E402

BROWSER = (
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)


def scope_for(code: str, n: int) -> dict:
    """A browser's navigation to /c/{code} from client network n, as uvicorn hands it to the app."""
    ip = f"{10 + n // 65536 % 200}.{n // 256 % 256}.{n % 256}.7"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": (ip, 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": f"/c/{code}",
        "raw_path": f"/c/{code}".encode(),
        "query_string": b"sub1=post-42&sub2=sidebar",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", BROWSER),
            (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            (b"accept-language", b"fr-FR,fr;q=0.9,en;q=0.8"),
            (b"accept-encoding", b"gzip, deflate, br"),
            (b"referer", b"https://blog.example.com/2026/12/best-widgets"),
            (b"sec-fetch-site", b"cross-site"),
            (b"sec-fetch-mode", b"navigate"),
            (b"sec-fetch-dest", b"document"),
            (b"upgrade-insecure-requests", b"1"),
            (b"connection", b"keep-alive"),
        ],
        "state": {},
    }


async def receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def drive(app, scopes: list[dict], expect: int) -> int:  # noqa: ANN001
    """Call the app once per scope; every 256 calls give the loop a turn (the flush task runs then, as
    it does between requests in a server). Returns how many answers had status `expect`."""
    answered = 0

    async def send(message: dict) -> None:
        nonlocal answered
        if message["type"] == "http.response.start" and message["status"] == expect:
            answered += 1

    for i, scope in enumerate(scopes):
        await app(scope, receive, send)
        if i & 255 == 255:
            await asyncio.sleep(0)
    return answered


async def measure(database_url: str, clicks: int, profile: int) -> None:
    from raw302 import app as raw_app

    from server.app import create_app
    from server.tracking.tables import Click  # noqa: F401  (tables registered before the app starts)

    code = await seed(database_url)
    app = create_app()
    scopes = [scope_for(code, n) for n in range(clicks)]
    warm = [scope_for(code, clicks + n) for n in range(2_000)]
    async with app.lifespan():
        assert await drive(app, warm, 302) == len(warm), "the warm-up clicks were not all redirected"
        await app.state.click_buffer.flush()
        raw_cpu = time.process_time()
        assert await drive(raw_app, scopes, 302) == clicks
        raw_cpu = time.process_time() - raw_cpu

        profiler = cProfile.Profile() if profile else None
        db_before = database_cpu_seconds(database_url) if database_url.startswith("postgres") else None
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        answered = await drive(app, scopes, 302)
        await app.state.click_buffer.flush()
        if profiler:
            profiler.disable()
        cpu, loop_cpu, wall = time.process_time() - cpu, time.thread_time() - loop_cpu, time.perf_counter() - wall
        db_after = database_cpu_seconds(database_url) if db_before is not None else None
    stored = await count_clicks(database_url)
    print(f"clicks:        {clicks:,} answered 302: {answered:,}; stored {stored}")
    print(f"raw ASGI 302:  {raw_cpu / clicks * 1e6:6.2f} µs of process CPU per call")
    print(f"/c/{{code}}:     {cpu / clicks * 1e6:6.2f} µs of process CPU per click ({wall / clicks * 1e6:.2f} µs wall)")
    print(f"affnet's own:  {(cpu - raw_cpu) / clicks * 1e6:6.2f} µs per click (the two above, subtracted)")
    print(
        f"  of which     {loop_cpu / clicks * 1e6:6.2f} µs on the event loop's thread (Python), "
        "the rest in other threads"
    )
    print("               (on SQLite: the database itself, in aiosqlite's thread)")
    if db_before is not None and db_after is not None:
        print(f"PostgreSQL:    {(db_after - db_before) / clicks * 1e6:6.2f} µs of the database's CPU per click")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=200_000)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N by own time")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster (fsync on)")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if not 1_000 <= args.clicks <= 2_000_000:
        parser.error("--clicks must be between 1,000 and 2,000,000")
    print(f"machine:       {machine()}")
    print(f"load average:  {load_average()} before")
    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        database_url = url or f"sqlite:///{workdir / 'bench.sqlite3'}"
        redis = start_redis(workdir / "redis")
        try:
            os.environ.update(
                DATABASE_URL=database_url,
                REDIS_URL=redis.url,
                SECRET_KEY=SECRET,
                BASE_URL="http://127.0.0.1:8000",
                AFFNET_DATA_DIR=str(workdir / "data"),
            )
            import subprocess

            subprocess.run([sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT, check=True, capture_output=True)
            print(f"database:      {durability(database_url)}")
            asyncio.run(measure(database_url, args.clicks, args.profile))
        finally:
            redis.stop()
    print(f"load average:  {load_average()} after")


if __name__ == "__main__":
    main()
