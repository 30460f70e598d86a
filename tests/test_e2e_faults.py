"""Faults with real processes: a worker killed mid-work, Redis stopped and restarted under traffic."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from redis import Redis
from rq import Queue

from rerank_contract.jobs import QUEUES, SERIALIZER
from tests.conftest import SEED_CANDIDATES, SEED_QUERY, RedisServer, Stack, wait_until
from tests.tiny_model import TOPICS

pytestmark = pytest.mark.e2e

PASSAGES = [p for docs in TOPICS.values() for p in docs]


def items(n: int, per_item: int) -> list[dict]:
    topics = list(TOPICS)
    return [
        {"id": f"i{i}", "query": topics[i % 5], "candidates": [PASSAGES[(i + k) % 20] for k in range(per_item)]}
        for i in range(n)
    ]


async def burst(url: str, n: int) -> list[tuple[int, float]]:
    """``n`` concurrent seed requests; (status, seconds) of each."""

    async def one(client: httpx.AsyncClient) -> tuple[int, float]:
        started = time.monotonic()
        response = await client.post("/v1/rerank", json={"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
        return response.status_code, time.monotonic() - started

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(one(client) for _ in range(n)))


def started_jobs(redis_url: str) -> list[str]:
    connection = Redis.from_url(redis_url)
    return [
        j
        for q in QUEUES
        for j in Queue(q, connection=connection, serializer=SERIALIZER).started_job_registry.get_job_ids(cleanup=False)
    ]


def test_killed_worker_loses_nothing(make_stack, own_redis: RedisServer) -> None:
    """SIGKILL the only worker during a bulk job and a burst of sync calls, then restart it as launchd would."""
    stack: Stack = make_stack(BULK_CHUNK_PAIRS="32", REQUEST_TIMEOUT_S="30")
    stack.start_api()
    first = stack.start_worker()
    payload = items(300, 40)  # 12,000 pairs: seconds of work for the tiny model
    job_id = httpx.post(f"{stack.url}/v1/jobs", json={"items": payload}).json()["id"]
    url = f"{stack.url}/v1/jobs/{job_id}"
    wait_until(lambda: (httpx.get(url).json()["progress"] or {}).get("done", 0) > 0, 60, "bulk job progress")

    async def kill_during_burst() -> list[tuple[int, float]]:
        calls = asyncio.ensure_future(burst(stack.url, 20))
        await asyncio.sleep(0.05)
        first.signal(signal.SIGKILL)
        return await calls

    outcomes = asyncio.run(kill_during_burst())
    assert {status for status, _ in outcomes} <= {200, 503}
    assert max(seconds for _, seconds in outcomes) < 10  # none waits for its 30 s timeout

    stack.start_worker()  # the supervisor's restart
    wait_until(lambda: httpx.get(url).json()["status"] == "finished", 120, "bulk job to be re-run to the end")
    result = httpx.get(url).json()["result"]
    assert [i["id"] for i in result["items"]] == [i["id"] for i in payload]
    for item, got in list(zip(payload, result["items"], strict=True))[:3]:
        want = stack.rerank(item["query"], item["candidates"]).json()["results"]
        # Each passage appears twice per item: equal texts may swap places on float noise, so compare by index.
        assert {r["index"]: r["score"] for r in got["results"]} == pytest.approx(
            {r["index"]: r["score"] for r in want}, abs=1e-5
        )
        scores = [r["score"] for r in got["results"]]
        assert scores == sorted(scores, reverse=True)
    wait_until(lambda: not started_jobs(own_redis.url), 10, "no job left started")
    assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200


def test_redis_outage_gives_503_then_recovers_without_restarts(make_stack, own_redis: RedisServer) -> None:
    stack: Stack = make_stack()
    api = stack.start_api()
    worker = stack.start_worker()
    assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200

    own_redis.stop()
    started = time.monotonic()
    during = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    assert during.status_code == 503
    assert during.json()["error_type"] == "queue_unavailable"
    assert time.monotonic() - started < 5
    health = httpx.get(f"{stack.url}/health")
    assert health.status_code == 503 and health.json()["redis"] == "unreachable"
    time.sleep(3)  # let the worker notice too

    own_redis.start()
    wait_until(lambda: stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200, 30, "service to recover")
    assert api.proc.poll() is None and worker.proc.poll() is None
    assert stack.health()["workers"][0]["pid"] == worker.proc.pid
    assert "lost Redis" in worker.log() or "could not connect to Redis" in worker.log()


def test_password_protected_redis(make_stack, own_redis: RedisServer) -> None:
    own_redis.stop()
    own_redis.password = "s3cret"
    own_redis.start()
    stack: Stack = make_stack()
    stack.start_api()
    stack.start_worker()
    assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200


def test_overload_answers_429_with_retry_after_then_recovers(make_stack) -> None:
    stack: Stack = make_stack(MAX_INFLIGHT="2", HEARTBEAT_TTL_S="60")
    stack.start_api()
    worker = stack.start_worker()

    async def pile_up() -> tuple[list[int], httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
            body = {"query": SEED_QUERY, "candidates": SEED_CANDIDATES}
            with worker.frozen():  # requests pile up
                waiting = [asyncio.ensure_future(client.post("/v1/rerank", json=body)) for _ in range(2)]
                await asyncio.sleep(1.0)
                refused = await client.post("/v1/rerank", json=body)
            return [r.status_code for r in await asyncio.gather(*waiting)], refused

    statuses, refused = asyncio.run(pile_up())
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error_type"] == "overloaded"
    assert statuses == [200, 200]
    assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200


def test_queue_depth_bound_answers_429(make_stack) -> None:
    stack: Stack = make_stack(MAX_QUEUE_DEPTH="2", HEARTBEAT_TTL_S="60")
    stack.start_api()
    worker = stack.start_worker()
    with worker.frozen():
        connection = Redis.from_url(stack.redis_url)
        queue = Queue("rerank", connection=connection, serializer=SERIALIZER)
        for _ in range(3):  # direct clients fill the queue (the frozen worker's blocking pop takes one)
            queue.enqueue("rerank_worker.jobs.rerank", {"query": "q", "candidates": ["a"]})
        time.sleep(1.0)  # the monitor's next look
        response = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    assert response.status_code == 429
    assert "jobs queued (max 2)" in response.json()["error"]


def test_request_abandoned_by_its_client_is_not_computed(make_stack, own_redis: RedisServer) -> None:
    stack: Stack = make_stack(HEARTBEAT_TTL_S="60")
    stack.start_api()
    worker = stack.start_worker()
    with worker.frozen():
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{stack.url}/v1/rerank", json={"query": SEED_QUERY, "candidates": SEED_CANDIDATES}, timeout=1.0)
        queue = Queue("rerank", connection=Redis.from_url(own_redis.url), serializer=SERIALIZER)
        wait_until(lambda: queue.canceled_job_registry.count == 1, 5, "the abandoned job to be cancelled")
    assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200
    wait_until(lambda: stack.health()["workers"][0]["jobs_done"] == 1, 5, "heartbeat counts")
    time.sleep(1.5)
    assert stack.health()["workers"][0]["jobs_done"] == 1  # only the second request was computed
