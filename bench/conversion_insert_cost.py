"""What PostgreSQL spends per stored conversion, and how much of it its foreign keys and its trigger take.

    flock -x /tmp/affnet-cpu.lock .venv/bin/python bench/conversion_insert_cost.py [--batches 1500] [--size 16]

A throwaway PostgreSQL cluster on loopback with production's durability (fsync, synchronous_commit,
full_page_writes on), migrated and seeded as bench/postback_ingest.py seeds it; then the conversion
group commit's own INSERT (server/conversions/group_commit.py: `_INSERT_PG`, autocommit, one log
flush per batch) on one connection, `--batches` batches of `--size` new conversions each, three
times: with the schema as it is, without the conversion table's four foreign keys, and without its
`changed_at` trigger too (both dropped in the throwaway cluster only). It prints the backend's CPU
per row (Linux /proc) and the wall time per row. What the postback bench's database CPU per
postback is made of, in part; bounded by --batches (at most 5,000)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import durability, load_average, machine  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def measure(url: str, batches: int, size: int) -> None:
    import asyncpg
    from postback_ingest import seed

    from server.conversions.group_commit import _INSERT_PG, NAMES

    os.environ["DATABASE_URL"] = url
    await seed(url)
    conn = await asyncpg.connect(url.replace("postgres+asyncpg", "postgresql"))
    try:
        ids = await conn.fetchrow(
            "SELECT c.id AS campaign, g.id AS goal, l.id AS link, l.publisher FROM campaign c "
            "JOIN goal g ON g.campaign = c.id JOIN link l ON l.campaign = c.id LIMIT 1"
        )
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        now = datetime.now(UTC)
        made = 0

        async def phase(label: str) -> None:
            nonlocal made
            cpu, start = _cpu_seconds(backend), time.perf_counter()
            for _ in range(batches):
                rows = []
                for _ in range(size):
                    made += 1
                    rows.append(
                        {
                            **ids,
                            "click_id": f"bench-click-{made}",
                            "click_ordinal": 1,
                            "txn_id": f"bench-txn-{made}",
                            "sale_amount_minor": None,
                            "currency": "EUR",
                            "advertiser_amount_minor": 1000,
                            "publisher_amount_minor": 800,
                            "network_amount_minor": 200,
                            "status": "pending",
                            "status_reason": "",
                            "source": "postback",
                            "clicked_at": now - timedelta(minutes=5),
                            "converted_at": now,
                            "hold_until": now + timedelta(days=30),
                            "created_at": now,
                            "held": False,
                        }
                    )
                await conn.fetch(_INSERT_PG, *[[row[name] for row in rows] for name in NAMES])
            total = batches * size
            used, wall = _cpu_seconds(backend) - cpu, time.perf_counter() - start
            print(f"{label:44s} backend CPU {used / total * 1e6:6.1f} µs/row, wall {wall / total * 1e6:6.1f} µs/row")

        await phase("warm-up (not counted)")
        await phase("the schema as it is")
        keys = [
            r["conname"]
            for r in await conn.fetch(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'conversion'::regclass AND contype = 'f'"
            )
        ]
        for name in keys:
            await conn.execute(f'ALTER TABLE conversion DROP CONSTRAINT "{name}"')
        await phase(f"without the {len(keys)} foreign keys")
        await conn.execute("DROP TRIGGER conversion_changed ON conversion")
        await phase("without the foreign keys and the trigger")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--size", type=int, default=16, help="conversions per batch (group commit's at 32 connections)")
    args = parser.parse_args()
    args.batches = max(1, min(args.batches, 5000))
    from dev.services import start_postgres

    with tempfile.TemporaryDirectory() as work:
        cluster = start_postgres(Path(work) / "pg", durable=True)
        try:
            env = {**os.environ, "DATABASE_URL": cluster.url}
            root = Path(__file__).resolve().parent.parent
            subprocess.run(
                [sys.executable, "-m", "server.cli", "migrate"], cwd=root, env=env, check=True, capture_output=True
            )
            print(f"machine:      {machine()}")
            print(f"load average: {load_average()} before")
            print(f"database:     {durability(cluster.url)}")
            print(f"batches:      {args.batches} of {args.size} conversions, one connection, autocommit")
            asyncio.run(measure(cluster.url, args.batches, args.size))
            print(f"load average: {load_average()} after")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
