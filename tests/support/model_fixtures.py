"""The models every layer scores with: the trained tiny cross-encoder and the tiny decoders (a pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CrossEncoder trained to rank each topic's passages first."""
    from tests.support import tiny_model

    return tiny_model.build(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def cross_encoder(model_dir: Path):
    """The same model loaded in the test process: the reference for every score check."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def reranker(model_dir: Path):
    """The model runtime in this process, as a worker holds it, for in-process worker tests."""
    from rerank_worker.runtime import Reranker

    return Reranker(str(model_dir), device="cpu", batch_size=16, max_length=None)


@pytest.fixture(scope="session")
def decoder_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Qwen3-Reranker-style decoder reranker in both folder layouts: ``hub`` (plain transformers, as the
    hub ships it) and ``st`` (saved by sentence-transformers, activation Identity). Random weights."""
    from tests.support import tiny_decoder

    root = tmp_path_factory.mktemp("decoders")
    hub = tiny_decoder.build(root / "hub")
    return {"hub": hub, "st": tiny_decoder.build_st(hub, root / "st")}
