"""Faults with real processes: a worker killed mid-work, Redis stopped and restarted under traffic."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.results import Result

from rerank_contract.jobs import QUEUES, SERIALIZER, SYNC_QUEUE
from tests.support.bulk_items import items
from tests.support.redis_server import RedisServer
from tests.support.seed import SEED_CANDIDATES, SEED_QUERY
from tests.support.services import Service, Stack
from tests.support.waiting import wait_until, wait_until_async


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


def held_sync_jobs(redis: Redis) -> list[str]:
    """Sync jobs a worker has started and not finished: in the started registry, with no result written."""
    registry = Queue(SYNC_QUEUE, connection=redis, serializer=SERIALIZER).started_job_registry
    return [j for j in registry.get_job_ids(cleanup=False) if not redis.exists(Result.get_key(j))]


def kill_holding_a_sync_job(worker: Service, redis: Redis, bulk_job_id: str, timeout: float = 30) -> list[str]:
    """SIGKILL ``worker`` at a moment it holds a started sync job and the bulk job; returns the held sync jobs.

    The worker is frozen (SIGSTOP) before each look, so what is seen is what it holds when the kill lands.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.signal(signal.SIGSTOP)
        wait_until(worker.stopped, 10, "the worker to stop", interval=0.001)
        redis.ping()  # answered in a later event-loop turn than the one that read what the worker sent before it
        held = held_sync_jobs(redis)
        bulk = Job.fetch(bulk_job_id, connection=redis, serializer=SERIALIZER).get_status()
        if held and bulk == JobStatus.STARTED:
            worker.signal(signal.SIGKILL)
            worker.proc.wait(10)
            return held
        worker.signal(signal.SIGCONT)
        time.sleep(0.005)  # lets the worker run between looks: a sampling interval, not a wait
    raise TimeoutError(f"the worker never held a sync job beside the bulk job within {timeout}s")


def test_killed_worker_loses_nothing(make_stack, own_redis: RedisServer, cross_encoder) -> None:
    """SIGKILL the only worker while it runs a bulk job and sync jobs, then restart it as launchd would.

    Every sync request gets its correct scores or a 503 within seconds (never a hang or a 500); each one
    whose job the worker held gets a 503; the bulk job runs again to the end on the new worker.
    """
    stack: Stack = make_stack(BULK_CHUNK_PAIRS="32", REQUEST_TIMEOUT_S="30")
    stack.start_api()
    first = stack.start_worker()
    redis = own_redis.client()
    payload = items(300, 40)  # 12,000 pairs: seconds of work for the tiny model
    job_id = httpx.post(f"{stack.url}/v1/jobs", json={"items": payload}).json()["id"]
    url = f"{stack.url}/v1/jobs/{job_id}"
    wait_until(lambda: (httpx.get(url).json()["progress"] or {}).get("done", 0) > 0, 60, "bulk job progress")

    requests = items(20, 40)  # enough pairs that the worker holds each batch for a while
    killed = asyncio.Event()
    outcomes: list[tuple[int, httpx.Response, float]] = []

    async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
        n = offset
        while not killed.is_set():  # a closed loop: sync jobs keep arriving until the kill has landed
            request = requests[n % len(requests)]
            body = {"query": request["query"], "candidates": request["candidates"]}
            started = time.monotonic()
            response = await client.post("/v1/rerank", json=body)
            outcomes.append((n % len(requests), response, time.monotonic() - started))
            n += 1

    async def traffic_then_kill() -> list[str]:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
            loops = [asyncio.ensure_future(client_loop(client, i)) for i in range(6)]
            try:
                answered = lambda: sum(r.status_code == 200 for _, r, _ in outcomes) >= 10  # noqa: E731
                await wait_until_async(answered, 60, "answers before the kill, too")
                return await asyncio.to_thread(kill_holding_a_sync_job, first, redis, job_id)
            finally:
                killed.set()
                await asyncio.gather(*loops)

    held = asyncio.run(traffic_then_kill())
    assert held

    references = [
        dict(enumerate(cross_encoder.predict([(r["query"], c) for c in r["candidates"]]).tolist())) for r in requests
    ]
    refused = []
    for key, response, seconds in outcomes:
        assert seconds < 10, (seconds, response.text)  # none waits for its 30 s timeout
        if response.status_code == 200:
            got = {r["index"]: r["score"] for r in response.json()["results"]}
            assert got == pytest.approx(references[key], abs=1e-5)
            continue
        assert response.status_code == 503, response.text  # never a 500
        body = response.json()
        # The only worker died: a held job's caller hears worker_lost; a request sent after it, no_worker.
        assert set(body) == {"error", "error_type", "detail"} and body["error_type"] in ("worker_lost", "no_worker"), (
            body
        )
        refused.append(body)
    assert sum(r.status_code == 200 for _, r, _ in outcomes) >= 10
    # Each held job's caller was still waiting (no other client enqueues), and is told its worker died.
    lost = [b["error"] for b in refused if b["error_type"] == "worker_lost"]
    assert len(lost) >= len(held), (held, refused)
    assert all(any(job_id in error for error in lost) for job_id in held), (held, lost)

    stack.start_worker()  # the supervisor's restart
    wait_until(lambda: httpx.get(url).json()["status"] == "finished", 120, "bulk job to be re-run to the end")
    result = httpx.get(url).json()["result"]
    assert [i["id"] for i in result["items"]] == [i["id"] for i in payload]
    pairs = [(item["query"], c) for item in payload for c in item["candidates"]]
    want = iter(cross_encoder.predict(pairs, batch_size=256).tolist())
    for item, got in zip(payload, result["items"], strict=True):
        reference = {i: next(want) for i in range(len(item["candidates"]))}
        # Each passage appears twice per item: equal texts may swap places on float noise, so compare by index.
        assert {r["index"]: r["score"] for r in got["results"]} == pytest.approx(reference, abs=1e-5)
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
    noticed = lambda: "lost Redis" in worker.log() or "could not connect to Redis" in worker.log()  # noqa: E731
    wait_until(noticed, 30, "the worker to notice")

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
    redis = Redis.from_url(stack.redis_url)

    async def pile_up() -> tuple[list[int], httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
            body = {"query": SEED_QUERY, "candidates": SEED_CANDIDATES}
            with worker.frozen():  # requests pile up
                waiting = [asyncio.ensure_future(client.post("/v1/rerank", json=body)) for _ in range(2)]
                # Each admitted request enqueues its job: both are in flight once both jobs exist.
                await wait_until_async(lambda: len(redis.keys("rq:job:*")) == 2, 30, "both requests admitted")
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
        depth = f'rerank_queue_depth{{queue="rerank"}} {queue.count}.0'
        wait_until(lambda: depth in httpx.get(f"{stack.url}/metrics").text, 10, "the monitor to see the queue")
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
    stack.next_heartbeat(stack.health()["workers"][0]["name"])  # published after the second answer
    assert stack.health()["workers"][0]["jobs_done"] == 1  # only the second request was computed
