"""A bulk job run again continues where it stopped: in-process on fakeredis, then with a real worker SIGKILLed."""

from __future__ import annotations

import signal

import fakeredis
import pytest
from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.jobs import BULK_JOB, BULK_QUEUE, PROGRESS_META, SERIALIZER, SYNC_QUEUE, BulkPayload, BulkResult
from tests.conftest import wait_until
from tests.tiny_model import TOPICS

PASSAGES = [p for docs in TOPICS.values() for p in docs]


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


def assert_equals_predict(result: BulkResult, payload: dict, cross_encoder) -> None:
    pairs = [(item["query"], c) for item in payload["items"] for c in item["candidates"]]
    flat = cross_encoder.predict(pairs, batch_size=len(pairs)).tolist()
    start = 0
    for item, got in zip(payload["items"], result.items, strict=True):
        want = flat[start : start + len(item["candidates"])]
        start += len(item["candidates"])
        assert got.id == item["id"]
        assert {r.index: r.score for r in got.results} == pytest.approx(dict(enumerate(want)), abs=1e-5)


class DiesOnce:
    """The tiny model, whose ``die_at``-th call raises once (a crash in the middle of a job)."""

    def __init__(self, reranker, die_at: int) -> None:
        self._reranker = reranker
        self.die_at = die_at
        self.calls = 0

    def __getattr__(self, name: str):
        return getattr(self._reranker, name)

    def score_many(self, requests, mode):
        self.calls += 1
        if self.calls == self.die_at:
            raise RuntimeError("worker crashed")
        return self._reranker.score_many(requests, mode)


def test_a_failed_bulk_job_run_again_scores_only_the_chunks_not_recorded(reranker, cross_encoder) -> None:
    from rerank_worker import bulk
    from rerank_worker.worker import RerankWorker

    connection = fakeredis.FakeStrictRedis()
    queues = [Queue(name, connection=connection, serializer=SERIALIZER) for name in (SYNC_QUEUE, BULK_QUEUE)]
    scorer = DiesOnce(reranker, die_at=7)
    worker = RerankWorker(
        queues, connection=connection, serializer=SERIALIZER, scorer=scorer, max_batch_pairs=512, bulk_chunk_pairs=50
    )
    payload = {"items": items(30, 20)}  # 600 pairs: 12 chunks of 50
    job = queues[1].enqueue(BULK_JOB, payload, job_timeout=600, failure_ttl=3600, retry=Retry(max=1))

    worker.work(burst=True, max_jobs=1)  # the first run, which dies at its 7th chunk
    failed_once = Job.fetch(job.id, connection=connection, serializer=SERIALIZER)
    assert failed_once.get_status() == JobStatus.QUEUED  # retried
    assert failed_once.get_meta()[PROGRESS_META] == {"done": 300, "total": 600}
    key = bulk.ChunkRecord(connection, failed_once).key
    recorded = sorted(int(k) for k in connection.hkeys(key) if k.isdigit())
    assert recorded == list(range(6))
    assert 0 < connection.ttl(key) <= 600 + 3600  # expires with the job

    worker.work(burst=True)
    done = Job.fetch(job.id, connection=connection, serializer=SERIALIZER)
    assert done.get_status() == JobStatus.FINISHED
    assert scorer.calls == 12 + 1  # the chunk in hand when it died, and each other chunk once
    assert done.get_meta()[bulk.CHUNKS_META] == {"chunks": 12, "scored": 13, "runs": 2}
    assert done.get_meta()[PROGRESS_META] == {"done": 600, "total": 600}
    assert not connection.exists(key)  # the result holds the scores now
    assert_equals_predict(BulkResult.model_validate(done.return_value()), payload, cross_encoder)


def test_a_run_keeps_the_chunk_size_of_the_first_run(reranker) -> None:
    """A worker with another RERANK_BULK_CHUNK_PAIRS cuts the job as its first run did, so records line up."""
    from rerank_worker import bulk

    connection = fakeredis.FakeStrictRedis()
    job = Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER).enqueue(BULK_JOB, {"items": []})
    record = bulk.ChunkRecord(connection, job)
    assert record.open(50) == (50, {})
    record.finished(0, [[0.5, 0.25]], [7])
    assert record.open(8) == (50, {0: {"scores": [[0.5, 0.25]], "tokens": [7]}})


@pytest.mark.e2e
def test_a_worker_killed_mid_job_is_resumed_by_the_next_one(make_stack, cross_encoder) -> None:
    stack = make_stack(BULK_CHUNK_PAIRS="8", BATCH_SIZE="8")
    stack.start_api()
    first = stack.start_worker()
    connection = Redis.from_url(stack.redis_url, socket_timeout=5)
    jobs = BulkJobs(connection, job_timeout_s=600, result_ttl_s=600, failure_ttl_s=600, retries=2)
    payload = {"items": items(60, 12)}  # 720 pairs: 90 chunks of 8
    job_id = jobs.submit(BulkPayload.model_validate(payload))

    def progressed() -> bool:
        progress = jobs.state(job_id).progress
        return progress is not None and progress.done >= 40

    wait_until(progressed, 60, "the bulk job to be under way", interval=0.005)
    with first.frozen():  # stopped at once: the progress read next is where it died
        at_kill = jobs.state(job_id).progress
        first.signal(signal.SIGKILL)
    assert at_kill is not None and 40 <= at_kill.done < at_kill.total, at_kill
    first.proc.wait(10)

    stack.start_worker()  # its reaper hands the dead worker's job back to RQ, which runs it again
    wait_until(lambda: jobs.state(job_id).done, 120, "the resumed bulk job to finish")
    state = jobs.state(job_id)
    assert state.status == "finished", state
    meta = jobs.fetch(job_id).get_meta()
    assert meta[PROGRESS_META] == {"done": 720, "total": 720}
    assert meta["chunks"]["chunks"] == 90 and meta["chunks"]["runs"] == 2
    assert meta["chunks"]["scored"] <= 90 + 1  # counted by the workers, in Redis, before each chunk
    assert_equals_predict(state.result, payload, cross_encoder)
