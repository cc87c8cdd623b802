"""Where a postback's CPU goes: a sampling profile (py-spy) of `affnet serve` while wrk loads GET /postback.

    .venv/bin/python bench/postback_profile.py [--seconds 10] [--postgres] [--out bench/profiles/postback-NAME]

The load of bench/postback_ingest.py (a new txn id on a click of its own per request, every tenth
repeating an earlier one; a campaign without caps), one server process. py-spy samples the server
1,000 times a second (--nonblocking) for --seconds; the script prints the server's CPU per postback
(from /proc, profiler excluded), then the functions by own and inclusive time, as in
bench/click_profile.py. With --out it also writes OUT.txt (that report) and OUT.svg (a flame graph).

Loopback only, bounded: --seconds (2 to 60) of load after a 2-second warm-up."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from click_profile import arguments, collapse, publish, report, sampled  # noqa: E402
from common import (  # noqa: E402
    bench_database,
    durability,
    load_average,
    machine,
    start_server,
    wrk,
)
from postback_ingest import CLICKS_PER_SECOND, LUA, click_id_of, count_conversions, seed, signed_click_ids  # noqa: E402


def main() -> None:
    args, seconds, py_spy = arguments(__doc__)
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
            load, cpu_us, raw, svg = sampled(
                py_spy, server.proc.pid, workdir, target, seconds, args.connections, script
            )
        finally:
            server.stop()
        stored = asyncio.run(count_conversions(database_url))
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
        publish(text, svg, args.out)


if __name__ == "__main__":
    main()
