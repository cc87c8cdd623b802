"""Where a click's CPU goes: a sampling profile (py-spy) of `affnet serve` while wrk loads /c/{code}.

    .venv/bin/python bench/click_profile.py [--seconds 10] [--postgres] [--out bench/profiles/click-NAME]

One server process, every request from another client network (X-Forwarded-For, as
bench/click_redirect.py --distinct-visitors), recording on. py-spy samples the server 1,000 times
a second (--nonblocking: it never stops the process) for --seconds; the script prints the server's
CPU per request (from /proc, profiler excluded), then the functions by own time and by inclusive
time, as a share of the samples and as microseconds per request. With --out it also writes
OUT.txt (that report) and OUT.svg (a flame graph to open in a browser).

Loopback only, bounded: --seconds (2 to 60) of load after a 2-second warm-up."""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click_redirect import DISTINCT_LUA, count_clicks, seed  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    bench_database,
    durability,
    ensure_tools,
    load_average,
    machine,
    start_server,
    tree_cpu_seconds,
    wrk,
)

IDLE = ("epoll_wait", "select (selectors", "_run_once (asyncio", "run_forever", "run_until_complete")


def collapse(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) stacks: each line `frame;frame;... count`."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    """`function (path/to/file.py:line)` without the line and the site-packages prefix."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", f"{ROOT}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def report(stacks: list[tuple[list[str], int]], requests: int, cpu_us: float, top: int) -> str:
    busy = [(s, n) for s, n in stacks if not any(i in s[-1] for i in IDLE)]
    total = sum(n for _, n in busy) or 1
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for stack, n in busy:
        own[short(stack[-1])] += n
        for frame in {short(f) for f in stack}:
            inclusive[frame] += n
    lines = [f"busy samples: {total:,} (idle loop excluded); CPU per request: {cpu_us:.1f} µs"]
    for title, counter in (("own time", own), ("inclusive time", inclusive)):
        lines.append(f"\nby {title}: share of busy samples, µs per request")
        for frame, n in counter.most_common(top):
            lines.append(f"{n / total * 100:6.1f} %  {n / total * cpu_us:6.1f} µs  {frame}")
    return "\n".join(lines)


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
        script = workdir / "distinct.lua"
        script.write_text(DISTINCT_LUA)
        server = start_server(workdir, url)
        database_url = server.env["DATABASE_URL"]
        try:
            code = asyncio.run(seed(database_url))
        finally:
            server.stop()  # a seeding failure leaves no server behind
        settings = durability(database_url)
        server = start_server(workdir, database_url)
        target = f"{server.url}/c/{code}?sub1=bench"
        load_before = load_average()
        try:
            wrk(target, 2, args.connections, script)  # warm up
            raw, svg = workdir / "stacks.txt", workdir / "flame.svg"
            common = ["--pid", str(server.proc.pid), "--rate", "1000", "--nonblocking", "--duration"]
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
        by_reason = asyncio.run(count_clicks(database_url))
        cpu_us = cpu / max(load.requests, 1) * 1e6
        text = "\n".join(
            [
                f"machine:      {machine()}",
                f"load average: {load_before} before, {load_average()} after (1, 5, 15 min)",
                f"database:     {'SQLite' if database_url.startswith('sqlite') else 'PostgreSQL'}, {settings}",
                f"load:         wrk -t1 -c{args.connections} -d{seconds}s, every request another /24: "
                f"{load.rps:,.0f} req/s under the profiler (py-spy at 1,000 Hz, nonblocking)",
                f"clicks stored: {sum(by_reason.values()):,} ({', '.join(f'{k} {v:,}' for k, v in by_reason.items())})",
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
