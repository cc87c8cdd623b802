"""Which HTTP server serves the whole app faster: uvicorn or granian, measured in one run.

    .venv/bin/python bench/servers.py [--seconds 5] [--runs 3] [--connections 32] [--workers 1]

For each of --runs rounds, and each server in turn (the order alternates from round to round, so a
neighbour's burst of load does not always fall on the same one), with the same load generator (wrk,
closed loop, one thread, loopback only) at the maximum rate, it measures:

  raw ASGI 302      bench/raw302.py under the server, `affnet serve`'s options
  Litestar 302      bench/litestar302.py (GET /__bench/302), likewise
  /c/{code}         the click redirect of affnet (`affnet serve --server S`), click recording on
  GET /login        a page (Litestar, a Jinja template, the CSRF cookie)
  GET /postback     conversion intake: every request a new txn id on a click of its own (group commit)
  /ads/decide       the ad decision, and the view beacon of each ad answered (a wrk Lua script)

Every server trusts X-Forwarded-For from loopback (TRUSTED_PROXIES=127.0.0.1; the bare apps the
same way), as behind a proxy: the ads' load names another network per request; the clicks all come
from one visitor (after the first, duplicates, rate-limited: the redirect's cheapest flush). affnet
runs on SQLite (the embedded default; the ad decision on a database of its own), each start with a
fresh Redis; it is stopped gracefully after its phases, and at the end every click, view and
postback answered must be stored. Each phase has a 1-second warm-up first.

It prints the machine, the load average before and after, the database's durability as SQLite
reports it, every round's rate per server, the spread (min-max) of the rounds, granian ÷ uvicorn
within each round, the server's CPU per request (its processes, Linux /proc: steadier than rates
on a shared machine) and any answer that was not the expected status. Needs wrk (a Debian package;
installed if root). Bounded: phases of --seconds (2 to 30), at most 5 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ad_decision  # noqa: E402
import click_redirect  # noqa: E402
import postback_ingest  # noqa: E402
from common import (  # noqa: E402
    BROWSER_UA,
    SERVERS,
    Server,
    _ms,
    asgi_302,
    children_cpu_seconds,
    durability,
    ensure_tools,
    load_average,
    machine,
    start_server,
)

PHASES = ("raw", "litestar", "click", "login", "postback", "ads")
LABELS = {
    "raw": "raw ASGI 302",
    "litestar": "bare Litestar 302",
    "click": "/c/{code} + recording",
    "login": "GET /login (a page)",
    "postback": "GET /postback",
    "ads": "ad decision + view",
}
# The statuses each phase answers with; anything else is counted and printed.
PLAIN_LUA = """
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  if status ~= %(expected)d then counts.bad = (counts.bad or 0) + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("counts").bad or 0) end
  io.write(string.format("COUNTS bad=%%d\\n", bad))
