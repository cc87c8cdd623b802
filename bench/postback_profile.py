"""Where a postback's CPU goes: a sampling profile (py-spy) of `affnet serve` while wrk loads GET /postback.

    .venv/bin/python bench/postback_profile.py [--seconds 10] [--postgres] [--out bench/profiles/postback-NAME]

The load of bench/postback_ingest.py (a new txn id on a click of its own per request, every tenth
repeating an earlier one; a campaign without caps), one server process. py-spy samples the server
1,000 times a second (--nonblocking) for --seconds; the script prints the server's CPU per postback
(from /proc, profiler excluded), then the functions by own and inclusive time, as in
bench/click_profile.py. With --out it also writes OUT.txt (that report) and OUT.svg (a flame graph).

Loopback only, bounded: --seconds (2 to 60) of load after a 2-second warm-up."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click_profile import collapse, report  # noqa: E402
from common import (  # noqa: E402
    bench_database,
    durability,
    ensure_tools,
    load_average,
    machine,
    start_server,
    tree_cpu_seconds,
    wrk,
)
from postback_ingest import CLICKS_PER_SECOND, LUA, click_id_of, count_conversions, seed, signed_click_ids  # noqa: E402


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
    with tempfile.TemporaryDirectory(prefix="affnet-profile-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        server = start_server(workdir, url)
        database_url = server.env["DATABASE_URL"]
        settings = durability(database_url)
        load_before = load_average()
        try:
            code, token = asyncio.run(seed(database_url))
            clicks = signed_click_ids(click_id_of(server.url, code), CLICKS_PER_SECOND * (seconds + 2))
            # The warm-up has clicks and txn ids of its own: a click takes one conversion, so the
            # measured phase's reports must find their clicks unused, as in bench/postback_ingest.py.
            warm_clicks, clicks = clicks[: CLICKS_PER_SECOND * 2], clicks[CLICKS_PER_SECOND * 2 :]
            (workdir / "clicks.txt").write_text("\n".join(clicks) + "\n")
            (workdir / "warm.txt").write_text("\n".join(warm_clicks) + "\n")
            script = workdir / "postback.lua"
            script.write_text(LUA.replace("{CLICKS}", str(workdir / "clicks.txt")))
            (workdir / "warm.lua").write_text(
                LUA.replace("{CLICKS}", str(workdir / "warm.txt")).replace('"&txn_id=bench-"', '"&txn_id=warm-"')
            )
            target = f"{server.url}/postback?{urlencode({'token': token})}"
            wrk(target, 2, args.connections, workdir / "warm.lua")
            raw, svg = workdir / "stacks.txt", workdir / "flame.svg"
            common = ["--pid", str(server.proc.pid), "--rate", "1000", "--nonblocking", "--duration"]
            spies = [
                subprocess.Popen(  # noqa: S603 - our own py-spy, our own server's pid
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
        stored = asyncio.run(count_conversions(database_url))
        cpu_us = cpu / max(load.requests, 1) * 1e6
        text = "\n".join(
            [
                f"machine:      {machine()}",
                f"load average: {load_before} before, {load_average()} after (1, 5, 15 min)",
                f"database:     {settings}",
                f"load:         wrk -t1 -c{args.connections} -d{seconds}s GET /postback, one txn id in ten repeated: "
                f"{load.rps:,.0f} req/s under the profiler (py-spy at 1,000 Hz, nonblocking)",
                f"conversions stored: {stored:,} (warm-up included)",
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
