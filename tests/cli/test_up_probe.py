"""``up`` waits quietly: it starts the API once its own worker serves, then announces only its own API, once."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import fakeredis
import httpx
import pytest

from rerank_contract.jobs import WORKERS_SET, WorkerInfo, worker_key
from rerank_server import up

OURS = "instance-of-this-run"


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    server = fakeredis.FakeRedis()
    monkeypatch.setattr(up, "connect", lambda url, **kwargs: server)
    return server


def publish(redis: fakeredis.FakeRedis, name: str, pid: int, host: str) -> None:
    info = WorkerInfo(
        name=name,
        host=host,
        pid=pid,
        model="m",
        device="cpu",
        dtype="float32",
        max_length=64,
        queues=["rerank"],
        started_at=0.0,
        model_loads=1,
        jobs_done=0,
        jobs_failed=0,
    )
    redis.sadd(WORKERS_SET, name)
    redis.set(worker_key(name), info.model_dump_json(), ex=3)


def test_the_worker_serves_only_once_its_own_heartbeat_is_published(redis: fakeredis.FakeRedis) -> None:
    probe = up.ReadyProbe("redis://x", "http://127.0.0.1:8080", OURS, interval_s=0)
    ours = SimpleNamespace(pid=4242)
    assert not probe.worker_serving(None)  # not started yet
    assert not probe.worker_serving(ours)
    redis.sadd(WORKERS_SET, "expired")  # a name whose record expired: still loading, or dead
    publish(redis, "elsewhere", 4242, "another-machine")  # the same pid on another machine is another worker
    publish(redis, "here", 17, socket.gethostname())  # a worker of another service on this machine
    assert not probe.worker_serving(ours)
    publish(redis, "ours", 4242, socket.gethostname())
    assert probe.worker_serving(ours)


def test_one_line_for_our_own_api_and_none_for_another_on_the_port(
    redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = {"status": "ok", "model": "./models/tiny", "device": "cpu", "workers_alive": 1, "instance": "other"}
    calls: list[str] = []

    def get(url: str, timeout: float) -> httpx.Response:
        calls.append(url)
        return httpx.Response(200, json=health)

    monkeypatch.setattr(httpx, "get", get)
    probe = up.ReadyProbe("redis://x", "http://127.0.0.1:8080", OURS, interval_s=0)
    assert probe.poll() is None  # another instance answers: not announced
    health["instance"] = OURS
    message = probe.poll()
    assert calls == ["http://127.0.0.1:8080/health"] * 2
    assert message is not None and message.startswith(
        "the service is up at http://127.0.0.1:8080/ : model ./models/tiny on cpu, 1 worker"
    )


def test_probes_are_spaced(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(httpx, "get", lambda url, timeout: asked.append(url) or httpx.Response(503))
    probe = up.ReadyProbe("redis://x", "http://127.0.0.1:8080", OURS, interval_s=60)
    for _ in range(10):
        assert probe.poll() is None
    assert len(asked) == 1


def test_a_taken_port_is_seen_and_a_free_one_is_not() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert up.port_in_use("127.0.0.1", port)
    assert not up.port_in_use("127.0.0.1", port)
