"""Join jobs (workers/spread.py): one landing in a process already on the work hands itself on to another
process; one landing in a fresh process invites the next and joins; the chain ends when nothing is left,
or after MAX_HOPS hand-ons (a single worker: nobody else comes)."""

from __future__ import annotations

from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis

from dev.services import Service
from workers import spread

WORK = "test-work"


@pytest.fixture
async def pool(redis_service: Service) -> Any:
    await Redis.from_url(redis_service.url).flushdb()
    arq = await create_pool(RedisSettings.from_dsn(redis_service.url))
    yield arq
    await arq.flushdb()
    await arq.aclose()


async def _queued(pool) -> list[tuple[str, tuple]]:
    return sorted((j.function, j.args) for j in await pool.queued_jobs())


async def _join(pool, link: int, hop: int, *, left: bool = True, done: list | None = None) -> Any:
    async def remaining() -> bool:
        return left

    async def work() -> str:
        assert spread.here(WORK)  # a join landing here meanwhile would hand itself on
        (done if done is not None else []).append(link)
        return "did my share"

    return await spread.join({"redis": pool}, "join_test", WORK, ("arg",), link, hop, left=remaining, do=work)


async def test_a_join_in_a_fresh_process_invites_the_next_and_does_its_share(pool):
    done: list[int] = []
    assert await _join(pool, 1, 3, done=done) == "did my share"
    assert done == [1] and not spread.here(WORK)
    assert await _queued(pool) == [("join_test", ("arg", 2, 0))]


async def test_a_join_where_the_work_is_already_done_here_hands_itself_on(pool):
    with spread.doing(WORK):
        assert await _join(pool, 2, 5) == spread.HANDED_ON
    assert await _queued(pool) == [("join_test", ("arg", 2, 6))]


async def test_the_chain_ends_when_nothing_is_left_or_after_max_hops(pool):
    assert await _join(pool, 1, 0, left=False) == spread.NOTHING_LEFT
    with spread.doing(WORK):
        assert await _join(pool, 2, spread.MAX_HOPS) == spread.HANDED_ON
    assert await _queued(pool) == []
