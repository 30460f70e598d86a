"""Chaos: two workers SIGKILLed again and again under mixed load, and a Redis crash, then a ledger of everything.

For :data:`CHAOS_S` seconds: :data:`SYNC_CLIENTS` closed-loop sync callers, bulk jobs submitted over HTTP and
enqueued directly on the queue (as a pipeline with RQ would), one of the two workers SIGKILLed every
:data:`KILL_EVERY_S` and started again (as a supervisor would), and once, half-way, Redis SIGKILLed and
started again on its append-only file. Then the load stops and the ledger is printed. It must show:

- every sync call answered 200 with the scores ``predict`` gives, or 503 / 429, each within :data:`ANSWER_S`
  (a worker's death is noticed when its heartbeat expires, 3 s; nobody waits for the 30 s timeout);
- every bulk job that was accepted (202, or enqueued) finished, with the scores ``predict`` gives;
- once quiet, no job hash ``queued`` outside every queue and taken list, none ``started`` outside every
  started registry.

Marked ``chaos``: about 90 s, run by ``pytest -m chaos`` (a second step of ``.ci/run``), not the main run.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis import Redis

from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.jobs import QUEUES, BulkPayload
from tests.support.bulk_items import items
from tests.support.redis_server import RedisServer
from tests.support.services import Service, Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.chaos

CHAOS_S = 55.0
KILL_EVERY_S = 5.0
SYNC_CLIENTS = 16
BULK_EVERY_S = 2.0
#: The bound on every sync answer, 200 or not.
ANSWER_S = 15.0
#: Bulk jobs get retries enough to outlive the kills (each kill of a started job costs one).
BULK_RETRIES = 30


@dataclass
class Ledger:
    kills: int = 0
    redis_restarts: int = 0
    calls: Counter = field(default_factory=Counter)
    slowest: dict[str, float] = field(default_factory=dict)
    wrong_scores: list[str] = field(default_factory=list)
    bulk_accepted: dict[str, int] = field(default_factory=dict)  # job id -> payload index
    bulk_routes: Counter = field(default_factory=Counter)  # accepted over "http" / enqueued "direct"
    bulk_refused: Counter = field(default_factory=Counter)
    bulk_states: Counter = field(default_factory=Counter)
    stray: list[str] = field(default_factory=list)
    quiet_after_s: float | None = None

    def call(self, status: str, seconds: float) -> None:
        self.calls[status] += 1
        self.slowest[status] = max(self.slowest.get(status, 0.0), seconds)

    def __str__(self) -> str:
        slowest = {k: round(v, 2) for k, v in self.slowest.items()}
        return (
            f"\n--- chaos ledger ---\nworker kills: {self.kills}, Redis restarts: {self.redis_restarts}\n"
            f"sync calls by status: {dict(self.calls)} (slowest answer per status, s: {slowest})\n"
            f"sync 200s with wrong scores: {self.wrong_scores[:5]}\n"
            f"bulk jobs accepted: {len(self.bulk_accepted)} {dict(self.bulk_routes)}, "
            f"refused: {dict(self.bulk_refused)}\n"
            f"bulk jobs by state: {dict(self.bulk_states)} (all ended {self.quiet_after_s} s after the load stopped)\n"
            f"job hashes outside every list/registry: {self.stray[:10]}\n"
        )


def stray_jobs(redis: Redis) -> list[str]:
    """Jobs ``queued`` in no queue and no taken list, or ``started`` in no started registry."""
    listed: set[bytes] = set()
    for name in QUEUES:
        listed.update(redis.lrange(f"rq:queue:{name}", 0, -1))
    for key in redis.scan_iter("rerank:taken:*"):
        listed.update(redis.lrange(key, 0, -1))
    started = {m.split(b":", 1)[0] for name in QUEUES for m in redis.zrange(f"rq:wip:{name}", 0, -1)}
    stray = []
    for key in redis.scan_iter("rq:job:*"):
        if key.count(b":") != 2:
            continue
        job_id = key.split(b":", 2)[2]
        status = redis.hget(key, "status")
        if (status == b"queued" and job_id not in listed) or (status == b"started" and job_id not in started):
            stray.append(f"{job_id.decode()} ({status.decode()})")
    return stray


def test_nothing_accepted_is_lost_under_chaos(make_stack, own_redis: RedisServer, cross_encoder, tmp_path: Path):
    own_redis.stop()
    own_redis.appendonly_dir = tmp_path / "aof"
    own_redis.appendonly_dir.mkdir()
    own_redis.start()
    stack: Stack = make_stack(BULK_CHUNK_PAIRS="16", BULK_RETRIES=str(BULK_RETRIES))
    stack.start_api()
    slots: list[Service] = [stack.start_worker(), stack.start_worker()]
    redis = own_redis.client()
    bulk = BulkJobs(redis, job_timeout_s=600, result_ttl_s=3600, failure_ttl_s=3600, retries=BULK_RETRIES)

    sync_requests = items(8, 6)
    sync_want = [cross_encoder.predict([(r["query"], c) for c in r["candidates"]]).tolist() for r in sync_requests]
    payloads = [items(12, 4)[k::3] + items(6, 3) for k in range(3)]
    bulk_want = [
        [cross_encoder.predict([(i["query"], c) for c in i["candidates"]]).tolist() for i in p] for p in payloads
    ]
    ledger = Ledger()
    end = time.monotonic() + CHAOS_S
    lock = threading.Lock()

    async def sync_client(client: httpx.AsyncClient, k: int) -> None:
        while time.monotonic() < end:
            request = sync_requests[k % len(sync_requests)]
            started = time.monotonic()
            try:
                response = await client.post(
                    "/v1/rerank", json={"query": request["query"], "candidates": request["candidates"]}
                )
            except httpx.HTTPError as exc:  # counted, and fails the test below
                ledger.call(f"transport {type(exc).__name__}", time.monotonic() - started)
                continue
            ledger.call(str(response.status_code), time.monotonic() - started)
            if response.status_code == 200:
                got = {r["index"]: r["score"] for r in response.json()["results"]}
                if got != pytest.approx(dict(enumerate(sync_want[k % len(sync_want)])), abs=1e-5):
                    ledger.wrong_scores.append(response.json().get("id", "?"))
            else:
                await asyncio.sleep(0.1)  # a refused caller backs off, as a client would
            k += 1

    async def bulk_submitter(client: httpx.AsyncClient) -> None:
        n = 0
        while time.monotonic() < end:
            which = n % len(payloads)
            if n % 2:  # over HTTP
                try:
                    response = await client.post("/v1/jobs", json={"items": payloads[which]})
                    if response.status_code == 202:
                        ledger.bulk_accepted[response.json()["id"]] = which
                        ledger.bulk_routes["http"] += 1
                    else:
                        ledger.bulk_refused[f"http {response.status_code}"] += 1
                except httpx.HTTPError as exc:
                    ledger.bulk_refused[f"http {type(exc).__name__}"] += 1
            else:  # enqueued directly on the queue
                try:
                    job_id = await asyncio.to_thread(
                        bulk.submit, BulkPayload.model_validate({"items": payloads[which]})
                    )
                    ledger.bulk_accepted[job_id] = which
                    ledger.bulk_routes["direct"] += 1
                except Exception as exc:  # Redis away: not accepted
                    ledger.bulk_refused[f"direct {type(exc).__name__}"] += 1
            n += 1
            await asyncio.sleep(BULK_EVERY_S)  # the load's schedule (part of the case), not a wait

    def kill_and_replace(index: int) -> None:
        worker = slots[index]
        if worker.proc is not None and worker.proc.poll() is None:
            worker.signal(signal.SIGKILL)
            worker.proc.wait(10)
            ledger.kills += 1
        with lock:
            slots[index] = stack.start_worker(wait=False)  # the supervisor's restart

    def restart_redis() -> None:
        assert own_redis.proc is not None
        own_redis.proc.kill()
        own_redis.proc.wait(10)
        own_redis.proc = None
        own_redis.start()
        ledger.redis_restarts += 1

    async def chaos() -> None:
        rng = random.Random(21)
        redis_done = False
        while time.monotonic() < end - KILL_EVERY_S:
            await asyncio.sleep(KILL_EVERY_S)  # the faults' schedule (part of the case), not a wait
            await asyncio.to_thread(kill_and_replace, rng.randrange(2))
            if not redis_done and time.monotonic() > end - CHAOS_S / 2:
                await asyncio.to_thread(restart_redis)
                redis_done = True

    async def run() -> None:
        limits = httpx.Limits(max_connections=SYNC_CLIENTS + 4)
        async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as client:
            await asyncio.gather(
                chaos(), bulk_submitter(client), *(sync_client(client, k) for k in range(SYNC_CLIENTS))
            )

    asyncio.run(run())

    # Quiet: the workers of the last restarts come up and finish the accepted work.
    def states() -> Counter:
        return Counter(bulk.state(job_id).status for job_id in ledger.bulk_accepted)

    stopped = time.monotonic()
    try:
        wait_until(lambda: set(states()) <= {"finished", "failed", "canceled"}, 60, "accepted bulk jobs to end")
        ledger.quiet_after_s = round(time.monotonic() - stopped, 1)
        wait_until(lambda: not stray_jobs(redis), 20, "no stray job")
    except TimeoutError:
        pass  # the ledger below says what is missing
    ledger.bulk_states = states()
    ledger.stray = stray_jobs(redis)
    for job_id, which in ledger.bulk_accepted.items():
        state = bulk.state(job_id)
        if state.status == "finished":
            assert state.result is not None
            for got, want in zip(state.result.items, bulk_want[which], strict=True):
                assert {r.index: r.score for r in got.results} == pytest.approx(dict(enumerate(want)), abs=1e-5), (
                    f"bulk job {job_id}{ledger}"
                )
    print(ledger)

    assert ledger.kills >= 8 and ledger.redis_restarts == 1, ledger
    assert set(ledger.calls) <= {"200", "503", "429"}, ledger
    assert ledger.calls["200"] > 0 and not ledger.wrong_scores, ledger
    assert max(ledger.slowest.values()) < ANSWER_S, ledger
    assert ledger.bulk_accepted and ledger.bulk_states == Counter({"finished": len(ledger.bulk_accepted)}), ledger
    assert not ledger.stray, ledger
