"""The Python clients' optional fields: sent only when set, under the API's names, against a real Redis and app."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from rq.job import Job

from rerank_api.app import create_app
from rerank_contract.jobs import SERIALIZER
from rerank_contract.settings import Settings
from rerank_server.client import ClientError, HttpClient, QueueClient
from tests.support.redis_server import RedisServer

ITEMS = [{"id": "q1", "query": "machine learning", "candidates": ["deep learning", "cooking recipes"]}]
PLAIN = {"items": ITEMS, "score_mode": "activated"}


@pytest.fixture
def sent(flushed_redis: RedisServer) -> Iterator[tuple[HttpClient, list[dict]]]:
    """An HttpClient talking to the real app (no worker), and the JSON bodies it sent."""
    bodies: list[dict] = []
    with TestClient(create_app(Settings(redis_url=flushed_redis.url))) as app:
        app.event_hooks = {"request": [lambda request: bodies.append(json.loads(request.content or b"null"))]}
        api = HttpClient("http://testserver")
        api._http.close()
        api._http = app
        yield api, bodies


def job_args(redis_server: RedisServer, job_id: str) -> dict:
    return Job.fetch(job_id, connection=redis_server.client(), serializer=SERIALIZER).args[0]


def test_http_submit_bulk_sends_only_the_options_set(sent, flushed_redis: RedisServer) -> None:
    api, bodies = sent
    plain = api.submit_bulk(ITEMS)
    assert bodies[-1] == PLAIN  # no nulls: an older server (extra fields forbidden) still takes it
    assert job_args(flushed_redis, plain) == PLAIN
    chunked = api.submit_bulk(ITEMS, instruction="Find it:", max_chunks_per_doc=3)
    assert (
        bodies[-1] == job_args(flushed_redis, chunked) == {**PLAIN, "instruction": "Find it:", "max_chunks_per_doc": 3}
    )
    empty = api.submit_bulk(ITEMS, instruction="")  # "" (no instruction at all) is not the worker's default
    assert job_args(flushed_redis, empty) == {**PLAIN, "instruction": ""}


def test_queue_submit_bulk_enqueues_the_options_set(flushed_redis: RedisServer) -> None:
    queue = QueueClient(flushed_redis.url)
    try:
        assert job_args(flushed_redis, queue.submit_bulk(ITEMS)) == PLAIN
        job_id = queue.submit_bulk(ITEMS, instruction="Find it:", max_chunks_per_doc=2)
        assert job_args(flushed_redis, job_id) == {**PLAIN, "instruction": "Find it:", "max_chunks_per_doc": 2}
        keys = set(flushed_redis.client().keys("rq:job:*"))
        with pytest.raises(ValidationError, match="max_chunks_per_doc"):
            queue.submit_bulk(ITEMS, max_chunks_per_doc=0)
        assert set(flushed_redis.client().keys("rq:job:*")) == keys  # refused before anything was enqueued
    finally:
        queue.close()


def test_http_rerank_sends_the_api_fields_only_when_set(sent) -> None:
    api, bodies = sent
    query, candidates = "machine learning", ["deep learning"]
    with pytest.raises(ClientError) as refused:
        api.rerank(query, candidates, max_chunks_per_doc=0)
    assert refused.value.status == 422 and "max_chunks_per_doc" in refused.value.error  # the API read the field
    with pytest.raises(ClientError) as no_worker:
        api.rerank(query, candidates, instruction="Find it:", max_chunks_per_doc=2)
    assert no_worker.value.status == 503  # accepted, and nobody to score it
    assert bodies[-1] == {"query": query, "candidates": candidates, "instruction": "Find it:", "max_chunks_per_doc": 2}
    with pytest.raises(ClientError):
        api.rerank(query, candidates)
    assert bodies[-1] == {"query": query, "candidates": candidates}


def test_http_submit_bulk_checks_the_options_before_sending(sent) -> None:
    api, bodies = sent
    with pytest.raises(ValidationError, match="max_chunks_per_doc"):
        api.submit_bulk(ITEMS, max_chunks_per_doc=0)
    assert bodies == []
