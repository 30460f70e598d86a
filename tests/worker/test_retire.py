"""A worker that retires after a job count or a memory limit: the decision, and under a real ``up``."""

from __future__ import annotations

import signal
import subprocess
import threading

import httpx
import pytest
from redis import Redis

from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.jobs import BulkPayload
from rerank_worker.retire import Retirement, resident_bytes
from tests.conftest import CLI, free_port, service_env, wait_until


def test_it_retires_past_either_limit_and_not_before() -> None:
    state = {"jobs": 0, "memory": 100 * 2**20}
    retirement = Retirement(max_jobs=3, max_memory_mb=200, jobs=lambda: state["jobs"], memory=lambda: state["memory"])
    assert retirement.enabled and retirement.reason() is None
    state["jobs"] = 3
    assert retirement.reason() == "3 jobs done (RERANK_WORKER_MAX_JOBS=3)"
    state["jobs"], state["memory"] = 0, 250 * 2**20
    assert retirement.reason() == "250 MiB in use (RERANK_WORKER_MAX_MEMORY_MB=200)"
    assert not Retirement(max_jobs=None, max_memory_mb=None, jobs=lambda: 10**9).enabled


def test_the_watcher_retires_once_and_stops_watching() -> None:
    state = {"jobs": 0}
    calls: list[int] = []
    retirement = Retirement(max_jobs=2, max_memory_mb=None, jobs=lambda: state["jobs"])
    watcher = threading.Thread(
        target=retirement.run, args=(0.01, threading.Event(), lambda: calls.append(state["jobs"]))
    )
    watcher.start()
    state["jobs"] = 2
    watcher.join(10)
    assert not watcher.is_alive() and calls == [2]


def test_resident_memory_is_measured() -> None:
    assert 10 * 2**20 < resident_bytes() < 64 * 2**30


@pytest.mark.e2e
def test_up_replaces_a_retiring_worker_and_every_accepted_job_finishes(tmp_path) -> None:
    api_port, redis_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = service_env(
        redis_url, tmp_path, PORT=str(api_port), REDIS_DIR=str(tmp_path / "r"), SCORER="fake", WORKER_MAX_JOBS="2"
    )
    log_path = tmp_path / "up.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([*CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(lambda: "is up at" in log_path.read_text(), 60, "rerank-server up to announce")
        jobs = BulkJobs(
            Redis.from_url(redis_url, socket_timeout=5),
            job_timeout_s=60,
            result_ttl_s=600,
            failure_ttl_s=600,
            retries=0,
        )
        submitted = []
        for round_ in range(1, 4):
            batch = [
                jobs.submit(BulkPayload.model_validate({"items": [{"query": "a b", "candidates": ["a", "b c"]}] * 20}))
                for _ in range(2)
            ]
            submitted += batch
            for job_id in batch:
                wait_until(lambda job_id=job_id: jobs.state(job_id).done, 60, f"bulk job {job_id}")
            retired = lambda n=round_: log_path.read_text().count("worker exited by itself") >= n  # noqa: E731
            wait_until(retired, 30, f"retirement {round_}")
        assert proc.poll() is None
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 60, "a fresh worker")
        answer = httpx.post(f"{url}/v1/rerank", json={"query": "a", "candidates": ["a b", "c"]}, timeout=30)
        assert answer.status_code == 200, answer.text
        states = [jobs.state(job_id) for job_id in submitted]
        assert [s.status for s in states] == ["finished"] * 6  # retries=0: an interrupted job would have failed
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = log_path.read_text()
    assert "worker retiring: " in output and "(RERANK_WORKER_MAX_JOBS=2)" in output
    assert "exited with code" not in output  # nothing crashed, nothing was counted as failing
