"""Fixtures and helpers of the in-process worker tests: a real RerankWorker on fakeredis (a pytest plugin)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest
from rq import Queue
from rq.job import Job

from rerank_contract.jobs import SERIALIZER, SYNC_QUEUE


@pytest.fixture
def queue(reranker) -> Queue:
    return Queue(SYNC_QUEUE, connection=fakeredis.FakeStrictRedis(), serializer=SERIALIZER)


@pytest.fixture
def scorer(reranker):
    return reranker


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


@pytest.fixture
def run_burst(scorer):
    return lambda queue, max_batch_pairs=512, overlap=False: burst(queue, scorer, max_batch_pairs, overlap)


def fetch(queue: Queue, job_id: str) -> Job:
    return Job.fetch(job_id, connection=queue.connection, serializer=SERIALIZER)
