"""Loaded by `affnet serve` when bench/click_flush_cost.py puts this folder first on PYTHONPATH:
replaces what the click buffer's writer does with less, as AFFNET_BENCH_FLUSH says, to measure what
the flush costs the serving process. Never on a real server: the clicks of such a run are dropped.

- "classify": the batch's reasons are settled in Redis as usual, then the batch is dropped;
- "off": the batch is dropped as it is handed over (no Redis call, no database write).
"""

import os

MODE = os.environ.get("AFFNET_BENCH_FLUSH")

if MODE in ("classify", "off"):
    from server.tracking.service import Redirector

    async def store(self, rows: list[tuple]) -> None:
        if MODE == "classify":
            await self.counter.classify(rows)

    Redirector.store = store
