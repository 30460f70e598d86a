"""``rerank-server up`` on a machine with no Redis configured: it brings everything and stops it all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess

import httpx
from redis import Redis

from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.jobs import BulkPayload
from tests.support.ports import free_port
from tests.support.seed import SEED_CANDIDATES, SEED_QUERY
from tests.support.services import CLI, service_env
from tests.support.waiting import wait_until


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_starts_private_redis_serves_and_stops_cleanly(model_dir, tmp_path) -> None:
    api_port, redis_port = free_port(), free_port()
    key = "k3y-given-to-up"  # the children must get the key itself, not its mask
    env = service_env(
        f"redis://127.0.0.1:{redis_port}/0", model_dir, PORT=str(api_port), API_KEY=key, REDIS_DIR=str(tmp_path / "r")
    )
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen([*CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{api_port}"

    try:
        wait_until(lambda: "is up at" in (tmp_path / "up.log").read_text(), 90, "rerank-server up to announce")
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        assert _port_open(redis_port)
        body = {"query": SEED_QUERY, "candidates": SEED_CANDIDATES}
        wrong = httpx.post(f"{url}/v1/rerank", json=body, headers={"Authorization": "Bearer **********"})
        assert wrong.status_code == 401
        response = httpx.post(f"{url}/v1/rerank", json=body, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        assert [r["index"] for r in response.json()["results"]][-1] == 1
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert "starting a private one" in output
    assert any((tmp_path / "r").rglob("*.aof"))  # it persisted into RERANK_REDIS_DIR
    assert not _port_open(api_port)
    assert not _port_open(redis_port)


def test_up_starts_no_redis_for_a_tls_url(model_dir, tmp_path) -> None:
    """A configured rediss:// (TLS) Redis that is down is an error to report, not a cue to start our own."""
    env = service_env(
        f"rediss://127.0.0.1:{free_port()}/0", model_dir, PORT=str(free_port()), REDIS_DIR=str(tmp_path / "r")
    )
    result = subprocess.run([*CLI, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "not a local redis:// URL" in result.stderr


def _pids(log: str, name: str) -> list[int]:
    """The pids ``up`` logged for ``name``, in start order (a restart logs its pid twice)."""
    return list(dict.fromkeys(int(pid) for pid in re.findall(rf"{name} (?:re)?started \(pid (\d+)", log)))


def _serving(url: str, worker_pid: int | None = None) -> bool:
    try:
        health = httpx.get(f"{url}/health", timeout=2).json()
        answer = httpx.post(f"{url}/v1/rerank", json={"query": "a", "candidates": ["a b", "c"]}, timeout=5)
    except (httpx.HTTPError, ValueError):
        return False
    pids = {w["pid"] for w in health.get("workers", [])}
    return answer.status_code == 200 and (worker_pid is None or pids == {worker_pid})


def test_up_restarts_a_killed_worker_api_and_redis_and_stays_the_same_process(tmp_path) -> None:
    api_port, redis_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = service_env(redis_url, tmp_path, PORT=str(api_port), REDIS_DIR=str(tmp_path / "r"), SCORER="fake")
    log_path = tmp_path / "up.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([*CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(lambda: "is up at" in log_path.read_text(), 60, "rerank-server up to announce")
        for name in ("worker", "api", "redis"):
            if name == "redis":
                pid = Redis.from_url(redis_url, socket_timeout=5).info("server")["process_id"]
            else:
                pid = _pids(log_path.read_text(), name)[-1]
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda name=name: f"{name} restarted" in log_path.read_text(), 30, f"{name} to restart")
            worker = _pids(log_path.read_text(), "worker")[-1]
            wait_until(lambda w=worker: _serving(url, w), 60, f"the service to answer again after killing {name}")
            assert proc.poll() is None  # the same `up`, all along
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = log_path.read_text()
    for name in ("worker", "api"):
        assert f"{name} exited with code -9" in output
        assert len(_pids(output, name)) == 2
    assert "redis exited with code -9" in output
    assert "restarts while running: redis 1, worker 1, api 1" in output
    assert not _port_open(api_port) and not _port_open(redis_port)


def test_up_stops_with_a_message_when_the_worker_cannot_start(tmp_path) -> None:
    env = service_env(
        f"redis://127.0.0.1:{free_port()}/0",
        tmp_path / "no-such-model",
        PORT=str(free_port()),
        REDIS_DIR=str(tmp_path / "r"),
    )
    result = subprocess.run([*CLI, "up"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "worker exited with code 3: it cannot start" in result.stderr
    assert len(_pids(result.stderr, "worker")) == 1  # started once: no loop
    # The API starts only once the worker serves: nothing claimed to be running.
    assert "api started" not in result.stderr and "Uvicorn running" not in result.stderr, result.stderr


def test_a_second_up_on_a_taken_port_refuses_at_once_in_one_line(model_dir, tmp_path) -> None:
    with socket.socket() as other:  # what another `up` (or any program) holds
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        redis_port = free_port()
        env = service_env(f"redis://127.0.0.1:{redis_port}/0", model_dir, PORT=str(port), REDIS_DIR=str(tmp_path))
        result = subprocess.run([*CLI, "up"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is in use" in lines[0] and "--port" in lines[0]
    assert not _port_open(redis_port)  # it started nothing: no Redis, worker or API


def test_a_finished_bulk_job_outlives_up_being_stopped_and_started_again(tmp_path) -> None:
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = service_env(redis_url, tmp_path, PORT=str(free_port()), REDIS_DIR=str(tmp_path / "r"), SCORER="fake")
    logs = []
    payload = BulkPayload.model_validate({"items": [{"id": "x", "query": "a b", "candidates": ["a", "b c", "d"]}]})

    def up_once(n: int) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"up{n}.log"
        logs.append(log_path.open("wb"))
        proc = subprocess.Popen([*CLI, "up"], env=env, stdout=logs[-1], stderr=subprocess.STDOUT)
        wait_until(lambda: "is up at" in log_path.read_text(), 60, f"rerank-server up ({n}) to announce")
        return proc

    def jobs() -> BulkJobs:
        connection = Redis.from_url(redis_url, socket_timeout=5)
        return BulkJobs(connection, job_timeout_s=60, result_ttl_s=3600, failure_ttl_s=3600, retries=0)

    first = up_once(1)
    try:
        job_id = jobs().submit(payload)
        wait_until(lambda: jobs().state(job_id).done, 30, "the bulk job")
        before = jobs().state(job_id)
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(60)
    assert not _port_open(redis_port)  # that Redis is gone; the next `up` starts another on the same folder

    second = up_once(2)
    try:
        after = jobs().state(job_id)
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(60) == 0
        for log in logs:
            log.close()
    assert after.status == "finished" and after.result == before.result is not None


def test_ctrl_c_while_the_private_redis_loads_stops_up_at_once(tmp_path) -> None:
    """A redis-server still loading its data (here: one that never answers) does not hold Ctrl-C up."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "redis-server").write_text("#!/bin/sh\nexec sleep 300\n")
    (fake / "redis-server").chmod(0o755)
    env = service_env(f"redis://127.0.0.1:{free_port()}/0", tmp_path, REDIS_DIR=str(tmp_path / "r"), SCORER="fake")
    env["PATH"] = f"{fake}:{env['PATH']}"
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "starting a private one" in log_path.read_text(), 60, "up to start its Redis")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0  # well before PRIVATE_REDIS_START_S
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "worker started" not in log_path.read_text()
