"""Benchmark /c/{code} with the click-quality checks (issue 18) against without them, in one run.

    flock -x /tmp/affnet-cpu.lock .venv/bin/python bench/click_quality.py [--runs 3] [--seconds 10]
                                                                           [--connections 32]

Each round starts `affnet serve` (one worker, SQLite, its own Redis, as bench/click_redirect.py
does) twice on the same database: once with AFFNET_CLICK_QUALITY_CHECKS=on (the default: header
rules and the data-centre look-up) and once with it off, in alternating order from round to round,
and measures each one's maximum rate with wrk (closed loop, one thread, 2 s of warm-up, then
--seconds). Every request is what a real Chrome sends on a navigation (the full header set, 15
headers), over "HTTPS" (X-Forwarded-Proto from loopback, a trusted proxy, so the header rules
judge it) from another /24 each time (X-Forwarded-For, none in the data-centre snapshot, 5 million
networks before one repeats): every click is a new valid visitor, the same work for
the flush with and without the checks, and the look-up runs for every click. It prints each
round's rates and the server's CPU per request (less moved by neighbours than the rate), the ratio
on/off within each round and their median (the rate moves a few per cent from one server start to
the next, more than the checks cost: five rounds by default, nine at most), and the stored clicks
by reason (all valid: no real browser flagged). Unless --no-pin, the server runs on a core of its own
(its threads pinned to the second core, wrk and Redis to the first): left to the scheduler, where the
server landed moved a start's rate by up to 25 % (rounds 0.75-1.11), far more than the checks cost;
pinned, a start still lands slow now and then, which the median of five rounds absorbs. Loopback
only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click_redirect import count_clicks, residential_prefixes, seed  # noqa: E402
from common import ROOT, ensure_tools, load_average, machine, start_server, wrk  # noqa: E402

sys.path.insert(0, str(ROOT))

# Every request from another /24 of the /16s with no data-centre range (click_redirect.residential_prefixes,
# put in place of PREFIXES), so every click is a new visitor: 5 million networks before one repeats.
CHROME_LUA = """
local prefixes = {PREFIXES}
local n = (os.time() % 100) * 65536
local headers = {
  ["Host"] = "affnet.example",
  ["sec-ch-ua"] = '"Chromium";v="142", "Google Chrome";v="142", "Not_A Brand";v="99"',
  ["sec-ch-ua-mobile"] = "?0",
  ["sec-ch-ua-platform"] = '"Windows"',
  ["Upgrade-Insecure-Requests"] = "1",
  ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    .. "Chrome/142.0.0.0 Safari/537.36",
  ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
    .. "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
  ["Sec-Fetch-Site"] = "cross-site",
  ["Sec-Fetch-Mode"] = "navigate",
  ["Sec-Fetch-User"] = "?1",
  ["Sec-Fetch-Dest"] = "document",
  ["Referer"] = "https://blog.example.fr/",
  ["Accept-Encoding"] = "gzip, deflate, br, zstd",
  ["Accept-Language"] = "fr-FR,fr;q=0.9",
  ["Priority"] = "u=0, i",
  ["X-Forwarded-Proto"] = "https",
}
request = function()
  n = n + 1
  local prefix = prefixes[1 + math.floor(n / 256) % #prefixes]
  headers["X-Forwarded-For"] = string.format("%d.%d.%d.1", math.floor(prefix / 256), prefix % 256, n % 256)
  return wrk.format(nil, nil, headers)
end
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load phase (2 to 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5, help="rounds (1 to 9)")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place the server (default: pinned)")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2), 60)
    runs = min(max(args.runs, 1), 9)
    ensure_tools("wrk")
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if pin:  # wrk and Redis (started from here) on the first core; each server on the second
        first, second = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, {first})
    os.environ["TRUSTED_PROXIES"] = "127.0.0.1"  # X-Forwarded-For and -Proto believed from loopback only
    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}  # the server's CPU µs per request
    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "chrome.lua"
        script.write_text(CHROME_LUA.replace("PREFIXES", ",".join(map(str, residential_prefixes()))))
        server = start_server(workdir)
        database_url = server.env["DATABASE_URL"]
        try:
            code = asyncio.run(seed(database_url))
        finally:
            server.stop()
        load_before = load_average()
        for round_ in range(runs):
            for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                os.environ["AFFNET_CLICK_QUALITY_CHECKS"] = mode
                server = start_server(workdir, database_url)
                if pin:
                    for tid in os.listdir(f"/proc/{server.proc.pid}/task"):
                        os.sched_setaffinity(int(tid), {second})
                target = f"{server.url}/c/{code}?sub1=bench"
                try:
                    wrk(target, 2, args.connections, script)  # warm up
                    before = server.cpu_seconds()
                    load = wrk(target, seconds, args.connections, script)
                    cpu[mode].append((server.cpu_seconds() - before) / max(load.requests, 1) * 1e6)
                finally:
                    code_ = server.stop()
                if code_:
                    sys.exit(f"FAILED: the server exited with {code_}")
                rates[mode].append(load.rps)
                print(f"round {round_ + 1}, checks {mode}: {load.rps:,.0f} req/s", file=sys.stderr, flush=True)
        by_reason = asyncio.run(count_clicks(database_url))
    os.environ.pop("AFFNET_CLICK_QUALITY_CHECKS", None)
    print(f"machine:      {machine()}")
    print(f"load average: before {load_before}, after {load_average()}")
    print(f"phases:       {seconds} s at max rate, {args.connections} connections, 1 worker, SQLite")
    print(f"placement:    {'server pinned to one core, wrk and Redis to the other' if pin else 'the scheduler'}")
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    by_cpu = [off / on for on, off in zip(cpu["on"], cpu["off"], strict=True)]
    for i, (on, off, ratio) in enumerate(zip(rates["on"], rates["off"], ratios, strict=True)):
        print(
            f"round {i + 1}: checks on {on:>8,.0f} req/s ({cpu['on'][i]:.1f} µs), "
            f"off {off:>8,.0f} req/s ({cpu['off'][i]:.1f} µs), on/off {ratio:.3f}, by server CPU {by_cpu[i]:.3f}"
        )
    print(
        f"median on/off: {statistics.median(ratios):.3f} (target >= 0.95); rounds {min(ratios):.3f}-{max(ratios):.3f}"
    )
    print(f"median on/off by the server's CPU per request (off ÷ on): {statistics.median(by_cpu):.3f}")
    print("stored clicks by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(by_reason.items())))


if __name__ == "__main__":
    main()
