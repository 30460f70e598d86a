"""``up`` replaces a worker that retires after its job count, and every job it accepted finishes."""

from __future__ import annotations

import signal
import subprocess

import httpx
from redis import Redis

from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.jobs import BulkPayload
from tests.support.ports import free_port
from tests.support.services import CLI, service_env
from tests.support.waiting import wait_until


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
