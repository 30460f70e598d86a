"""Batched jobs leave RQ's records exactly as RQ's own worker path writes them (``rerank_worker.rq_seam``).

The same kinds of jobs (one that succeeds, one that fails) are run once by RQ's own ``SimpleWorker``
and once by :class:`RerankWorker` (fake scorer, several jobs per batch), each on its own Redis; then
every key each left behind is compared: names, types, hash fields, registry and set members, result
stream fields, and whether each key expires. Ids, times and values are normalised away.
"""

from __future__ import annotations

import re

import fakeredis
import pytest
import rq
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job

from rerank_contract.defaults import PUBSUB_POLL_S
from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE
from rerank_worker import rq_seam

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
# Fields whose values say what happened (the rest are ids, times, payloads and results).
COMPARED_VALUES = {"status", "origin", "result_ttl", "failure_ttl", "successful_job_count", "failed_job_count"}


def records(connection: Redis, names: dict[str, str]) -> dict[str, object]:
    """Every key, as ``normalised name -> (type, expires, contents)``; ``names`` maps ids to placeholders."""

    def norm(value: bytes | str) -> str:
        text = value.decode() if isinstance(value, bytes) else value
        for real, placeholder in names.items():
            text = text.replace(real, placeholder)
        return UUID.sub("<id>", text)

    out: dict[str, object] = {}
    for key in connection.keys("*"):
        if key.startswith(b"rerank:"):  # the service's own records (rerank_worker.taking's takers), not RQ's
            continue
        kind = connection.type(key).decode()
        expires = connection.ttl(key) > 0
        if kind == "hash":
            contents = {
                norm(f): norm(v) if norm(f) in COMPARED_VALUES else "*" for f, v in connection.hgetall(key).items()
            }
            contents.pop("last_heartbeat", None)  # RQ refreshes it at moments that differ; both write it
        elif kind in ("set", "zset", "list"):
            members = (
                connection.smembers(key)
                if kind == "set"
                else connection.zrange(key, 0, -1)
                if kind == "zset"
                else connection.lrange(key, 0, -1)
            )
            contents = sorted(norm(m) for m in members)
        elif kind == "stream":
            contents = sorted({tuple(sorted(norm(f) for f in fields)) for _, fields in connection.xrange(key)})
        else:
            contents = "*"
        out[norm(key)] = (kind, expires, contents)
    return out


class QuickStop(SimpleWorker):
    """RQ's own worker, whose stop does not wait a minute for its pub/sub thread under redis-py 8.2 (by then the
    worker's key, kept 60 s after its death, would be gone); its records are RQ's own."""

    def subscribe(self) -> None:
        rq_seam.subscribe(self, PUBSUB_POLL_S)


@pytest.fixture(params=["fakeredis", "redis-server"])
def connections(request) -> tuple[Redis, Redis]:
    """Two empty databases: fakeredis (RQ pops with LPOP there), or a real redis-server (LMOVE, Redis >= 6.2)."""
    if request.param == "fakeredis":
        return fakeredis.FakeStrictRedis(), fakeredis.FakeStrictRedis()
    server = request.getfixturevalue("redis_server")
    pair = tuple(Redis.from_url(server.url.rsplit("/", 1)[0] + f"/{db}") for db in (1, 2))
    for connection in pair:
        connection.flushdb()
    return pair  # type: ignore[return-value]


def test_a_batch_writes_what_rqs_own_path_writes(connections: tuple[Redis, Redis]) -> None:
    from rerank_worker.fake_scorer import FakeScorer
    from rerank_worker.taking import taken_key
    from rerank_worker.worker import RerankWorker

    theirs = Queue(SYNC_QUEUE, connection=connections[0], serializer=SERIALIZER)
    good = theirs.enqueue("os.getcwd", job_id="good")
    bad = theirs.enqueue("os.listdir", "/no/such/folder", job_id="bad")
    rq_worker = QuickStop([theirs], connection=theirs.connection, serializer=SERIALIZER, name="w")
    rq_worker.work(burst=True)

    ours = Queue(SYNC_QUEUE, connection=connections[1], serializer=SERIALIZER)
    ours.enqueue(RERANK_JOB, {"query": "q", "candidates": ["a", "q"]}, job_id="good")
    ours.enqueue(RERANK_JOB, {"query": "q", "candidates": "not a list"}, job_id="bad")
    worker = RerankWorker(
        [ours],
        connection=ours.connection,
        serializer=SERIALIZER,
        name="w",
        scorer=FakeScorer(),
        max_batch_pairs=512,
        bulk_chunk_pairs=64,
    )
    worker.work(burst=True)
    assert worker.batches == 1  # both jobs went through one batch
    assert not ours.connection.exists(taken_key("w"))  # every job taken was started

    want = records(theirs.connection, {good.id: "<good>", bad.id: "<bad>"})
    got = records(ours.connection, {"good": "<good>", "bad": "<bad>"})
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key


