"""Collecting a batch (``rerank_worker.collector``): pure logic over a queue, here fakeredis and RQ's own jobs."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue
from rq.job import Job

from rerank_contract.defaults import POP_GROUP
from rerank_contract.jobs import SERIALIZER, SYNC_QUEUE
from rerank_worker import collector
from rerank_worker.collector import PairBudget
from rerank_worker.rq_seam import RerankJob


@pytest.fixture
def queue() -> Queue:
    return Queue(SYNC_QUEUE, connection=fakeredis.FakeStrictRedis(), serializer=SERIALIZER, job_class=RerankJob)


def enqueue(queue: Queue, *pairs: int) -> list[str]:
    return [queue.enqueue("rerank_worker.jobs.rerank", {"pairs": n}).id for n in pairs]


def weigh(job: Job) -> int | None:
    """Jobs carry their pair count; a negative one stands for a job that cannot be batched."""
    pairs = job.args[0]["pairs"]
    return None if pairs < 0 else pairs


def collect(queue: Queue, room: int, skip=lambda job: False) -> tuple[list[str], int, Job | None]:
    taken: list[str] = []

    def join(job: Job) -> int | None:
        pairs = weigh(job)
        if pairs is not None:
            taken.append(job.id)
        return pairs

    used, foreign = collector.collect(collector.QueueSource(queue, RerankJob, "w1"), room=room, join=join, skip=skip)
    return taken, used, foreign


def test_takes_jobs_in_order_until_the_budget_is_used_and_puts_the_rest_back_in_order(queue: Queue) -> None:
    ids = enqueue(queue, *[3] * (POP_GROUP + 4))
    taken, used, foreign = collect(queue, room=10)
    assert taken == ids[:4] and used == 12 and foreign is None  # the job that crosses the budget is taken
    assert queue.get_job_ids() == ids[4:]  # popped past the budget, back at the front, order kept


def test_an_empty_queue_gives_nothing(queue: Queue) -> None:
    assert collect(queue, room=10) == ([], 0, None)


def test_stops_at_a_job_that_cannot_be_batched_and_returns_it(queue: Queue) -> None:
    ids = enqueue(queue, 1, -1, 1, 1)
    taken, used, foreign = collect(queue, room=100)
    assert taken == ids[:1] and used == 1
    assert foreign is not None and foreign.id == ids[1]
    assert queue.get_job_ids() == ids[2:]


def test_skipped_and_expired_jobs_are_dropped(queue: Queue) -> None:
    ids = enqueue(queue, 1, 2, 3)
    queue.connection.delete(Job.key_for(ids[0]))  # expired while queued
    taken, used, _ = collect(queue, room=100, skip=lambda job: job.id == ids[1])
    assert taken == ids[2:] and used == 3
    assert queue.get_job_ids() == []


def test_a_full_budget_takes_nothing(queue: Queue) -> None:
    ids = enqueue(queue, 1)
    assert collect(queue, room=0) == ([], 0, None)
    assert queue.get_job_ids() == ids


def test_pair_budget_follows_the_models_rate_within_its_bounds() -> None:
    budget = PairBudget(512, max_batch_s=1.0, min_pairs=16)
    assert budget.pairs == 512  # nothing measured yet: the cap
    budget.observe(8, 1.0)  # smaller than a micro-batch: says little of the rate, ignored
    assert budget.pairs == 512
    budget.observe(100, 2.0)  # 50 pairs/s: a second of it
    assert budget.pairs == 50
    budget.observe(100, 10.0)  # 10 pairs/s, smoothed: 50 + 0.3 * (10 - 50) = 38
    assert budget.pairs == 38
    for _ in range(30):
        budget.observe(16, 16.0)  # 1 pair/s: never below one micro-batch
    assert budget.pairs == 16
    for _ in range(30):
        budget.observe(512, 0.01)  # a GPU: the pair cap binds
    assert budget.pairs == 512
    assert PairBudget(512, max_batch_s=None, min_pairs=16).pairs == 512


def test_pair_budget_without_a_time_bound_is_the_cap() -> None:
    budget = PairBudget(64)
    budget.observe(64, 100.0)
    assert budget.pairs == 64
