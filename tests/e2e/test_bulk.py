"""Bulk jobs end to end: real redis-server, worker and API processes; direct RQ clients; the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Queue

from rerank_contract.jobs import BULK_QUEUE, SERIALIZER, BulkResult, RerankPayload
from rerank_server.client import HttpClient
from rerank_worker import jobs
from tests.support.bulk_items import items
from tests.support.in_process_worker import fetch
from tests.support.ranking import sync_results
from tests.support.services import CLI, Stack
from tests.support.waiting import wait_until

README = (Path(__file__).parents[2] / "docs" / "bulk.md").read_text()  # its examples run here


def readme_example(marker: str) -> str:
    after = README.split(f"<!-- {marker}", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.DOTALL).group(1)


def readme_bulk_example() -> str:
    return readme_example("bulk-example")


def scores(results: list[dict]) -> dict[int, float]:
    return {r["index"]: r["score"] for r in results}


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert [r["index"] for r in got] == [r["index"] for r in want]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-5)


@pytest.fixture(scope="module")
def bulk_stack(redis_server, model_dir, tmp_path_factory) -> Stack:
    redis_server.client().flushall()
    s = Stack(redis_server.url, model_dir, tmp_path_factory.mktemp("bulk-logs"), BULK_CHUNK_PAIRS="64")
    s.start_api()
    s.start_worker()
    yield s
    s.stop()


def test_readme_snippet_runs_without_this_project_and_matches_v1_rerank(bulk_stack: Stack) -> None:
    check = (
        "\nimport json, sys\n"
        "print('RESULT=' + json.dumps(job.return_value()))\n"
        "print('MODULES=' + json.dumps(sorted(sys.modules)))\n"
    )
    env = {**bulk_stack.env}
    done = subprocess.run(
        [sys.executable, "-I", "-c", readme_bulk_example() + check],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    out = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith(("RESULT=", "MODULES=")))
    modules = json.loads(out["MODULES"])
    assert not [m for m in modules if m.split(".")[0] in {"rerank_server", "rerank_api", "rerank_worker", "torch"}]
    result = json.loads(out["RESULT"])
    assert [item["id"] for item in result["items"]] == ["q1", "q2"]
    assert_same(
        result["items"][0]["results"],
        sync_results(bulk_stack, "machine learning", ["deep learning", "cooking recipes", "neural networks"]),
    )
    assert_same(result["items"][1]["results"], sync_results(bulk_stack, "astronomy", ["pasta sauce", "black holes"]))


def test_readme_client_example_runs(bulk_stack: Stack) -> None:
    code = readme_example("client-example")
    code = code.replace("http://127.0.0.1:8080", bulk_stack.url).replace(
        "redis://127.0.0.1:6379/0", bulk_stack.redis_url
    )
    done = subprocess.run([sys.executable, "-c", code], env=bulk_stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "BulkItemResult(id='q2', results=[ScoredIndex(index=0" in done.stdout  # black holes first


def test_http_bulk_job_reports_progress_and_results_equal_to_sync(bulk_stack: Stack) -> None:
    payload = items(60, 20)  # 1200 pairs, 19 chunks
    accepted = httpx.post(f"{bulk_stack.url}/v1/jobs", json={"items": payload})
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["status"] == "queued"
    assert accepted.headers["location"] == body["status_url"] == f"/v1/jobs/{body['id']}"

    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = httpx.get(f"{bulk_stack.url}{body['status_url']}").json()
        if state["progress"]:
            seen.append(state["progress"]["done"])
        if state["status"] in ("finished", "failed", "canceled"):
            break
        time.sleep(0.02)  # the sampling interval of the progress seen, not a wait
    assert state["status"] == "finished", state
    assert state["progress"] == {"done": 1200, "total": 1200}
    assert seen == sorted(seen)
    assert [i["id"] for i in state["result"]["items"]] == [i["id"] for i in payload]
    for item, got in list(zip(payload, state["result"]["items"], strict=True))[:5]:
        assert_same(got["results"], sync_results(bulk_stack, item["query"], item["candidates"]))
    conflict = httpx.delete(f"{bulk_stack.url}{body['status_url']}")
    assert conflict.status_code == 409
    assert conflict.json()["error_type"] == "conflict"


def test_sync_requests_are_served_while_a_bulk_job_runs(bulk_stack: Stack) -> None:
    job_id = httpx.post(f"{bulk_stack.url}/v1/jobs", json={"items": items(400, 50)}).json()["id"]  # 20,000 pairs
    url = f"{bulk_stack.url}/v1/jobs/{job_id}"
    wait_until(lambda: httpx.get(url).json()["status"] == "started", 30, "bulk job to start")
    try:
        for _ in range(3):
            assert bulk_stack.rerank("cooking", ["pasta sauce", "black holes"]).status_code == 200
        state = httpx.get(url).json()
        assert state["status"] == "started"  # the sync calls did not wait for the bulk job
        assert state["progress"]["done"] < state["progress"]["total"]
    finally:
        cancelled = httpx.delete(url)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "canceled"
    # the worker stops it after the chunk in hand and records where it stopped
    wait_until(lambda: "cancelled after" in (httpx.get(url).json()["error"] or ""), 30, "bulk job to stop")
    final = httpx.get(url).json()
    assert final["status"] == "canceled"
    assert final["progress"]["done"] < 20_000
    assert bulk_stack.health()["workers"][0]["jobs_done"] > 0


def test_unknown_and_malformed_jobs(bulk_stack: Stack, redis_server) -> None:
    missing = httpx.get(f"{bulk_stack.url}/v1/jobs/no-such-job")
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"
    assert httpx.delete(f"{bulk_stack.url}/v1/jobs/bad%20id").status_code == 404
    jobs_before = set(redis_server.client().keys("rq:job:*"))
    bad = httpx.post(f"{bulk_stack.url}/v1/jobs", json={"items": [{"query": "q", "candidates": "x"}]})
    assert bad.status_code == 422
    assert "items.0.candidates" in bad.json()["error"]
    assert set(redis_server.client().keys("rq:job:*")) <= jobs_before  # nothing was enqueued


def test_queued_job_can_be_cancelled_and_never_runs(make_stack) -> None:
    stack: Stack = make_stack()
    stack.start_api()  # no worker: the job stays queued
    job_id = httpx.post(f"{stack.url}/v1/jobs", json={"items": items(2, 2)}).json()["id"]
    cancelled = httpx.delete(f"{stack.url}/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "canceled"
    stack.start_worker()
    assert stack.rerank("finance", ["bank loans"]).status_code == 200  # the worker is busy with nothing else
    assert httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()["status"] == "canceled"
    wait_until(lambda: stack.health()["workers"][0]["jobs_done"] == 1, 5, "heartbeat with the sync job counted")
    assert stack.health()["workers"][0]["jobs_failed"] == 0


@pytest.mark.parametrize("via", ["http", "redis"])
def test_cli_bulk_writes_results_in_input_order(bulk_stack: Stack, tmp_path: Path, via: str) -> None:
    payload = items(25, 4)
    payload[3].pop("id")
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(json.dumps(i) for i in payload) + "\n")
    target = tmp_path / "results.jsonl"
    args = [*CLI, "bulk", str(source), "-o", str(target), "--items-per-job", "10", "--via", via]
    if via == "http":
        args += ["--url", bulk_stack.url]
    done = subprocess.run(args, env=bulk_stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "submitted 25 items as 3 job(s)" in done.stderr
    assert "100 pairs 100%" in done.stderr
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in rows] == [i.get("id") for i in payload]
    for item, row in list(zip(payload, rows, strict=True))[:4]:
        assert_same(row["results"], sync_results(bulk_stack, item["query"], item["candidates"]))


#: Cooking words past the tiny model's 64 tokens, then what the query is about: only chunking reads it.
LONG = " ".join(["cooking recipes baking bread kitchen knives pasta sauce"] * 10) + " deep learning neural networks"
INSTRUCTION = "Find passages about it:"


def finished_bulk_jobs(stack: Stack) -> dict[str, BulkResult]:
    """Every finished bulk job's result, by job id, read through RQ's own registry."""
    queue = Queue(BULK_QUEUE, connection=Redis.from_url(stack.redis_url), serializer=SERIALIZER)
    ids = queue.finished_job_registry.get_job_ids()
    return {job_id: BulkResult.model_validate(fetch(queue, job_id).return_value()) for job_id in ids}


@pytest.mark.parametrize("via", ["http", "redis"])
def test_cli_bulk_passes_max_chunks_per_doc_and_instruction(
    bulk_stack: Stack, reranker, tmp_path: Path, via: str
) -> None:
    payload = [
        {"id": "long", "query": "machine learning", "candidates": ["stock market", LONG, "pasta sauce", "garden soil"]},
        {"id": "short", "query": "astronomy", "candidates": ["pasta sauce", "black holes", "planets and stars"]},
    ]
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(json.dumps(i) for i in payload) + "\n")
    target = tmp_path / "results.jsonl"
    args = [*CLI, "bulk", str(source), "-o", str(target), "--via", via, "--items-per-job", "1"]
    args += ["--max-chunks-per-doc", "3", "--instruction", INSTRUCTION]
    if via == "http":
        args += ["--url", bulk_stack.url]
    before = set(finished_bulk_jobs(bulk_stack))
    done = subprocess.run(args, env=bulk_stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HTTP Request" not in done.stderr  # httpx's line per poll would break the progress bar
    rows = {row["id"]: row["results"] for row in map(json.loads, target.read_text().splitlines())}

    options = {"max_chunks_per_doc": 3, "instruction": INSTRUCTION}
    for item in payload:
        assert_same(rows[item["id"]], sync_results(bulk_stack, item["query"], item["candidates"], **options))
    # Each flag changes what the worker reads, whatever the toy model makes of it: the tokens each job put through
    # the model are those of the in-process runtime given both flags, and neither flag alone gives that count.
    tokens = {r.items[0].id: r.tokens for job_id, r in finished_bulk_jobs(bulk_stack).items() if job_id not in before}

    def read(item: dict, **given: object) -> int:
        query, candidates = item["query"], item["candidates"]
        return jobs.score_payloads(reranker, [RerankPayload(query=query, candidates=candidates, **given)]).tokens[0]

    assert tokens == {item["id"]: read(item, **options) for item in payload}
    assert read(payload[0], instruction=INSTRUCTION) != tokens["long"]  # the long candidate is chunked
    assert read(payload[0], max_chunks_per_doc=3) != tokens["long"]  # and the query carries the instruction
    if via == "http":  # the sync client takes the same options
        api = HttpClient(bulk_stack.url)
        got = [r.model_dump() for r in api.rerank(payload[0]["query"], payload[0]["candidates"], **options)]
        api.close()
        assert_same(got, rows["long"])


def test_cli_bulk_reports_bad_input_line(bulk_stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text('{"query": "q", "candidates": ["a"]}\n{"query": "q"}\n')
    done = subprocess.run(
        [*CLI, "bulk", str(source), "-o", str(tmp_path / "out.jsonl"), "--url", bulk_stack.url],
        env=bulk_stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "items.jsonl:2: candidates: Field required" in done.stderr
