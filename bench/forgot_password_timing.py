"""Does "forgot password" tell a known address from an unknown one by its answer or its time?

    .venv/bin/python bench/forgot_password_timing.py [--requests 200] [--runs 3] [--postgres | --database-url URL]

Starts affnet (`affnet serve`) on 127.0.0.1 with a fresh database (SQLite, or a throwaway PostgreSQL
with production durability with --postgres) and one account, then sends POST /forgot-password, one
request at a time over one keep-alive connection, for the known address and for unknown ones in a
shuffled order, timing each from the client. It prints, per run, each kind's median and 90th
percentile and the difference of the medians, and checks every answer is the same page (status and
text, apart from the CSRF token). The lookup and the mail are done after the answer has gone
(a background task), so the two should not differ beyond noise. Loopback only, bounded in requests.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from common import ROOT, bench_database, durability, load_average, machine, start_server  # noqa: E402

KNOWN = "known@bench.example"
TOKEN = re.compile(r'name="_csrf_token" value="[^"]*"')


def _page(text: str) -> str:
    return TOKEN.sub('name="_csrf_token" value=""', text)


def one_run(url: str, requests: int) -> tuple[dict[str, list[float]], set[tuple[int, str]]]:
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    pages: set[tuple[int, str]] = set()
    order = ["known"] * requests + ["unknown"] * requests
    random.shuffle(order)
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/forgot-password")
        token = client.cookies["affnet_csrf"]
        for n, kind in enumerate(order):
            email = KNOWN if kind == "known" else f"nobody{n}@bench.example"
            started = time.perf_counter()
            answer = client.post("/forgot-password", data={"email": email, "_csrf_token": token})
            times[kind].append((time.perf_counter() - started) * 1000)
            pages.add((answer.status_code, _page(answer.text)))
    return times, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per kind of address and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="affnet-forgot-") as tmp, bench_database(Path(tmp), args) as db_url:
        workdir = Path(tmp)
        server = start_server(workdir, db_url)
        try:
            subprocess.run(
                [sys.executable, "-m", "server.cli", "users", "create", "--role", "finance", "--email", KNOWN],
                input="a long enough bench password\n",
                text=True,
                cwd=ROOT,
                env=server.env,
                check=True,
                capture_output=True,
            )
            print(f"machine:  {machine()}")
            print(f"database: {durability(server.env['DATABASE_URL'])}")
            print(f"load average before: {load_average()}")
            for run in range(1, args.runs + 1):
                times, pages = one_run(server.url, args.requests)
                known, unknown = times["known"], times["unknown"]
                k50, u50 = statistics.median(known), statistics.median(unknown)
                k90 = statistics.quantiles(known, n=10)[-1]
                u90 = statistics.quantiles(unknown, n=10)[-1]
                same = "one page for every address" if len(pages) == 1 else f"{len(pages)} DIFFERENT pages"
                print(
                    f"run {run}: known p50 {k50:.2f} ms p90 {k90:.2f} ms | unknown p50 {u50:.2f} ms p90 {u90:.2f} ms"
                    f" | medians differ by {k50 - u50:+.2f} ms | {same} ({args.requests} requests each)"
                )
            print(f"load average after: {load_average()}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
