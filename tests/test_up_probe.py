"""``up`` waits quietly: no /health call before a worker's heartbeat, at most one a second, one line when up."""

from __future__ import annotations

import logging

import fakeredis
import httpx
import pytest

from rerank_contract.jobs import WORKERS_SET, worker_key
from rerank_server import up


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    server = fakeredis.FakeRedis()
    httpx_logger = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_logger, "level", httpx_logger.level)  # restored after the test
    monkeypatch.setattr(up, "connect", lambda url, **kwargs: server)
    return server


def test_no_health_call_until_a_worker_is_alive_then_one_line(
    redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    health = {"status": "ok", "model": "./models/tiny", "device": "cpu", "workers_alive": 1}

    def get(url: str, timeout: float) -> httpx.Response:
        calls.append(url)
        return httpx.Response(200, json=health)

    monkeypatch.setattr(httpx, "get", get)
    probe = up.ReadyProbe("redis://x", "http://127.0.0.1:8080", interval_s=0)
    assert probe.poll() is None
    redis.sadd(WORKERS_SET, "w1")  # a name whose record expired: still loading, or dead
    assert probe.poll() is None
    assert calls == []
    redis.set(worker_key("w1"), "{}", ex=3)
    message = probe.poll()
    assert calls == ["http://127.0.0.1:8080/health"]
    assert message is not None and message.startswith(
        "the service is up at http://127.0.0.1:8080/ : model ./models/tiny on cpu, 1 worker"
    )
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


def test_probes_are_spaced(redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    monkeypatch.setattr(redis, "smembers", lambda key: asked.append(1) or set())
    probe = up.ReadyProbe("redis://x", "http://127.0.0.1:8080", interval_s=60)
    for _ in range(10):
        assert probe.poll() is None
    assert len(asked) == 1
