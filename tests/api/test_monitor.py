"""The API's worker monitor against records it cannot read: each is skipped (logged once), never fatal."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from fakeredis import FakeAsyncRedis

from rerank_api.monitor import Snapshot, WorkerMonitor
from rerank_contract.jobs import WORKERS_SET, worker_key
from tests.support.waiting import wait_until_async
from tests.support.worker_records import record

INTERVAL_S = 0.02


async def fill(redis: FakeAsyncRedis) -> None:
    """Two readable workers (one from a newer version, with a field this API does not know) and every kind of
    record it cannot read, all listed in the worker set."""
    records: dict[str, bytes] = {
        "good": json.dumps(record("good")).encode(),
        "newer": json.dumps(record("newer", gpu_temperature_c=61, reaper={"v": 2})).encode(),
        "garbage": b"{not json at all",
        "older": json.dumps({k: v for k, v in record("older").items() if k not in ("dtype", "model_loads")}).encode(),
        "binary": b"\xff\xfe\x00\x80",
        "array": b"[1, 2, 3]",
        "null": b"null",
        "wrong-types": json.dumps(record("wrong-types", pid="one", queues="rerank")).encode(),
    }
    for name, value in records.items():
        await redis.set(worker_key(name), value, ex=60)
    await redis.hset(worker_key("a-hash"), mapping={"name": "a-hash"})  # not a string: MGET reads nil
    await redis.sadd(WORKERS_SET, *records, "a-hash", "expired")
    await redis.sadd(WORKERS_SET, b"\xff-not-utf8")
    await redis.set(b"rerank:worker:\xff-not-utf8", json.dumps(record("latin")).encode(), ex=60)


UNREADABLE = ["array", "binary", "garbage", "null", "older", "wrong-types"]


def test_unreadable_records_are_skipped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list:
        redis = FakeAsyncRedis()
        await fill(redis)
        monitor = WorkerMonitor(redis, interval_s=INTERVAL_S)
        snapshots = [await monitor.refresh() for _ in range(5)]
        members = await redis.smembers(WORKERS_SET)
        return [snapshots, members]

    caplog.set_level(logging.WARNING, logger="rerank_api.monitor")
    snapshots, members = asyncio.run(scenario())
    for snapshot in snapshots:
        assert snapshot.redis_error is None
        assert sorted(snapshot.alive) == ["good", "latin", "newer"]
        assert sorted(snapshot.unreadable) == UNREADABLE
        assert snapshot.queue_depth == {"rerank": 0, "rerank-bulk": 0}
    # Names whose record is gone (expired, or not a string) leave the set; unreadable ones stay (not ours to judge).
    assert b"expired" not in members and b"a-hash" not in members
    assert {name.encode() for name in UNREADABLE} <= members
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(UNREADABLE), warnings  # once per record, not once per refresh
    for name in UNREADABLE:
        assert sum(f"rerank:worker:{name}:" in w for w in warnings) == 1, (name, warnings)
    assert "dtype: Field required" in next(w for w in warnings if "worker:older:" in w)


def test_a_record_that_turns_bad_again_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[int]:
        redis = FakeAsyncRedis()
        await redis.sadd(WORKERS_SET, "w")
        monitor = WorkerMonitor(redis, interval_s=INTERVAL_S)
        alive = []
        for value in (b"garbage", b"garbage", json.dumps(record("w")).encode(), b"garbage"):
            await redis.set(worker_key("w"), value, ex=60)
            alive.append(len((await monitor.refresh()).workers))
        return alive

    caplog.set_level(logging.WARNING, logger="rerank_api.monitor")
    assert asyncio.run(scenario()) == [0, 0, 1, 0]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_the_loop_outlives_unexpected_errors_and_says_when_it_last_refreshed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refresh that raises something unexpected is logged (once), the loop goes on with its last view and
    ``refreshed_at`` stops moving until a refresh succeeds again."""

    class Flaky(FakeAsyncRedis):
        failing = False
        failures = 0

        async def smembers(self, name):  # type: ignore[override]
            if self.failing:
                self.failures += 1
                raise RuntimeError("something nobody expected")
            return await super().smembers(name)

    async def scenario() -> None:
        redis = Flaky()
        await fill(redis)
        monitor = WorkerMonitor(redis, interval_s=INTERVAL_S)
        assert monitor.age_s() is None
        await monitor.start()
        try:
            assert monitor.age_s() is not None and monitor.age_s() < 1
            assert sorted(monitor.snapshot.alive) == ["good", "latin", "newer"]
            redis.failing = True
            await wait_until_async(lambda: redis.failures >= 1, 10, "a refresh to fail")
            frozen_at, frozen_since = monitor.refreshed_at, time.monotonic()
            await wait_until_async(lambda: redis.failures >= 5, 10, "four more refreshes to fail")
            assert monitor.refreshed_at == frozen_at  # no refresh succeeded meanwhile
            elapsed = time.monotonic() - frozen_since
            assert monitor.age_s() >= elapsed  # the age of the last success, not of the last attempt
            assert sorted(monitor.snapshot.alive) == ["good", "latin", "newer"]  # the last view is kept
            assert not monitor._task.done()
            redis.failing = False
            await wait_until_async(lambda: monitor.refreshed_at != frozen_at, 10, "a refresh to succeed again")
            assert monitor.age_s() < 1
            await redis.set(worker_key("good"), b"now garbage", ex=60)
            alive = lambda: sorted(monitor.snapshot.alive) == ["latin", "newer"]  # noqa: E731
            await wait_until_async(alive, 10, "the next refresh to skip the garbage record")
            assert not monitor._task.done()
        finally:
            await monitor.stop()

    caplog.set_level(logging.INFO, logger="rerank_api.monitor")
    asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "something nobody expected" in (errors[0].exc_text or "")
    assert any(r.getMessage() == "worker monitor refreshes again" for r in caplog.records)


