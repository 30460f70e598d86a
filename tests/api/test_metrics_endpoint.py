"""``GET /metrics`` of a real API with a real worker, the API key in front of it, and failed-job logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.results import Result

from rerank_api.app import create_app
from rerank_api.dispatch import Dispatcher
from rerank_api.errors import ApiError
from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE
from rerank_contract.settings import Settings
from tests.conftest import SEED_CANDIDATES, SEED_QUERY, RedisServer, Stack


def scrape(url: str, **headers: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.e2e
def test_metrics_count_requests_jobs_batches_queue_and_workers(stack: Stack) -> None:
    before = scrape(stack.url)
    for _ in range(3):
        assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200
    assert httpx.get(f"{stack.url}/v1/jobs/no-such-job").status_code == 404
    assert httpx.get(f"{stack.url}/no/such/route").status_code == 404
    after = scrape(stack.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"method": "POST", "route": "/v1/rerank"}
    assert delta("rerank_http_requests_total", status="200", **ok) == 3
    assert delta("rerank_http_request_duration_seconds_count", **ok) == 3
    # Routes are labelled by template, and paths that match no route share one label.
    assert delta("rerank_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="404") == 1
    assert delta("rerank_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(after, "rerank_http_requests_in_flight") == 1  # the scrape itself
    # One job per request, each scored alone (the requests were sequential): 3 pairs per batch.
    assert delta("rerank_job_queue_seconds_count") == 3
    assert delta("rerank_job_inference_seconds_count") == 3
    assert delta("rerank_job_inference_seconds_sum") > 0
    assert delta("rerank_batch_jobs_sum") == 3
    assert delta("rerank_batch_pairs_sum") == 3 * len(SEED_CANDIDATES)
    assert delta("rerank_batch_pairs_bucket", le="2.0") == 0
    assert delta("rerank_batch_pairs_bucket", le="4.0") == 3
    # From the monitor's snapshot.
    assert value(after, "rerank_workers_alive") == 1
    assert value(after, "rerank_redis_up") == 1
    assert value(after, "rerank_queue_depth", queue="rerank") == 0
    assert ("rerank_queue_depth", frozenset({("queue", "rerank-bulk")})) in after


def test_queue_depth_and_workers_come_from_the_monitor(own_redis: RedisServer) -> None:
    waiting = Queue(SYNC_QUEUE, connection=own_redis.client(), serializer=SERIALIZER)
    with TestClient(create_app(Settings(redis_url=own_redis.url))) as client:  # no worker: jobs stay queued
        for _ in range(2):
            waiting.enqueue(RERANK_JOB, {"query": "q", "candidates": ["a"]})
        deadline = time.monotonic() + 5
        while 'rerank_queue_depth{queue="rerank"} 2.0' not in (text := client.get("/metrics").text):
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
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
