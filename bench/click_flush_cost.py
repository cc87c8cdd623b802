"""What the click buffer's flush costs the process that serves /c/{code}, by rate and by thread.

    .venv/bin/python bench/click_flush_cost.py [--runs 3] [--seconds 10] [--postgres | --database-url URL]
        [--phases raw,process]

One `affnet serve` process (uvicorn, as production runs it), every click from another reader (the
--distinct-visitors load of bench/click_redirect.py, so every click is counted in Redis at the
flush), in interleaved rounds of five phases: (r) the raw ASGI 302 on the same server, the ceiling;
(b) /c/ whose clicks the server process stores itself (AFFNET_CLICK_WRITER=inline); (w) /c/ whose flush settles the reasons in Redis but drops the batch
instead of writing it to the database; (f) /c/ whose flush drops the batch at once (no Redis call, no
database write); (p) /c/ as `affnet serve` runs it since 2026-12-07, with a click writer process
(AFFNET_CLICK_WRITER=process: the serving process journals each click and a process of its own
stores them; its CPU is the last column).
(w) and (f) are bench-only builds (bench/flushcost/sitecustomize.py patches the
writer in the server process): their clicks are not stored, so they say what a flush done
elsewhere (another process) would give the serving process at best, not a way to run affnet.

For each phase: the rate, the ratio to (r) in the same round, and the server's CPU per request
split between its event loop's thread (the one that answers; the rate is bound by it) and its
other threads (on SQLite, aiosqlite's: the database's own work), user and system time (Linux /proc).
Loopback only, bounded in time (phases of --seconds, at most 60)."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click_redirect import distinct_lua, seed  # noqa: E402
from common import asgi_302, bench_database, durability, ensure_tools, load_average, machine, start_server, wrk  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PHASES = {
    "raw": "(r) raw ASGI 302",
    "click": "(b) /c/, flush inline",
    "classify": "(w) /c/, flush: Redis only",
    "off": "(f) /c/, no flush work",
    "process": "(p) /c/, writer process",
}


def thread_times(pid: int) -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of each thread of `pid`."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        times[int(tid)] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    return times


def process_times(pid: int) -> tuple[float, float]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


@dataclass
class Phase:
    rps: float
    loop_user: float  # µs per request, the event loop's thread
    loop_system: float
    others: float  # µs per request, every other thread (ended ones included), user + system
    children: float = 0.0  # µs per request, the server's child processes (the click writer process)


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def children_times(pid: int) -> float:
    total = 0.0
    for child in children_of(pid):
        try:
            total += sum(process_times(child))
        except OSError:
            continue
    return total


def measured(pid: int, url: str, seconds: int, script: Path) -> Phase:
    wrk(url, 2, 32, script)  # warm up
    before, threads_before, children_before = process_times(pid), thread_times(pid), children_times(pid)
    load = wrk(url, seconds, 32, script)
    after, threads_after, children_after = process_times(pid), thread_times(pid), children_times(pid)
    n = max(load.requests, 1)
    loop = pid  # the main thread's id is the process's: uvicorn runs its loop there with one worker
    loop_user = threads_after[loop][0] - threads_before[loop][0]
    loop_system = threads_after[loop][1] - threads_before[loop][1]
    total = sum(after) - sum(before)
    others = max(0.0, total - loop_user - loop_system)  # the two clocks tick apart: never below zero
    children = max(0.0, children_after - children_before)
    return Phase(load.rps, loop_user / n * 1e6, loop_system / n * 1e6, others / n * 1e6, children / n * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster on loopback")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument(
        "--phases", default="raw,click,classify,off,process", help="which phases, of raw,click,classify,off,process"
    )
    args = parser.parse_args()
    chosen = {*args.phases.split(","), "raw"}  # the ceiling always
    for name in [n for n in PHASES if n not in chosen]:
        del PHASES[name]
    seconds, runs = min(max(args.seconds, 2), 60), min(max(args.runs, 1), 5)
    ensure_tools("wrk")
    os.environ["TRUSTED_PROXIES"] = "127.0.0.1"  # X-Forwarded-For believed from loopback only
    results: dict[str, list[Phase]] = {name: [] for name in PHASES}
    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp, bench_database(Path(tmp), args) as url:
        workdir = Path(tmp)
        script = workdir / "distinct.lua"
        script.write_text(distinct_lua())
        server = start_server(workdir, url)
        database_url = server.env["DATABASE_URL"]
        try:
            code = asyncio.run(seed(database_url))
        finally:
            server.stop()
        settings, load_before = durability(database_url), load_average()
        for round_ in range(runs):
            for name in PHASES:
                if name == "raw":
                    with asgi_302(workdir, "raw302:app", 1, proxy_headers=True) as bare:
                        phase = measured(bare.proc.pid, bare.url, seconds, script)
                else:
                    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent / "flushcost")
                    os.environ["AFFNET_BENCH_FLUSH"] = name
                    os.environ["AFFNET_CLICK_WRITER"] = "process" if name == "process" else "inline"
                    try:
                        server = start_server(workdir, database_url)
                    finally:
                        del (
                            os.environ["PYTHONPATH"],
                            os.environ["AFFNET_BENCH_FLUSH"],
                            os.environ["AFFNET_CLICK_WRITER"],
                        )
                    try:
                        phase = measured(server.proc.pid, f"{server.url}/c/{code}?sub1=bench", seconds, script)
                    finally:
                        server.stop()
                results[name].append(phase)
                print(f"round {round_ + 1}, {PHASES[name]}: {phase.rps:,.0f} req/s", file=sys.stderr, flush=True)
    print(f"machine:      {machine()}")
    print(f"load average: {load_before} before, {load_average()} after (1, 5, 15 min)")
    print(f"database:     {settings}")
    print(f"load:         wrk -t1 -c32, {seconds}s per phase, {runs} rounds, every click another reader, loopback")
    print()
    print(
        f"{'phase':<34} {'req/s (spread)':<22} {'÷ (r), same round':<20} "
        "loop thread µs/req (user+sys)  other threads  writer process"
    )
    for name, label in PHASES.items():
        phases = results[name]
        ratios = [p.rps / r.rps for p, r in zip(phases, results["raw"], strict=True)]
        rates = f"{min(p.rps for p in phases):,.0f}-{max(p.rps for p in phases):,.0f}"
        user = statistics.median(p.loop_user for p in phases)
        system = statistics.median(p.loop_system for p in phases)
        others = statistics.median(p.others for p in phases)
        children = statistics.median(p.children for p in phases)
        print(
            f"{label:<34} {rates:<22} {min(ratios):.2f}-{max(ratios):.2f}{'':<11} "
            f"{user + system:5.1f} ({user:.1f} + {system:.1f}){'':<12} {others:5.1f}{'':<9} {children:5.1f}"
        )


if __name__ == "__main__":
    main()