def exact_records(connection: fakeredis.FakeStrictRedis) -> dict[str, object]:
    """Every key's type, expiry (to 10 s) and content, values included, with execution ids and times replaced by
    placeholders: two runs of the same jobs (same ids) compare equal exactly when they wrote the same records."""
    executions: dict[str, str] = {}  # execution id -> its job's id
    for key in connection.keys("rq:executions:*"):
        executions.update((m.decode(), key.decode().split(":")[2]) for m in connection.zrange(key, 0, -1))
    for key in connection.keys("rq:results:*"):
        executions.update((f[b"execution_id"].decode(), key.decode().split(":")[2]) for _, f in connection.xrange(key))
    times = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z$|^1\d{9}(\.\d+)?$")

    def clean(value: object) -> object:
        text = value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)
        for execution, job in executions.items():  # a 32-hex id, or its prefix in key names
            text = text.replace(execution, f"<execution of {job}>").replace(execution[:10], f"<execution of {job}>")
        return "<time>" if times.match(text) else text

    out: dict[str, object] = {}
    for raw in sorted(connection.keys("*")):
        key, kind = clean(raw), connection.type(raw).decode()
        ttl = connection.ttl(raw)
        if kind == "hash":
            content: object = {clean(f): clean(v) for f, v in connection.hgetall(raw).items()}
            if "total_working_time" in content:  # seconds between a start and an end: differs from run to run
                content["total_working_time"] = "<seconds>"
        elif kind == "zset":
            content = sorted(clean(m) for m, _ in connection.zrange(raw, 0, -1, withscores=True))
        elif kind == "stream":
            content = [{clean(f): clean(v) for f, v in fields.items()} for _, fields in connection.xrange(raw)]
        elif kind == "list":
            content = [clean(v) for v in connection.lrange(raw, 0, -1)]
        else:
            content = kind
        out[str(key)] = (kind, ttl if ttl < 0 else round(ttl, -1), content)
    return out


@pytest.mark.parametrize("result_ttl", [600, 0], ids=["kept", "deleted-at-once"])
def test_batch_start_and_success_leave_the_records_rq_own_path_leaves(result_ttl: int) -> None:
    """The seam's batched start and success (one script each, no full re-save of the job hash) against RQ's own
    ``prepare_execution`` + ``prepare_job_execution`` and ``handle_job_success``, job by job, on the same jobs."""
    from rerank_contract.jobs import BULK_QUEUE
    from rerank_worker.fake_scorer import FakeScorer
    from rerank_worker.worker import RerankWorker

    def setup() -> tuple[fakeredis.FakeStrictRedis, RerankWorker, list[Job], Queue]:
        connection = fakeredis.FakeStrictRedis(server=fakeredis.FakeServer())
        queue = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
        queues = [queue, Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER)]
        worker = RerankWorker(
            queues, connection=connection, serializer=SERIALIZER, scorer=FakeScorer(), max_batch_pairs=64,
            bulk_chunk_pairs=8, name="the-worker",
        )  # fmt: skip
        worker.register_birth()
        for n in range(2):
            payload = {"query": f"q{n}", "candidates": ["a", "b"]}
            queue.enqueue(RERANK_JOB, payload, job_id=f"job-{n}", result_ttl=result_ttl, ttl=30, job_timeout=30)
        connection.delete(queue.key)  # dequeued
        jobs = [rq_seam.RerankJob.fetch(f"job-{n}", connection=connection, serializer=SERIALIZER) for n in range(2)]
        return connection, worker, jobs, queue

    theirs, rq_worker, rq_jobs, rq_queue = setup()
    ours, worker, jobs, queue = setup()
    rq_worker.prepare_execution(rq_jobs[0])
    rq_worker.prepare_job_execution(rq_jobs[0])
    running = [rq_seam.Running(job, queue) for job in jobs]
    rq_seam.start(worker, running[:1])
    assert exact_records(ours) == exact_records(theirs)

    rq_worker.prepare_execution(rq_jobs[1])
    rq_worker.prepare_job_execution(rq_jobs[1])
    rq_seam.start(worker, running[1:])
    ended = rq.utils.now()
    for n, job in enumerate(rq_jobs):
        job._result, job.ended_at = {"n": n}, ended
        (rq_worker.execution,) = job.get_executions()  # RQ's worker holds the execution of the job it runs
        rq_worker.handle_job_success(job, rq_queue, rq_queue.started_job_registry)
    rq_seam.succeed(worker, [(r, {"n": n}) for n, r in enumerate(running)], ended)
    assert exact_records(ours) == exact_records(theirs)
    if result_ttl:  # and RQ reads them back
        assert rq_seam.RerankJob.fetch("job-1", connection=ours, serializer=SERIALIZER).return_value() == {"n": 1}
    else:
        assert not ours.exists(rq_seam.RerankJob.key_for("job-1"))
