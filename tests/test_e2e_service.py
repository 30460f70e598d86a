"""End to end: real redis-server, real ``rerank-server worker`` and ``rerank-server api`` processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SEED_CANDIDATES, SEED_QUERY, Stack, wait_until
from tests.tiny_model import TOPICS

pytestmark = pytest.mark.e2e


def expected(cross_encoder, query: str, candidates: list[str]) -> list[tuple[int, float]]:
    scores = cross_encoder.predict([(query, c) for c in candidates])
    return sorted(((i, float(s)) for i, s in enumerate(scores)), key=lambda t: -t[1])


def assert_matches(body: dict, want: list[tuple[int, float]]) -> None:
    got = [(r["index"], r["score"]) for r in body["results"]]
    assert [i for i, _ in got] == [i for i, _ in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-5)


def test_seed_example_ranks_like_cross_encoder_predict(stack: Stack, cross_encoder, model_dir) -> None:
    response = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "model", "processing_time_ms", "tokens"}
    assert body["model"] == str(model_dir)
    assert body["processing_time_ms"] > 0
    assert_matches(body, expected(cross_encoder, SEED_QUERY, SEED_CANDIDATES))
    # the trained tiny model puts the two ML passages first, cooking last
    assert body["results"][-1]["index"] == 1
    assert all(0.0 <= r["score"] <= 1.0 for r in body["results"])
    for header in ("x-queue-time", "x-inference-time", "x-total-time"):
        assert float(response.headers[header]) >= 0


def test_auto_micro_batch_is_measured_at_start_and_reported(make_stack, cross_encoder) -> None:
    from rerank_worker.batch_tuning import SIZES

    stack = make_stack(BATCH_SIZE="auto")
    stack.start_api()
    worker = stack.start_worker()
    (info,) = stack.health()["workers"]
    assert info["batch_size"] in SIZES
    assert f"micro-batch {info['batch_size']} (pairs/s by size: 8: " in worker.log()
    docs = [doc for topic in TOPICS.values() for doc in topic]
    candidates = [f"{docs[i % len(docs)]} {i}" for i in range(40)]  # several micro-batches
    assert_matches(
        stack.rerank("machine learning", candidates).json(), expected(cross_encoder, "machine learning", candidates)
    )


def test_health_reports_live_worker_device_and_model(stack: Stack, model_dir) -> None:
    response = httpx.get(f"{stack.url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["device"] == "cpu"
    assert body["model"] == str(model_dir)
    assert body["redis"] == "ok"
    assert body["workers_alive"] == 1
    assert body["queue_depth"] == {"rerank": 0, "rerank-bulk": 0}
    assert body["workers"][0]["pid"] == stack.workers[0].proc.pid
    assert body["workers"][0]["batch_size"] == 16  # as the suite sets it


def test_fifty_concurrent_requests_all_succeed(stack: Stack, cross_encoder) -> None:
    topics = list(TOPICS)
    passages = [p for docs in TOPICS.values() for p in docs]
    requests = [(topics[i % len(topics)], passages[i % 7 :] + passages[: i % 7]) for i in range(50)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/v1/rerank", json={"query": q, "candidates": c}) for q, c in requests)
            )

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 50
    for (query, candidates), response in zip(requests, responses, strict=True):
        assert_matches(response.json(), expected(cross_encoder, query, candidates))


def test_worker_keeps_model_resident_across_requests(stack: Stack) -> None:
    """``model_loads`` counts every CrossEncoder the worker process has built (``Reranker.loads``), so a worker
    that loaded the model per job, or restarted, would show it; the process must be the same one, too."""
    time.sleep(1.5)  # a fresh heartbeat, counting the earlier tests' jobs
    first = stack.health()["workers"][0]
    before = first["jobs_done"]
    for _ in range(5):
        assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200
    wait_until(lambda: stack.health()["workers"][0]["jobs_done"] >= before + 5, 5, "heartbeat with new counts")
    time.sleep(1.5)  # one more heartbeat: nothing else ran
    assert stack.health()["workers"][0]["jobs_done"] == before + 5  # one job per call, not more
    worker = stack.health()["workers"][0]
    assert worker["model_loads"] == 1
    assert (worker["pid"], worker["started_at"], worker["name"]) == (first["pid"], first["started_at"], first["name"])
    assert stack.workers[0].log().count("model loaded:") == 1


def test_empty_candidates_answer_at_once_without_a_job(stack: Stack, redis_server) -> None:
    client = redis_server.client()
    before = client.keys("rq:job:*")
    response = stack.rerank(SEED_QUERY, [])
    assert response.status_code == 200
    assert response.json()["results"] == []
    assert client.keys("rq:job:*") == before


def test_api_process_never_loads_torch(stack: Stack) -> None:
    stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    maps = Path(f"/proc/{stack.api.proc.pid}/maps").read_text()
    assert "libtorch" not in maps
    worker_maps = Path(f"/proc/{stack.workers[0].proc.pid}/maps").read_text()
    assert "libtorch" in worker_maps  # the check can see torch where it is loaded


def test_stopped_worker_gives_503_fast(make_stack) -> None:
    stack: Stack = make_stack()
    stack.start_api()
    worker = stack.start_worker()
    assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200
    worker.signal(signal.SIGTERM)
    worker.proc.wait(30)
    started = time.monotonic()
    response = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.json()["error_type"] == "no_worker"
    assert httpx.get(f"{stack.url}/health").json()["status"] == "no_worker"


def test_killed_worker_fails_waiting_request_within_seconds(make_stack) -> None:
    """A request queued when the only worker dies is answered 503 within the heartbeat TTL, not the timeout."""
    stack: Stack = make_stack(REQUEST_TIMEOUT_S="60")
    stack.start_api()
    worker = stack.start_worker()
    worker.signal(signal.SIGSTOP)  # frozen: the job waits in the queue, then the heartbeat lapses
    try:
        started = time.monotonic()
        response = stack.rerank(SEED_QUERY, SEED_CANDIDATES, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        worker.signal(signal.SIGKILL)
    assert response.status_code == 503
    assert response.json()["error_type"] in {"no_worker", "worker_lost"}
    assert elapsed < 6


def test_timeout_gives_504_and_recovers(make_stack) -> None:
    stack: Stack = make_stack(REQUEST_TIMEOUT_S="1.5", HEARTBEAT_TTL_S="30")
    stack.start_api()
    worker = stack.start_worker()
    with worker.frozen():
        response = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    assert response.status_code == 504
    assert response.json()["error_type"] == "timeout"
    assert stack.rerank(SEED_QUERY, SEED_CANDIDATES).status_code == 200


def test_redis_unreachable_gives_503(make_stack) -> None:
    stack: Stack = make_stack()
    stack.env["RERANK_REDIS_URL"] = "redis://127.0.0.1:1/0"
    stack.start_api()
    response = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    assert response.status_code == 503
    assert response.json()["error_type"] == "queue_unavailable"
    health = httpx.get(f"{stack.url}/health")
    assert health.status_code == 503
    assert health.json()["redis"] == "unreachable"


def test_seed_uvicorn_command_serves_the_app(stack: Stack, tmp_path) -> None:
    """``uvicorn rerank_server:app`` from the original README still works."""
    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "rerank_server:app", "--host", "127.0.0.1", "--port", str(port)],
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, "uvicorn rerank_server:app")
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/rerank", json={"query": SEED_QUERY, "candidates": SEED_CANDIDATES}
        )
        assert response.status_code == 200
        assert response.json()["results"][-1]["index"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