end
"""


@dataclass
class Phase:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # CPU seconds the server's processes used during the phase
    bad: int  # answers other than the expected status
    counts: dict[str, int]

    @property
    def us_per_request(self) -> float:
        return self.server_cpu / max(self.requests, 1) * 1e6


def wrk(server: Server, url: str, seconds: int, connections: int, script: Path) -> Phase:
    before = server.cpu_seconds()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]  # noqa: S607
        + ["-H", f"User-Agent: {BROWSER_UA}", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    cpu = server.cpu_seconds() - before
    counts = {}
    if match := re.search(r"COUNTS (.*)", out):
        counts = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    errors = re.search(r"Socket errors: (.*)", out)
    bad = counts.pop("bad", 0) + counts.get("other", 0) + (1 if errors else 0)
    return Phase(
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        p99_ms=_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        server_cpu=cpu,
        bad=bad,
        counts=counts,
    )


class Run:
    """The state of one bench run: the work directory, the seeded databases, what was answered."""

    def __init__(self, workdir: Path, seconds: int, connections: int, workers: int) -> None:
        self.workdir, self.seconds, self.connections, self.workers = workdir, seconds, connections, workers
        self.phase_no = 0
        self.clicks_answered = 0
        self.postbacks_answered = 0  # distinct txn ids answered 200
        self.views_answered = 0
        self.exit_codes: list[int] = []

    def script(self, expected: int) -> Path:
        path = self.workdir / f"plain-{expected}.lua"
        path.write_text(PLAIN_LUA % {"expected": expected})
        return path

    def measure(self, server: Server, url: str, script: Path, warm_script: Path | None = None) -> Phase:
        wrk(server, url, 1, self.connections, warm_script or script)  # warm up
        return wrk(server, url, self.seconds, self.connections, script)

    def seed(self) -> None:
        app_dir, ads_dir = self.workdir / "app", self.workdir / "ads"
        app_dir.mkdir()
        ads_dir.mkdir()
        server = start_server(app_dir, workers=1)
        self.app_db = server.env["DATABASE_URL"]
        try:
            self.code, self.token = asyncio.run(postback_ingest.seed(self.app_db))
            self.first_click = postback_ingest.click_id_of(server.url, self.code)
            self.clicks_answered += 1
        finally:
            self.exit_codes.append(server.stop())
        server = start_server(ads_dir, workers=1)
        self.ads_db = server.env["DATABASE_URL"]
        try:
            self.slot = asyncio.run(ad_decision.seed(self.ads_db, str(ads_dir / "data" / "media")))
        finally:
            self.exit_codes.append(server.stop())

    def postback_script(self, seconds: int) -> Path:
        """A wrk script whose every request is a new txn id on a click of its own, none used before."""
        self.phase_no += 1
        clicks = postback_ingest.signed_click_ids(self.first_click, postback_ingest.CLICKS_PER_SECOND * seconds)[
            1:
        ]  # the real click's id took a conversion in an earlier phase
        ids = self.workdir / f"clicks-{self.phase_no}.txt"
        ids.write_text("\n".join(clicks) + "\n")
        lua = postback_ingest.LUA.replace("bench-", f"p{self.phase_no}-").replace("{CLICKS}", str(ids))
        # every request a new txn id (not one in ten repeated): each answer is one conversion
        lua = lua.replace("if counter % 10 == 0 then n = counter - 5 end", "")
        lua += (
            PLAIN_LUA.replace(
                "status ~= %(expected)d", 'status ~= 200 or not body:find(\'"status":"accepted"\', 1, true)'
            )
            % {}
        )  # a conversion recorded, not a 200 telling why not
        path = self.workdir / f"postback-{self.phase_no}.lua"
        path.write_text(lua)
        return path

    def affnet(self, name: str) -> dict[str, Phase]:
        phases = {}
        server = start_server(self.workdir / "app", self.app_db, self.workers, server=name)
        try:
            phases["click"] = self.measure(server, f"{server.url}/c/{self.code}?sub1=bench", self.script(302))
            self.clicks_answered += phases["click"].requests  # the measured part: the warm-up adds to what is stored
            phases["login"] = self.measure(server, f"{server.url}/login", self.script(200))
            url = f"{server.url}/postback?{urlencode({'token': self.token})}"
            warm = self.postback_script(1)
            phases["postback"] = self.measure(server, url, self.postback_script(self.seconds), warm)
            self.postbacks_answered += phases["postback"].requests
        finally:
            self.exit_codes.append(server.stop())
        server = start_server(self.workdir / "ads", self.ads_db, self.workers, server=name)
        try:
            lua = self.workdir / "ads.lua"
            lua.write_text(
                ad_decision.LUA % {"slot": self.slot, "ua": BROWSER_UA, "site": ad_decision.SITE, "delay": 0}
            )
            warm = wrk(server, server.url, 1, self.connections, lua)
            phases["ads"] = wrk(server, server.url, self.seconds, self.connections, lua)
            self.views_answered += warm.counts.get("views", 0) + phases["ads"].counts.get("views", 0)
        finally:
            self.exit_codes.append(server.stop())
        return phases

    def bare(self, name: str) -> dict[str, Phase]:
        phases = {}
        with asgi_302(self.workdir, "raw302:app", self.workers, proxy_headers=True, server=name) as bare:
            phases["raw"] = self.measure(bare, bare.url, self.script(302))
        with asgi_302(self.workdir, "litestar302:app", self.workers, proxy_headers=True, server=name) as bare:
            phases["litestar"] = self.measure(bare, f"{bare.url}/__bench/302", self.script(302))
        return phases


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    low, high = min(values), max(values)
    return fmt.format(low) if len(values) == 1 else f"{fmt.format(low)}–{fmt.format(high)}"


async def stored(app_db: str, ads_db: str) -> tuple[int, int, int]:
    clicks = sum((await click_redirect.count_clicks(app_db)).values())
    conversions = await postback_ingest.count_conversions(app_db)
    views, _ = await ad_decision.count_impressions(ads_db)
    return clicks, conversions, views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each load phase (2 to 30)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="server processes (affnet serve --workers N)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of every phase on each server (1 to 5)")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2), 30)
    runs = min(max(args.runs, 1), 5)
    workers = min(max(args.workers, 1), 8)
    ensure_tools("wrk")
    os.environ["TRUSTED_PROXIES"] = "127.0.0.1"  # as behind a proxy: X-Forwarded-For believed from loopback

    results: dict[tuple[str, str], list[Phase]] = {(s, p): [] for s in SERVERS for p in PHASES}
    with tempfile.TemporaryDirectory(prefix="affnet-bench-") as tmp:
        run = Run(Path(tmp), seconds, args.connections, workers)
        run.seed()
        settings = durability(run.app_db)
        load_before = load_average()
        for round_ in range(runs):
            order = SERVERS if round_ % 2 == 0 else tuple(reversed(SERVERS))
            for name in order:
                for phase, result in {**run.bare(name), **run.affnet(name)}.items():
                    results[name, phase].append(result)
                    print(
                        f"round {round_ + 1}, {name}, {LABELS[phase]}: {result.rps:,.0f} req/s "
                        f"(load average {load_average()})",
                        file=sys.stderr,
                        flush=True,
                    )
        load_after = load_average()
        clicks, conversions, views = asyncio.run(stored(run.app_db, run.ads_db))

    print(f"machine:      {machine()}")
    print(f"load average: {load_before} before, {load_after} after (1, 5, 15 min)")
    print(f"database:     {settings} (as the database reports it); the ad decision on a second file alike")
    print(
        f"settings:     `affnet serve --server S --workers {workers}` (the bare apps with the same options), "
        f"TRUSTED_PROXIES=127.0.0.1, wrk -t1 -c{args.connections} on the same cores, {seconds}s per phase "
        f"after a 1s warm-up, {runs} rounds alternating the servers' order, loopback only"
    )
    print()
    width = max(len(v) for v in LABELS.values())
    head = "  ".join(f"{s + ' req/s, every round':<26} {'spread':<15}" for s in SERVERS)
    print(f"{'phase':<{width}}  {head}  {SERVERS[1]} ÷ {SERVERS[0]}, each round   µs CPU/req {'/'.join(SERVERS)}")
    for phase in PHASES:
        cells = []
        for s in SERVERS:
            rates = [p.rps for p in results[s, phase]]
            cells.append(f"{', '.join(f'{r:,.0f}' for r in rates):<26} {spread(rates):<15}")
        ratios = [b.rps / a.rps for a, b in zip(results[SERVERS[0], phase], results[SERVERS[1], phase], strict=True)]
        cpu = "/".join(f"{statistics.median(p.us_per_request for p in results[s, phase]):.0f}" for s in SERVERS)
        ratio_cell = f"{', '.join(f'{r:.2f}' for r in ratios)} ({spread(ratios, '{:.2f}')})"
        print(f"{LABELS[phase]:<{width}}  {'  '.join(cells)}  {ratio_cell:<27}  {cpu}")
    print()
    print("latency at the maximum rate (p50 / p99 ms, median of the rounds):")
    for phase in PHASES:
        cells = []
        for s in SERVERS:
            ps = results[s, phase]
            p50 = statistics.median(p.p50_ms for p in ps)
            p99 = statistics.median(p.p99_ms for p in ps)
            cells.append(f"{s} {p50:.2f} / {p99:.2f}")
        print(f"  {LABELS[phase]:<{width}}  {'   '.join(cells)}")
    bad = {(s, p): sum(x.bad for x in results[s, p]) for s in SERVERS for p in PHASES}
    print()
    print(
        "answers not of the expected status (or socket errors): "
        + (", ".join(f"{s} {LABELS[p]} {n}" for (s, p), n in bad.items() if n) or "none")
    )
    # Each phase's warm-up and its measured part were answered; a request in flight when wrk stopped
    # may be stored without its answer read (one per connection at most).
    slack = args.connections * 2 * runs * len(SERVERS)
    print(
        f"stored after graceful shutdowns: clicks {clicks:,} (answered at least {run.clicks_answered:,}), "
        f"conversions {conversions:,} (answered at least {run.postbacks_answered:,}), "
        f"views {views:,} (answered 202 {run.views_answered:,}); server exit codes {sorted(set(run.exit_codes))}"
    )
    lost = clicks < run.clicks_answered or conversions < run.postbacks_answered or views < run.views_answered
    if lost or any(run.exit_codes) or any(bad.values()) or views > run.views_answered + slack:
        sys.exit("FAILED: an answer not stored, a wrong status, or a server that did not stop cleanly")


if __name__ == "__main__":
    main()
