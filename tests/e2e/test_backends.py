"""RERANK_BACKEND=onnx / openvino through real worker and API processes: torch's scores (1e-4) for sync calls,
instructions, chunking and bulk jobs; the backend and its file in /health and /metrics; a second start loads
the exported file; a start that cannot export exits 3 with one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from rerank_contract.defaults import EXIT_STARTUP_FAILED
from rerank_contract.jobs import RerankPayload
from rerank_worker import jobs
from tests.support import minilm_shape
from tests.support.bulk_items import PASSAGES, items
from tests.support.long_documents import OTHERS, QUERY, long_document
from tests.support.ranking import sync_results
from tests.support.services import CLI, Stack, service_env
from tests.support.waiting import wait_until

INSTRUCTION = "Given a topic, find passages about it"


def predicted(cross_encoder, query: str, candidates: list[str], **kwargs) -> dict[int, float]:
    return {i: float(s) for i, s in enumerate(cross_encoder.predict([(query, c) for c in candidates], **kwargs))}


def assert_scores(results: list[dict], want: dict[int, float]) -> None:
    assert [r["index"] for r in results] == sorted(want, key=lambda i: -want[i])
    assert {r["index"]: r["score"] for r in results} == pytest.approx(want, abs=1e-4)


@pytest.fixture(scope="module")
def onnx_stack(redis_server, model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    redis_server.client().flushall()
    root = tmp_path_factory.mktemp("onnx-stack")
    folder = Path(shutil.copytree(model_dir, root / "tiny"))
    s = Stack(redis_server.url, folder, root, BACKEND="onnx", BULK_CHUNK_PAIRS="64")
    s.env["HOME"] = str(root / "home")
    s.folder = folder
    s.start_api()
    s.start_worker()
    yield s
    s.stop()


def test_sync_scores_and_instructions_equal_predict(onnx_stack: Stack, cross_encoder) -> None:
    for query in ("machine learning", "gardening"):
        assert_scores(sync_results(onnx_stack, query, PASSAGES), predicted(cross_encoder, query, PASSAGES))
    assert_scores(
        sync_results(onnx_stack, "cooking", PASSAGES, instruction=INSTRUCTION),
        predicted(cross_encoder, "cooking", PASSAGES, prompt=INSTRUCTION),
    )


def test_chunking_and_bulk_jobs_equal_torch(onnx_stack: Stack, reranker, cross_encoder) -> None:
    docs = [*OTHERS, long_document(reranker, 3)]
    want = jobs.score_payloads(reranker, [RerankPayload(query=QUERY, candidates=docs, max_chunks_per_doc=4)])
    assert_scores(sync_results(onnx_stack, QUERY, docs, max_chunks_per_doc=4), dict(enumerate(want.scores[0])))

    payload = items(30, 12)  # 360 pairs: six chunks of 64
    job = httpx.post(f"{onnx_stack.url}/v1/jobs", json={"items": payload}).json()
    url = f"{onnx_stack.url}{job['status_url']}"
    wait_until(lambda: httpx.get(url).json()["status"] == "finished", 60, "bulk job to finish")
    result = httpx.get(url).json()["result"]
    for item, got in zip(payload, result["items"], strict=True):
        assert_scores(got["results"], predicted(cross_encoder, item["query"], item["candidates"]))


def test_health_and_metrics_name_the_backend_and_its_file(onnx_stack: Stack) -> None:
    health = onnx_stack.health()
    exported = str(onnx_stack.folder.resolve() / "onnx" / "model_optimized.onnx")
    assert health["backend"] == "onnx"
    assert [(w["backend"], w["backend_file"], w["dtype"]) for w in health["workers"]] == [("onnx", exported, "float32")]
    metrics = httpx.get(f"{onnx_stack.url}/metrics").text
    line = next(line for line in metrics.splitlines() if line.startswith("rerank_worker_backend{"))
    assert 'backend="onnx"' in line and f'file="{exported}"' in line and line.endswith(" 1.0")
    assert f"backend onnx ({exported})" in onnx_stack.workers[0].log()  # the start line


def test_a_second_start_loads_the_exported_file(onnx_stack: Stack, cross_encoder) -> None:
    exported = onnx_stack.folder / "onnx" / "model_optimized.onnx"
    first = onnx_stack.workers[0]
    assert "exporting the model graph" in first.log()
    before = exported.stat().st_mtime_ns
    assert first.stop() == 0
    wait_until(lambda: onnx_stack.health().get("workers_alive") == 0, 30, "the first worker to leave")
    second = onnx_stack.start_worker()
    assert "exported before" in second.log() and "exporting the model graph" not in second.log()
    assert exported.stat().st_mtime_ns == before
    assert_scores(sync_results(onnx_stack, "finance", PASSAGES), predicted(cross_encoder, "finance", PASSAGES))


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_minilm_shaped_model_equals_predict(make_stack, model_dir: Path, tmp_path: Path, backend: str) -> None:
    from sentence_transformers import CrossEncoder

    folder = minilm_shape.build(tmp_path / "minilm", tokenizer_from=model_dir)
    stack = make_stack(BACKEND=backend)
    stack.env["RERANK_MODEL"] = str(folder)
    stack.start_api()
    stack.start_worker()
    assert stack.health()["backend"] == backend
    reference = CrossEncoder(str(folder), device="cpu")
    for query in ("machine learning", "astronomy"):
        assert_scores(sync_results(stack, query, PASSAGES), predicted(reference, query, PASSAGES))


def start_fails(env: dict[str, str]) -> str:
    done = subprocess.run([*CLI, "worker"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_STARTUP_FAILED, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_a_decoder_with_onnx_fails_the_start_in_one_line(redis_server, decoder_dirs: dict[str, Path]) -> None:
    line = start_fails(service_env(redis_server.url, decoder_dirs["hub"], BACKEND="onnx"))
    assert "cannot serve" in line and "decoder reranker" in line and "RERANK_BACKEND=torch" in line


def test_nowhere_to_write_the_export_fails_the_start_in_one_line(redis_server, model_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(model_dir, tmp_path / "tiny"))
    (folder / "onnx").write_text("a file where the export folder would go")
    (tmp_path / "home").write_text("not a folder")
    env = service_env(redis_server.url, folder, BACKEND="onnx")
    env["HOME"] = str(tmp_path / "home")
    line = start_fails(env)
    assert "cannot save the export" in line and "rerank-server model export" in line
