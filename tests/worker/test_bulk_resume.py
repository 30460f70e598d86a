"""A bulk job run again continues where it stopped, in-process on fakeredis (a real worker SIGKILLed: tests/e2e)."""

from __future__ import annotations

import fakeredis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from rerank_contract.jobs import BULK_JOB, BULK_QUEUE, PROGRESS_META, SERIALIZER, SYNC_QUEUE, BulkResult
from tests.support.bulk_items import items
from tests.support.ranking import assert_equals_predict


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
