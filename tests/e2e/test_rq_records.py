"""Every call is one RQ job with RQ's own records, whatever the worker batched: what ``rq info`` and RQ's API see."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from rerank_contract.jobs import SERIALIZER, SYNC_QUEUE, RerankResult
from tests.support.services import Stack
from tests.support.tiny_model import TOPICS


def test_batched_calls_leave_one_finished_rq_job_each(make_stack, cross_encoder) -> None:
    stack: Stack = make_stack()
    stack.start_api()
    stack.start_worker()
    docs = [doc for topic in TOPICS.values() for doc in topic]
    calls = [(query, docs[i % len(docs) :] + docs[: i % len(docs)]) for i, query in enumerate(list(TOPICS) * 6)]
    with ThreadPoolExecutor(len(calls)) as pool:  # all at once: the worker scores them in shared batches
        answers = list(pool.map(lambda call: stack.rerank(*call), calls))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]

    connection = Redis.from_url(stack.redis_url)
    queue = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
    finished = queue.finished_job_registry.get_job_ids()
    assert len(finished) == len(calls) and queue.started_job_registry.get_job_ids() == [] and queue.count == 0
    (worker_name,) = {w["name"] for w in stack.health()["workers"]}
    by_query: dict[str, list[RerankResult]] = {}
    for job in Job.fetch_many(finished, connection=connection, serializer=SERIALIZER):
        assert job is not None and job.get_status() == JobStatus.FINISHED and job.worker_name == worker_name
        result = job.latest_result()
        assert result.type.name == "SUCCESSFUL" and result.execution_id
        by_query.setdefault(job.args[0]["query"], []).append(RerankResult.model_validate(job.return_value()))
    assert sum(len(v) for v in by_query.values()) == len(calls)
    assert max(r.batch_jobs for v in by_query.values() for r in v) > 1  # batched, and still one job per call
    for (query, candidates), answer in zip(calls, answers, strict=True):
        want = cross_encoder.predict([(query, c) for c in candidates])
        got = {r["index"]: r["score"] for r in answer.json()["results"]}
        assert got == pytest.approx(dict(enumerate(float(s) for s in want)), abs=1e-5)

    info = subprocess.run(
        [sys.executable, "-m", "rq.cli", "info", "--url", stack.redis_url, "-S", "json", "-R"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert SYNC_QUEUE in info and worker_name in info, info
    assert "1 workers" in info, info
