"""Batched jobs leave RQ's records exactly as RQ's own worker path writes them.

The same kinds of jobs (one that succeeds, one that fails) are run once by RQ's own ``SimpleWorker``
and once by :class:`RerankWorker` (fake scorer, several jobs per batch), each on its own Redis; then
every key each left behind is compared: names, types, hash fields, registry and set members, result
stream fields, and whether each key expires. Ids, times and values are normalised away.
"""

from __future__ import annotations

import re

import fakeredis
import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE

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
    from rerank_worker.scoring import FakeScorer
    from rerank_worker.worker import RerankWorker

    theirs = Queue(SYNC_QUEUE, connection=connections[0], serializer=SERIALIZER)
    good = theirs.enqueue("os.getcwd", job_id="good")
    bad = theirs.enqueue("os.listdir", "/no/such/folder", job_id="bad")
    rq_worker = SimpleWorker([theirs], connection=theirs.connection, serializer=SERIALIZER, name="w")
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

    want = records(theirs.connection, {good.id: "<good>", bad.id: "<bad>"})
    got = records(ours.connection, {"good": "<good>", "bad": "<bad>"})
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
