"""``GET /metrics`` from the monitor's view, the API key in front of it, and failed-job logs (real Redis, no worker)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from rq import Queue
from rq.results import Result

from rerank_api.app import create_app
from rerank_api.dispatch import Dispatcher
from rerank_api.errors import ApiError
from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE
from rerank_contract.settings import Settings
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until


def test_queue_depth_and_workers_come_from_the_monitor(own_redis: RedisServer) -> None:
    waiting = Queue(SYNC_QUEUE, connection=own_redis.client(), serializer=SERIALIZER)
    with TestClient(create_app(Settings(redis_url=own_redis.url))) as client:  # no worker: jobs stay queued
        for _ in range(2):
            waiting.enqueue(RERANK_JOB, {"query": "q", "candidates": ["a"]})
        depth = 'rerank_queue_depth{queue="rerank"} 2.0'
        wait_until(lambda: depth in client.get("/metrics").text, 5, "the monitor to count the queued jobs")
        text = client.get("/metrics").text
        assert 'rerank_queue_depth{queue="rerank-bulk"} 0.0' in text
        assert "rerank_workers_alive 0.0" in text
        assert "rerank_redis_up 1.0" in text


@pytest.fixture
def keyed_client(own_redis: RedisServer) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(redis_url=own_redis.url, api_key="s3cret"))) as client:
        yield client


def test_metrics_need_the_api_key_when_one_is_set(keyed_client: TestClient) -> None:
    missing = keyed_client.get("/metrics")
    assert missing.status_code == 401
    assert missing.json()["error_type"] == "unauthorized"
    assert keyed_client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = keyed_client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200
    assert 'rerank_http_requests_total{method="GET",route="/metrics",status="401"} 2.0' in answer.text


def test_apps_keep_their_own_registries(own_redis: RedisServer) -> None:
    settings = Settings(redis_url=own_redis.url)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        first.get("/health")
        assert 'route="/health"' in first.get("/metrics").text
        assert 'route="/health"' not in second.get("/metrics").text


def test_a_failed_job_is_logged_with_its_id_and_reason(own_redis: RedisServer, caplog) -> None:
    redis = own_redis.client()
    job = Queue(SYNC_QUEUE, connection=redis, serializer=SERIALIZER).enqueue(RERANK_JOB, {"query": "q"})
    traceback = "Traceback (most recent call last):\n  ...\nValueError: candidates: Field required\n"
    Result.create_failure(job, ttl=60, exc_string=traceback, worker_name="w1")
    [(_, [(entry_id, fields)])] = redis.xread({Result.get_key(job.id): "0-0"})
    with caplog.at_level(logging.WARNING, logger="rerank_api.dispatch"), pytest.raises(ApiError) as raised:
        Dispatcher._parse(job.id, entry_id, fields)
    assert raised.value.status_code == 500
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"job {job.id} failed on worker w1: ValueError: candidates: Field required"
