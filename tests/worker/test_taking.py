"""Taking jobs (``rerank_worker.taking``): a taken id is always in a queue or its taker's list, and a dead taker's
ids go back to the head of their queues in order. fakeredis with Lua, and RQ's own jobs."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue

from rerank_contract.jobs import BULK_QUEUE, SERIALIZER, SYNC_QUEUE
from rerank_worker import taking
from rerank_worker.rq_seam import RerankJob


@pytest.fixture
def queues() -> dict[str, Queue]:
    connection = fakeredis.FakeStrictRedis()
    return {
        name: Queue(name, connection=connection, serializer=SERIALIZER, job_class=RerankJob)
        for name in (SYNC_QUEUE, BULK_QUEUE)
    }


def enqueue(queue: Queue, n: int) -> list[str]:
    return [queue.enqueue("rerank_worker.jobs.rerank", {}).id for _ in range(n)]


def taken(queue: Queue, taker: str) -> list[str]:
    return [i.decode() for i in queue.connection.lrange(taking.taken_key(taker), 0, -1)]


def test_take_moves_ids_from_the_first_non_empty_queue_into_the_takers_list(queues: dict[str, Queue]) -> None:
    sync, bulk = queues[SYNC_QUEUE], queues[BULK_QUEUE]
    bulk_ids = enqueue(bulk, 2)
    assert taking.take(sync.connection, "w", [sync.key, bulk.key], 5) == (bulk.key, bulk_ids)
    assert bulk.get_job_ids() == [] and taken(bulk, "w") == bulk_ids
    sync_ids = enqueue(sync, 3)
    assert taking.take(sync.connection, "w", [sync.key, bulk.key], 2) == (sync.key, sync_ids[:2])
    assert sync.get_job_ids() == sync_ids[2:]
    assert taking.take(sync.connection, "w", [bulk.key], 2) is None
    assert sync.connection.smembers(taking.TAKERS) == {b"w"}


def test_put_back_returns_ids_to_the_head_in_order_and_drop_forgets_them(queues: dict[str, Queue]) -> None:
    sync = queues[SYNC_QUEUE]
    ids = enqueue(sync, 5)
    _, first = taking.take(sync.connection, "w", [sync.key], 3)
    taking.put_back(sync.connection, "w", sync.key, first[1:])
    assert sync.get_job_ids() == ids[1:] and taken(sync, "w") == ids[:1]
    taking.drop(sync.connection, "w", ids[:1])
    assert taken(sync, "w") == []


def test_a_dead_takers_ids_go_back_to_their_own_queues_cancelled_and_expired_ones_dropped(
    queues: dict[str, Queue],
) -> None:
    sync, bulk = queues[SYNC_QUEUE], queues[BULK_QUEUE]
    connection = sync.connection
    sync_ids, bulk_ids = enqueue(sync, 4), enqueue(bulk, 1)
    taking.take(connection, "dead", [sync.key], 4)
    taking.take(connection, "dead", [bulk.key], 1)
    later = enqueue(sync, 1)  # queued after the take: stays behind the ones given back
    RerankJob.fetch(sync_ids[1], connection=connection, serializer=SERIALIZER).cancel()
    connection.delete(RerankJob.key_for(sync_ids[2]))  # expired

    assert taking.dead_takers(connection) == ["dead"]  # no heartbeat record
    back = taking.give_back(connection, "dead", {q.name: q.key for q in queues.values()})
    assert back == [sync_ids[0], sync_ids[3], *bulk_ids]
    assert sync.get_job_ids() == [sync_ids[0], sync_ids[3], *later]
    assert bulk.get_job_ids() == bulk_ids
    assert not connection.exists(taking.taken_key("dead")) and not connection.sismember(taking.TAKERS, "dead")
    assert taking.dead_takers(connection) == []
