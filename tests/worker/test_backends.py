"""RERANK_BACKEND in one process: onnx and openvino give torch's scores (1e-4) on the tiny model and on a
MiniLM-shaped one, export once, follow a changed model, fall back to ~/.rerank-server/exports, and fail a start
they cannot serve in one line that names the way out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rerank_contract.jobs import RerankPayload, ScoreMode
from rerank_worker import backends, jobs
from rerank_worker.model_source import BackendUnavailable
from tests.support import minilm_shape
from tests.support.long_documents import OTHERS, QUERY, long_document

REQUESTS = [
    ("machine learning", ["deep learning", "cooking recipes", "black holes", "gradient descent training"]),
    ("cooking", ["pasta sauce", "stock market", "baking bread kitchen knives"]),
]


def load(folder: Path, **options):
    from rerank_worker.runtime import Reranker

    return Reranker(str(folder), device="cpu", batch_size=16, max_length=None, **options)


def assert_same_scores(got, want) -> None:
    assert got.tokens == want.tokens
    for g, w in zip(got.scores, want.scores, strict=True):
        assert g == pytest.approx(w, abs=1e-4)


@pytest.fixture(scope="module")
def own_copy(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model in a folder of this module's own, so its exports land nowhere else."""
    return Path(shutil.copytree(model_dir, tmp_path_factory.mktemp("backends") / "tiny"))


@pytest.fixture(scope="module")
def onnx_reranker(own_copy: Path):
    return load(own_copy, backend="onnx")


@pytest.mark.parametrize("mode", [ScoreMode.ACTIVATED, ScoreMode.RAW])
def test_onnx_scores_and_tokens_equal_torch(onnx_reranker, reranker, mode: ScoreMode) -> None:
    want = reranker.score_many(REQUESTS, mode)
    assert_same_scores(onnx_reranker.score_many(REQUESTS, mode), want)
    instructed = "Given a topic, find passages about it"
    assert_same_scores(
        onnx_reranker.score_many(REQUESTS, mode, instructed), reranker.score_many(REQUESTS, mode, instructed)
    )


def test_onnx_chunking_and_bulk_jobs_equal_torch(onnx_reranker, reranker) -> None:
    payload = RerankPayload(query=QUERY, candidates=[*OTHERS, long_document(reranker, 3)], max_chunks_per_doc=4)
    assert onnx_reranker.prepare(payload) == reranker.prepare(payload)
    got = jobs.score_payloads(onnx_reranker, [payload])
    want = jobs.score_payloads(reranker, [payload])
    assert got.scores[0] == pytest.approx(want.scores[0], abs=1e-4)
    assert max(range(4), key=lambda i: got.scores[0][i]) == 3  # the relevant end of the long document was read


def test_onnx_runs_the_exported_file_and_names_it(onnx_reranker, own_copy: Path) -> None:
    assert onnx_reranker.backend == "onnx"
    assert onnx_reranker.backend_file == str(own_copy.resolve() / "onnx" / "model_optimized.onnx")
    assert onnx_reranker.dtype == "float32"
    assert str(onnx_reranker.model.device) == "meta"  # the torch weights were given back: only the file runs


def test_second_start_loads_the_file_and_a_changed_model_is_exported_again(
    onnx_reranker, own_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exported = Path(onnx_reranker.backend_file)
    before = exported.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="rerank_worker"):
        again = load(own_copy, backend="onnx")
    assert again.backend_file == str(exported)
    assert exported.stat().st_mtime_ns == before
    assert "exported before" in caplog.text and "exporting the model graph" not in caplog.text

    weights = own_copy / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # a new version
    caplog.clear()
    with caplog.at_level("INFO", logger="rerank_worker"):
        load(own_copy, backend="onnx")
    assert "exporting the model graph" in caplog.text
    assert exported.stat().st_mtime_ns != before


def test_int8_variant_is_its_own_file_and_keeps_the_ranking(onnx_reranker, reranker, own_copy: Path) -> None:
    int8 = load(own_copy, backend="onnx", backend_variant="int8")
    assert int8.backend_file == str(own_copy.resolve() / "onnx" / "model_int8.onnx")
    assert int8.dtype == "int8"
    got, want = int8.score_many(REQUESTS, ScoreMode.ACTIVATED), reranker.score_many(REQUESTS, ScoreMode.ACTIVATED)
    for g, w in zip(got.scores, want.scores, strict=True):
        assert max(range(len(g)), key=g.__getitem__) == max(range(len(w)), key=w.__getitem__)
        assert g != pytest.approx(w, abs=1e-7)  # a different computation, not the float file again


def test_openvino_scores_equal_torch(own_copy: Path, reranker) -> None:
    openvino = load(own_copy, backend="openvino")
    assert openvino.backend_file == str(own_copy.resolve() / "openvino" / "openvino_model.xml")
    for mode in ScoreMode:
        assert_same_scores(openvino.score_many(REQUESTS, mode), reranker.score_many(REQUESTS, mode))
    with pytest.raises(BackendUnavailable, match=r"no int8 variant.*RERANK_BACKEND=onnx"):
        load(own_copy, backend="openvino", backend_variant="int8")


@pytest.fixture(scope="module")
def minilm_shaped(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return minilm_shape.build(tmp_path_factory.mktemp("minilm-shaped"), tokenizer_from=model_dir)


def test_minilm_shaped_onnx_equals_torch(minilm_shaped: Path) -> None:
    torch_scores = load(minilm_shaped).score_many(REQUESTS, ScoreMode.RAW)
    onnx = load(minilm_shaped, backend="onnx")
    assert_same_scores(onnx.score_many(REQUESTS, ScoreMode.RAW), torch_scores)


def test_decoder_with_onnx_fails_in_one_line_naming_torch(decoder_dirs: dict[str, Path]) -> None:
    for folder in decoder_dirs.values():
        with pytest.raises(BackendUnavailable) as raised:
            load(folder, backend="onnx")
        message = str(raised.value)
        assert "decoder reranker" in message and "RERANK_BACKEND=torch" in message and "\n" not in message
    assert not (decoder_dirs["hub"] / "onnx").exists()  # nothing half-exported left behind


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    with pytest.raises(BackendUnavailable, match=r"needs onnxruntime.*rerank-server\[worker,onnx\]"):
        backends.require("onnx")


def test_export_goes_home_when_the_folder_cannot_be_written_and_fails_when_neither_can(
    own_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(shutil.copytree(own_copy, tmp_path / "readonly", ignore=shutil.ignore_patterns("onnx", "openvino")))
    (folder / "onnx").write_text("a file where the export folder would go")  # unwritable even for root
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_copy = load(folder, backend="onnx")
    assert Path(home_copy.backend_file).is_relative_to(tmp_path / "home" / ".rerank-server" / "exports")

    (tmp_path / "blocked").write_text("not a folder")
    monkeypatch.setenv("HOME", str(tmp_path / "blocked"))
    with pytest.raises(BackendUnavailable) as raised:
        load(folder, backend="onnx")
    message = str(raised.value)
    assert "cannot save the export" in message and "rerank-server model export" in message
    assert "RERANK_BACKEND=torch" in message and "\n" not in message


def test_onnx_refuses_a_gpu_or_half_precision_start(own_copy: Path) -> None:
    with pytest.raises(BackendUnavailable, match="RERANK_DTYPE=auto"):
        load(own_copy, backend="onnx", dtype="bfloat16")
