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

from click_redirect import count_clicks, distinct_lua, seed  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    Load,
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


def arguments(doc: str) -> tuple[argparse.Namespace, int, Path]:
    """The profiling benches' options (bench/click_profile.py, ad_profile.py, postback_profile.py),
    the phase's length within bounds, and py-spy's path."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--out", default=None, help="write OUT.txt and OUT.svg")
    args = parser.parse_args()
    ensure_tools("wrk")
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        sys.exit("py-spy is missing: make install (it is a dev dependency)")
    return args, min(max(args.seconds, 2), 60), py_spy


def sampled(
    py_spy: Path,
    pid: int,
    workdir: Path,
    target: str,
    seconds: int,
    connections: int,
    script: Path | None,
    *,
    threads: bool = False,
) -> tuple[Load, float, Path, Path]:
    """Load `target` with wrk for `seconds` while py-spy samples the server (1,000 Hz, nonblocking)
    into raw stacks and a flame graph: the load, the server's CPU µs per request (from /proc,
    profiler excluded) and the two files."""
    raw, svg = workdir / "stacks.txt", workdir / "flame.svg"
    common = ["--pid", str(pid), "--rate", "1000", "--nonblocking", *(["--threads"] if threads else []), "--duration"]
    spies = [
        subprocess.Popen(  # noqa: S603 - our own py-spy, our own server's pid
            [str(py_spy), "record", *common, str(seconds + 1), "--format", fmt, "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fmt, out in (("raw", raw), ("flamegraph", svg))
    ]
    time.sleep(0.5)
    cpu_before = tree_cpu_seconds(pid)
    load = wrk(target, seconds, connections, script)
    cpu = tree_cpu_seconds(pid) - cpu_before
    for spy in spies:
        spy.wait(timeout=seconds + 30)
    return load, cpu / max(load.requests, 1) * 1e6, raw, svg


def publish(text: str, svg: Path, out: str | None) -> None:
    """Print the report; with --out also write OUT.txt (the report) and OUT.svg (the flame graph)."""
    print(text)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".txt").write_text(text + "\n")
        path.with_suffix(".svg").write_bytes(svg.read_bytes())
        print(f"\nwrote {path.with_suffix('.txt')} and {path.with_suffix('.svg')}")


def main() -> None:
    args, seconds, py_spy = arguments(__doc__)
    os.environ["TRUSTED_PROXIES"] = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="affnet-profile-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        script = workdir / "distinct.lua"
        script.write_text(distinct_lua())
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
            load, cpu_us, raw, svg = sampled(
                py_spy, server.proc.pid, workdir, target, seconds, args.connections, script
            )
        finally:
            server.stop()
        by_reason = asyncio.run(count_clicks(database_url))
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
        publish(text, svg, args.out)


if __name__ == "__main__":
    main()
