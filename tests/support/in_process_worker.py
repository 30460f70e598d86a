"""A real RerankWorker in the test's own process, on the queue it is given (fakeredis in the worker tests)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rq import Queue
from rq.job import Job

from rerank_contract.jobs import SERIALIZER


def make_worker(queue: Queue, scorer, max_batch_pairs: int = 512, overlap: bool = False):
    from rerank_worker.worker import RerankWorker

    return RerankWorker(
        [queue],
        connection=queue.connection,
        serializer=SERIALIZER,
        scorer=scorer,
        max_batch_pairs=max_batch_pairs,
        bulk_chunk_pairs=64,
        model_thread=ThreadPoolExecutor(1) if overlap else None,
    )


def burst(queue: Queue, scorer, max_batch_pairs: int = 512, overlap: bool = False):
    """A worker that ran until the queue was empty."""
    worker = make_worker(queue, scorer, max_batch_pairs, overlap)
    worker.work(burst=True)
    return worker


def fetch(queue: Queue, job_id: str) -> Job:
    return Job.fetch(job_id, connection=queue.connection, serializer=SERIALIZER)
