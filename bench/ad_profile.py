"""Where an ad request's CPU goes: a sampling profile (py-spy) of `affnet serve` while wrk sends the
embed script's traffic (GET /ads/decide, then POST of the answer's view URL), as bench/ad_decision.py.

    .venv/bin/python bench/ad_profile.py [--seconds 10] [--postgres] [--out bench/profiles/ads-NAME]

One server process, every request from another client network (X-Forwarded-For), views recorded
and flushed. py-spy samples the server 1,000 times a second (--nonblocking: it never stops the
process) for --seconds; the script prints the server's CPU per request (from /proc, profiler
excluded: decisions and views alike, half each), then the functions by own time and by inclusive
time, as a share of the samples and as microseconds per request (bench/click_profile.py: report).
With --out it also writes OUT.txt (that report) and OUT.svg (a flame graph to open in a browser).

Loopback only, bounded: --seconds (2 to 60) of load after a 2-second warm-up."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ad_decision import LUA, SITE, count_impressions, seed  # noqa: E402
from click_profile import arguments, collapse, publish, report, sampled  # noqa: E402
from common import (  # noqa: E402
    BROWSER_UA,
    bench_database,
    durability,
    load_average,
    machine,
    start_server,
    wrk,
)


def main() -> None:
    args, seconds, py_spy = arguments(__doc__)
    os.environ["TRUSTED_PROXIES"] = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="affnet-profile-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        server = start_server(workdir, url)
        database_url = server.env["DATABASE_URL"]
        try:
            key = asyncio.run(seed(database_url, str(workdir / "data" / "media")))
        finally:
            server.stop()  # a seeding failure leaves no server behind
        settings = durability(database_url)
        script = workdir / "ads.lua"
        script.write_text(LUA % {"slot": key, "ua": BROWSER_UA, "site": SITE, "delay": 0})
        server = start_server(workdir, database_url)
        target = server.url
        load_before = load_average()
        try:
            wrk(target, 2, args.connections, script)  # warm up
            load, cpu_us, raw, svg = sampled(
                py_spy, server.proc.pid, workdir, target, seconds, args.connections, script, threads=True
            )
        finally:
            server.stop()
        rows, _ = asyncio.run(count_impressions(database_url))
        mix = load.counts
        text = "\n".join(
            [
                f"machine:      {machine()}",
                f"load average: {load_before} before, {load_average()} after (1, 5, 15 min)",
                f"database:     {'SQLite' if database_url.startswith('sqlite') else 'PostgreSQL'}, {settings}",
                f"load:         wrk -t1 -c{args.connections} -d{seconds}s, decisions and their view beacons "
                f"alternating, every request another /24: {load.rps:,.0f} req/s under the profiler "
                f"(py-spy at 1,000 Hz, nonblocking)",
                f"answers:      {mix.get('ads', 0):,} ads, {mix.get('views', 0):,} views counted, "
                f"{mix.get('fallbacks', 0):,} fallbacks, {mix.get('replays', 0) + mix.get('other', 0):,} other; "
                f"impressions stored: {rows:,}",
                "",
                report(collapse(raw), load.requests, cpu_us, args.top),
            ]
        )
        publish(text, svg, args.out)


if __name__ == "__main__":
    main()
