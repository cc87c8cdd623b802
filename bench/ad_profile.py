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

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ad_decision import LUA, SITE, count_impressions, seed  # noqa: E402
from click_profile import collapse, report  # noqa: E402
from common import (  # noqa: E402
    BROWSER_UA,
    bench_database,
    durability,
    ensure_tools,
    load_average,
    machine,
    start_server,
    tree_cpu_seconds,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--out", default=None, help="write OUT.txt and OUT.svg")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2), 60)
    ensure_tools("wrk")
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        sys.exit("py-spy is missing: make install (it is a dev dependency)")
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
            raw, svg = workdir / "stacks.txt", workdir / "flame.svg"
            common = ["--pid", str(server.proc.pid), "--rate", "1000", "--nonblocking", "--threads", "--duration"]
            spies = [
                subprocess.Popen(
                    [str(py_spy), "record", *common, str(seconds + 1), "--format", fmt, "-o", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for fmt, out in (("raw", raw), ("flamegraph", svg))
            ]
            time.sleep(0.5)
            cpu_before = tree_cpu_seconds(server.proc.pid)
            load = wrk(target, seconds, args.connections, script)
            cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
            for spy in spies:
                spy.wait(timeout=seconds + 30)
        finally:
            server.stop()
        rows, _ = asyncio.run(count_impressions(database_url))
        cpu_us = cpu / max(load.requests, 1) * 1e6
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
        print(text)
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".txt").write_text(text + "\n")
            out.with_suffix(".svg").write_bytes(svg.read_bytes())
            print(f"\nwrote {out.with_suffix('.txt')} and {out.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
