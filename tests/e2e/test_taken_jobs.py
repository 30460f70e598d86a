"""A worker killed between taking jobs off a queue and starting them loses none of them.

The worker SIGKILLs itself at the exact point (``RERANK_TEST_FAULT``, rerank_worker.faults): jobs taken,
not yet started. They are then in its taken list (rerank_worker.taking), in no queue and no registry; another
worker's reaper puts them back at the head of their queue once the dead worker's heartbeat is gone, and they
run: each sync caller, still waiting, gets its scores; a bulk job runs to the end.
"""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from redis import Redis

from rerank_worker.taking import TAKERS, taken_key
from tests.support.bulk_items import items
from tests.support.redis_server import RedisServer
from tests.support.services import CLI, Service, Stack
from tests.support.waiting import wait_until


def faulty_worker(stack: Stack, fault: str, heartbeat_ttl_s: int) -> Service:
    """A worker that kills itself at ``fault``; its heartbeat lives ``heartbeat_ttl_s``, so the API keeps callers
    waiting past its death until the next worker is up."""
    env = {**stack.env, "RERANK_TEST_FAULT": fault, "RERANK_HEARTBEAT_TTL_S": str(heartbeat_ttl_s)}
    worker = Service([*CLI, "worker"], env, stack.logs / f"faulty{len(stack.workers)}.log").start()
    stack.workers.append(worker)
    wait_until(lambda: stack.health().get("workers_alive", 0) >= 1, 60, "faulty worker heartbeat")
    return worker


def left_over(redis: Redis) -> list[str]:
    """Taken lists still holding ids."""
    return [k.decode() for k in redis.keys("rerank:taken:*") if redis.llen(k)]


def test_sync_jobs_taken_by_a_worker_killed_before_starting_them_are_answered(
    make_stack, own_redis: RedisServer, cross_encoder
) -> None:
    stack: Stack = make_stack(REQUEST_TIMEOUT_S="60")
    stack.start_api()
    faulty = faulty_worker(stack, "before-start:3", heartbeat_ttl_s=20)
    name = stack.health()["workers"][0]["name"]
    redis = own_redis.client()
    requests = items(12, 5)

    async def call_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, timeout=120) as client:

            async def one(request: dict) -> httpx.Response:
                body = {"query": request["query"], "candidates": request["candidates"]}
                return await client.post("/v1/rerank", json=body)

            # Frozen while the calls are enqueued, so the worker finds them all waiting and takes them together.
            faulty.signal(signal.SIGSTOP)
            calls = [asyncio.ensure_future(one(r)) for r in requests]
            # (Redis serves the frozen worker's blocked BLMOVE itself: the first job may already be in its list.)
            waiting = lambda: redis.llen("rq:queue:rerank") + redis.llen(taken_key(name)) == 12  # noqa: E731
            await asyncio.to_thread(wait_until, waiting, 30, "12 enqueued jobs")
            faulty.signal(signal.SIGCONT)
            await asyncio.to_thread(faulty.proc.wait, 30)
            taken = [i.decode() for i in redis.lrange(taken_key(name), 0, -1)]
            # In the dead worker's list, and nowhere else: not queued, not started.
            assert len(taken) >= 3, taken
            assert redis.sismember(TAKERS, name)
            started = redis.zrange("rq:wip:rerank", 0, -1)
            assert not [i for i in taken if any(s.decode().startswith(i) for s in started)]
            assert not set(taken) & {i.decode() for i in redis.lrange("rq:queue:rerank", 0, -1)}
            stack.start_worker()  # the next worker; its reaper gives the dead one's jobs back
            return await asyncio.gather(*calls)

    responses = asyncio.run(call_all())
    assert faulty.proc.returncode == -signal.SIGKILL
    for request, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        want = cross_encoder.predict([(request["query"], c) for c in request["candidates"]]).tolist()
        assert {r["index"]: r["score"] for r in response.json()["results"]} == pytest.approx(dict(enumerate(want)))
    assert "taken by dead worker" in stack.workers[-1].log()
    assert not left_over(redis) and not redis.sismember(TAKERS, name)


def test_a_bulk_job_taken_by_a_worker_killed_before_starting_it_runs(
    make_stack, own_redis: RedisServer, cross_encoder
) -> None:
    from rerank_contract.bulk_jobs import BulkJobs
    from rerank_contract.jobs import BulkPayload

    stack: Stack = make_stack()
    stack.start_api()
    faulty = faulty_worker(stack, "before-start:1", heartbeat_ttl_s=3)
    redis = own_redis.client()
    payload = items(30, 4)
    bulk = BulkJobs(redis, job_timeout_s=600, result_ttl_s=600, failure_ttl_s=600, retries=1)
    job_id = bulk.submit(BulkPayload.model_validate({"items": payload}))  # enqueued directly, as a pipeline would
    faulty.proc.wait(30)
    assert faulty.proc.returncode == -signal.SIGKILL
    assert [i.decode() for i in redis.lrange("rq:queue:rerank-bulk", 0, -1)] == []
    assert bulk.state(job_id).status == "queued"  # in the dead worker's list only

    stack.start_worker()
    wait_until(lambda: bulk.state(job_id).status == "finished", 60, "the bulk job to run on the next worker")
    result = bulk.state(job_id).result
    assert result is not None
    for item, got in zip(payload, result.items, strict=True):
        want = cross_encoder.predict([(item["query"], c) for c in item["candidates"]]).tolist()
        assert {r.index: r.score for r in got.results} == pytest.approx(dict(enumerate(want)), abs=1e-5)
    assert not left_over(redis)