def test_redis_down_is_a_view_not_an_error() -> None:
    """An unreachable Redis is what the monitor reports (and a refresh that found it): the loop is current."""

    async def scenario() -> None:
        from redis.asyncio import Redis

        redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        monitor = WorkerMonitor(redis, interval_s=INTERVAL_S)
        await monitor.start()
        try:
            await wait_until_async(lambda: monitor.snapshot.redis_error is not None, 10, "a refresh to find Redis down")
            assert monitor.snapshot.redis_error.startswith("Redis")
            assert monitor.age_s() < 1
        finally:
            await monitor.stop()
            await redis.aclose()

    asyncio.run(scenario())


def test_no_worker_is_read_again_from_redis_before_it_is_believed() -> None:
    """A worker that registered after the last refresh is found by the request that would have got a 503;
    concurrent callers share that one read, and a view with workers (or with Redis down) is not read again."""

    class Counting(FakeAsyncRedis):
        reads = 0

        async def smembers(self, name):  # type: ignore[override]
            self.reads += name == WORKERS_SET  # one refresh also reads the known models' set
            await asyncio.sleep(0.01)  # a slow read (the case under test): in flight while the other callers arrive
            return await super().smembers(name)

    async def scenario() -> None:
        redis = Counting()
        monitor = WorkerMonitor(redis, interval_s=3600)  # the loop never refreshes on its own here
        await monitor.refresh()
        assert not monitor.snapshot.workers
        await redis.set(worker_key("late"), json.dumps(record("late")).encode(), ex=60)
        await redis.sadd(WORKERS_SET, "late")
        redis.reads = 0
        snapshots = await asyncio.gather(*(monitor.confirm_no_worker() for _ in range(10)))
        assert redis.reads == 1
        assert all(s.alive == {"late"} for s in snapshots) and monitor.snapshot.alive == {"late"}
        assert (await monitor.confirm_no_worker()).alive == {"late"} and redis.reads == 1  # workers: no read

        await redis.delete(worker_key("late"))
        await monitor.confirm_no_worker()
        assert redis.reads == 1  # the view still has the worker; the loop, not a request, finds it gone
        await monitor.refresh()
        redis.reads = 0
        assert not (await monitor.confirm_no_worker()).workers and redis.reads == 1  # gone indeed: 503 stands

        monitor.snapshot = Snapshot(redis_error="Redis unreachable: test")
        assert (await monitor.confirm_no_worker()).redis_error == "Redis unreachable: test"
        assert redis.reads == 1  # Redis down is answered from the view at once, not after a connect timeout

    asyncio.run(scenario())
