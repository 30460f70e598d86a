"""The worker layer: a real RerankWorker in-process on fakeredis, with the tiny model's runtime."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue

from rerank_contract.jobs import SERIALIZER, SYNC_QUEUE
from tests.support.in_process_worker import burst


@pytest.fixture
def queue(reranker) -> Queue:
    return Queue(SYNC_QUEUE, connection=fakeredis.FakeStrictRedis(), serializer=SERIALIZER)


@pytest.fixture
def scorer(reranker):
    return reranker


@pytest.fixture
def run_burst(scorer):
    return lambda queue, max_batch_pairs=512, overlap=False: burst(queue, scorer, max_batch_pairs, overlap)
