"""``/health`` on the background loops: the API's worker monitor and the workers' reapers (records written by hand)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from rerank_contract.jobs import WORKERS_SET, worker_key
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.support.worker_records import record

HEARTBEAT_S = 1.0  # the default: the reaper is stale past 5 s


@pytest.fixture
def client(api_client: Callable[..., TestClient]) -> TestClient:
    return api_client(heartbeat_interval_s=HEARTBEAT_S)


def publish(redis: RedisServer, name: str, **fields: object) -> None:
    r = redis.client()
    r.set(worker_key(name), json.dumps(record(name, **fields)), ex=60)
    r.sadd(WORKERS_SET, name)


def test_a_fresh_reaper_is_ok(client: TestClient, flushed_redis: RedisServer) -> None:
    now = time.time()
    publish(flushed_redis, "w1", started_at=now - 600, reaper_swept_at=now - 1)
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert 0.5 < body["reaper_age_s"] < 3
    assert 0 <= body["monitor_age_s"] < 2
    assert body["unreadable_workers"] == []
    assert body["workers"][0]["reaper_swept_at"] == pytest.approx(now - 1)


def test_a_stale_reaper_is_degraded_but_serving(client: TestClient, flushed_redis: RedisServer) -> None:
    now = time.time()
    publish(flushed_redis, "w1", started_at=now - 600, reaper_swept_at=now - 100)
    health = client.get("/health")
    assert health.status_code == 200  # still serving: load balancers keep it
    body = health.json()
    assert body["status"] == "degraded"
    assert body["workers_alive"] == 1
    assert 99 < body["reaper_age_s"] < 110
    [problem] = body["problems"]
    assert "reaper has swept in the last 5 s (the newest sweep was 100 s ago)" in problem
    # One live worker with a fresh reaper is enough: every reaper hands back every dead worker's jobs.
    publish(flushed_redis, "w2", started_at=now - 600, reaper_swept_at=now)
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["problems"] == [] and body["reaper_age_s"] < 2


def test_a_reaper_that_never_swept_is_given_a_grace_period(client: TestClient, flushed_redis: RedisServer) -> None:
    now = time.time()
    publish(flushed_redis, "young", started_at=now - 1)  # reaper_swept_at: None, "not yet"
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["reaper_age_s"] is None
    publish(flushed_redis, "young", started_at=now - 60)  # still None a minute after start
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert "none has swept yet" in health.json()["problems"][0]


def test_a_stalled_monitor_is_503(client: TestClient, flushed_redis: RedisServer) -> None:
    """This API's view of the workers stopped refreshing: its 503/429 answers are stale, so it asks to be taken out."""
    now = time.time()
    publish(flushed_redis, "w1", started_at=now - 600, reaper_swept_at=now)
    monitor = client.app.state.monitor
    client.portal.call(monitor.stop)
    monitor.refreshed_at = time.monotonic() - 60
    health = client.get("/health")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "monitor_stale"
    assert body["monitor_age_s"] >= 60
    assert "worker monitor last refreshed 60 s ago" in body["problems"][0]


def test_existing_statuses_keep_their_codes(client: TestClient, flushed_redis: RedisServer) -> None:
    health = client.get("/health")
    assert (health.status_code, health.json()["status"]) == (503, "no_worker")
    assert health.json()["problems"] == ["no worker alive: start one with `rerank-server worker`"]
    assert health.json()["reaper_age_s"] is None


def test_unreadable_records_are_listed_not_counted(client: TestClient, flushed_redis: RedisServer) -> None:
    now = time.time()
    publish(flushed_redis, "w1", started_at=now - 600, reaper_swept_at=now)
    r = flushed_redis.client()
    r.set(worker_key("junk"), b"\x00garbage", ex=60)
    r.sadd(WORKERS_SET, "junk")
    monitor = client.app.state.monitor
    for _ in range(3):  # the same answer from each of the monitor's refreshes
        seen = monitor.refreshed_at
        health = client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok"
        assert body["workers_alive"] == 1 and [w["name"] for w in body["workers"]] == ["w1"]
        assert body["unreadable_workers"] == ["junk"]
        wait_until(lambda seen=seen: monitor.refreshed_at != seen, 10, "the monitor's next refresh")
