"""Bulk jobs in-process on fakeredis: chunked scoring, progress, sync work in between, cancellation."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue
from rq.job import Job, JobStatus

from rerank_contract.jobs import (
    BULK_JOB,
    BULK_QUEUE,
    PROGRESS_META,
    RERANK_JOB,
    SERIALIZER,
    SYNC_QUEUE,
    BulkPayload,
    BulkResult,
    Progress,
)
from tests.support.tiny_model import TOPICS

PASSAGES = [p for docs in TOPICS.values() for p in docs]


@pytest.fixture
def queues(reranker) -> tuple[Queue, Queue]:
    connection = fakeredis.FakeStrictRedis()
    return (
        Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER),
        Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER),
    )


def make_worker(queues, reranker, monkeypatch, chunk_pairs: int, on_chunk=None):
    """A worker whose bulk jobs call ``on_chunk(worker, job, progress)`` each time they record progress."""
    from rerank_worker import bulk
    from rerank_worker.worker import RerankWorker

    worker = RerankWorker(
        list(queues),
        connection=queues[0].connection,
        serializer=SERIALIZER,
        scorer=reranker,
        max_batch_pairs=512,
        bulk_chunk_pairs=chunk_pairs,
    )
    if on_chunk is not None:
        record = bulk._record

        def observed(job, progress: Progress) -> None:
            on_chunk(worker, job, progress)
            record(job, progress)

        monkeypatch.setattr(bulk, "_record", observed)
    return worker


def items(n: int, per_item: int) -> list[dict]:
    topics = list(TOPICS)
    return [
        {
            "id": f"item-{i}",
            "query": topics[i % len(topics)],
            "candidates": [PASSAGES[(i + k) % 20] for k in range(per_item)],
        }
        for i in range(n)
    ]


def fetch(queue: Queue, job_id: str) -> Job:
    return Job.fetch(job_id, connection=queue.connection, serializer=SERIALIZER)


def test_chunked_bulk_equals_one_predict_call_and_reports_progress(
    queues, reranker, monkeypatch, cross_encoder
) -> None:
    payload = {"items": items(150, 20)}  # 3000 pairs, 47 chunks of 64
    seen: list[Progress] = []
    worker = make_worker(queues, reranker, monkeypatch, chunk_pairs=64, on_chunk=lambda w, j, p: seen.append(p))
    job = queues[1].enqueue(BULK_JOB, payload, job_timeout=600)
    worker.work(burst=True)

    done = fetch(queues[1], job.id)
    assert done.get_status() == JobStatus.FINISHED
    assert done.get_meta()[PROGRESS_META] == {"done": 3000, "total": 3000}
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[0].done == 0 and seen[-1].done == 3000 and len(seen) == 1 + 47
    result = BulkResult.model_validate(done.return_value())
    assert result.pairs == 3000
    pairs = [(item["query"], c) for item in payload["items"] for c in item["candidates"]]
    flat = cross_encoder.predict(pairs, batch_size=3000).tolist()
    for n, (item, got) in enumerate(zip(payload["items"], result.items, strict=True)):
        want = flat[n * 20 : (n + 1) * 20]
        assert got.id == item["id"]
        assert [r.index for r in got.results] == sorted(range(20), key=lambda i: -want[i])
        assert {r.index: r.score for r in got.results} == pytest.approx(dict(enumerate(want)), abs=1e-5)


def test_sync_jobs_arriving_during_a_bulk_job_run_between_its_chunks(queues, reranker, monkeypatch) -> None:
    sync_ids: dict[int, str] = {}
    finished_at: dict[str, int] = {}

    def on_chunk(worker, job, progress: Progress) -> None:
        for sync_id in sync_ids.values():
            if sync_id not in finished_at and fetch(queues[0], sync_id).get_status() == JobStatus.FINISHED:
                finished_at[sync_id] = progress.done
        if progress.done == 128:
            sync_ids[progress.done] = (
                queues[0].enqueue(RERANK_JOB, {"query": "cooking", "candidates": ["pasta sauce", "black holes"]}).id
            )

    worker = make_worker(queues, reranker, monkeypatch, chunk_pairs=64, on_chunk=on_chunk)
    bulk_job = queues[1].enqueue(BULK_JOB, {"items": items(40, 20)}, job_timeout=600)  # 800 pairs
    worker.work(burst=True)

    (sync_id,) = sync_ids.values()
    assert fetch(queues[0], sync_id).get_status() == JobStatus.FINISHED
    assert finished_at[sync_id] == 192  # served right after the next chunk, not after the whole bulk job
    assert fetch(queues[1], bulk_job.id).get_status() == JobStatus.FINISHED


def test_cancelling_a_running_bulk_job_stops_it(queues, reranker, monkeypatch) -> None:
    def on_chunk(worker, job, progress: Progress) -> None:
        if progress.done == 256:
            fetch(queues[1], job.id).cancel()

    worker = make_worker(queues, reranker, monkeypatch, chunk_pairs=64, on_chunk=on_chunk)
    job = queues[1].enqueue(BULK_JOB, {"items": items(100, 20)}, job_timeout=600)
    after = queues[0].enqueue(RERANK_JOB, {"query": "finance", "candidates": ["bank loans"]})
    worker.work(burst=True)

    stopped = fetch(queues[1], job.id)
    assert stopped.get_status() == JobStatus.STOPPED
    assert stopped.get_meta()[PROGRESS_META] == {"done": 256, "total": 2000}
    assert "cancelled after 256 of 2000 pairs" in stopped.latest_result().exc_string
    assert fetch(queues[0], after.id).get_status() == JobStatus.FINISHED  # the worker goes on


def test_bad_bulk_payload_fails_cleanly(queues, reranker, monkeypatch) -> None:
    worker = make_worker(queues, reranker, monkeypatch, chunk_pairs=64)
    job = queues[1].enqueue(BULK_JOB, {"items": [{"query": "q"}]})
    worker.work(burst=True)
    failed = fetch(queues[1], job.id)
    assert failed.get_status() == JobStatus.FAILED
    assert "candidates" in failed.latest_result().exc_string


def test_bulk_job_lookups_refuse_other_jobs(queues) -> None:
    from rerank_contract.bulk_jobs import BulkJobs, UnknownJob

    bulk_jobs = BulkJobs(queues[0].connection, job_timeout_s=60, result_ttl_s=60, failure_ttl_s=60, retries=0)
    sync_job = queues[0].enqueue(RERANK_JOB, {"query": "q", "candidates": ["a"]})
    for job_id in (sync_job.id, "no-such-job", "bad id"):
        with pytest.raises(UnknownJob):
            bulk_jobs.state(job_id)
    assert bulk_jobs.state(bulk_jobs.submit(BulkPayload(items=[]))).status == "queued"
