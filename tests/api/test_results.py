"""The API's one result reader, on a real redis-server: each waiter gets its own job's result entry, a job
registered while the reader is blocked wakes it (one wake per blocked read), and a Redis error reaches the
waiters instead of ending the reader."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.results import Result

from rerank_api.results import ResultReader
from tests.support.waiting import wait_until_async

GENEROUS_S = 10  # a bound for a hang, not a timing claim


def test_waiters_get_their_own_results_and_a_blocked_reader_is_woken(own_redis) -> None:
    async def scenario() -> None:
        redis = AsyncRedis.from_url(own_redis.url)
        reader = ResultReader(redis)
        try:
            first = reader.expect("job-a")
            await wait_until_async(
                lambda: Result.get_key("job-a") in reader._watched, GENEROUS_S, "the reader blocks on job-a"
            )
            second = reader.expect("job-b")
            wake = reader.wake_commands()
            assert [c[0] for c in wake] == ["XADD", "EXPIRE"]
            assert reader.wake_commands() == []  # one wake per blocked read
            for command in wake:
                await redis.execute_command(*command)
            await wait_until_async(
                lambda: Result.get_key("job-b") in reader._watched, GENEROUS_S, "the woken reader watches job-b"
            )
            await redis.xadd(Result.get_key("job-b"), {"type": "1", "for": "b"})
            await redis.xadd(Result.get_key("job-a"), {"type": "1", "for": "a"})
            async with asyncio.timeout(GENEROUS_S):
                (_, a_fields), (_, b_fields) = await asyncio.gather(first, second)
            assert a_fields[b"for"] == b"a" and b_fields[b"for"] == b"b"
            assert await redis.ttl(reader.wake_key) > 0  # the doorbell of a dead process goes away
        finally:
            await reader.close()
            await redis.aclose()

    asyncio.run(scenario())


def test_a_redis_error_fails_the_waiters_and_the_reader_goes_on(own_redis) -> None:
    async def scenario() -> None:
        redis = AsyncRedis.from_url(own_redis.url)
        reader = ResultReader(redis)
        try:
            broken = AsyncRedis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
            reader._redis = broken
            lost = reader.expect("job-lost")
            async with asyncio.timeout(GENEROUS_S):
                try:
                    await lost
                except (RedisConnectionError, OSError):
                    pass
                else:
                    raise AssertionError("the waiter should hear of the Redis error")
            reader._redis = redis
            found = reader.expect("job-found")
            await redis.xadd(Result.get_key("job-found"), {"type": "1"})
            async with asyncio.timeout(GENEROUS_S):
                entry_id, _ = await found
            assert entry_id
            await broken.aclose()
        finally:
            await reader.close()
            await redis.aclose()

    asyncio.run(scenario())
