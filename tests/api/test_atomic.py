"""``rerank_api.atomic``: the runs started in one loop iteration go to Redis as one script, each with its own
outcome."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from rerank_api.app import _async_redis
from rerank_api.atomic import Atomic
from tests.support.redis_server import RedisServer


async def _evalsha_calls(client) -> int:
    stats = await client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def test_runs_of_one_iteration_share_a_script_and_keep_their_own_errors(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = _async_redis(redis_server.url)
        atomic = Atomic(client)
        key = f"batch-{uuid.uuid4().hex}"
        await atomic.run([("SET", f"{key}:warm", "1")])  # the script is loaded
        before = await _evalsha_calls(client)
        outcomes = await asyncio.gather(
            atomic.run([("SET", f"{key}:a", "1"), ("RPUSH", f"{key}:list", "a")]),
            atomic.run([("SET", f"{key}:b", "x"), ("INCR", f"{key}:b"), ("SET", f"{key}:b-after", "1")]),
            atomic.run([("SET", f"{key}:c", "1"), ("RPUSH", f"{key}:list", "c")]),
            return_exceptions=True,
        )
        assert await _evalsha_calls(client) == before + 1
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], ResponseError) and "not an integer" in str(outcomes[1])
        # As MULTI/EXEC (the project's one rule, rerank_contract.scripts): the failing run's other commands ran; the
        # other runs are whole.
        assert await client.mget(f"{key}:a", f"{key}:b", f"{key}:b-after", f"{key}:c") == [b"1", b"x", b"1", b"1"]
        assert await client.lrange(f"{key}:list", 0, -1) == [b"a", b"c"]
        await atomic.close()
        await client.aclose()

    asyncio.run(scenario())


def test_a_run_cancelled_before_the_flush_is_not_sent(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = _async_redis(redis_server.url)
        atomic = Atomic(client)
        key = f"cancel-{uuid.uuid4().hex}"
        left = asyncio.ensure_future(atomic.run([("SET", f"{key}:left", "1")]))
        kept = asyncio.ensure_future(atomic.run([("SET", f"{key}:kept", "1")]))
        # Both tasks start (in order) in the next iteration and the flush runs in the one after: this cancel, queued
        # behind them, comes before it.
        asyncio.get_running_loop().call_soon(left.cancel)
        await kept
        with pytest.raises(asyncio.CancelledError):
            await left
        assert await client.mget(f"{key}:left", f"{key}:kept") == [None, b"1"]
        await atomic.close()
        await client.aclose()

    asyncio.run(scenario())


def test_a_failed_send_fails_every_run_in_it() -> None:
    async def scenario() -> list[object]:
        atomic = Atomic(_async_redis("redis://127.0.0.1:1/0"))  # nothing listens there
        return await asyncio.gather(atomic.run([("PING",)]), atomic.run([("PING",)]), return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert [type(outcome) for outcome in outcomes] == [RedisConnectionError, RedisConnectionError]
