"""The micro-batch size measured at start-up (``RERANK_BATCH_SIZE=auto``, :mod:`rerank_worker.batch_tuning`)."""

from __future__ import annotations

import pytest

from rerank_worker import batch_tuning


def rates(table: dict[int, float], took: float = 0.1):
    tried: list[int] = []

    def rate(size: int) -> tuple[float, float]:
        tried.append(size)
        return table[size], took

    return rate, tried


def test_the_smallest_size_near_the_best_rate_wins_and_the_search_stops_past_the_peak() -> None:
    rate, tried = rates({8: 52.0, 16: 58.0, 32: 57.0, 64: 39.0, 128: 80.0, 256: 90.0})  # a 2-core CPU
    choice = batch_tuning.choose(rate)
    assert choice.size == 16  # 32 is within 3% of 16, and larger
    assert tried == [8, 16, 32, 64]  # 64 fell past the peak: 128 and 256 are never tried
    assert choice.describe() == "micro-batch 16 (pairs/s by size: 8: 52, 16: 58, 32: 57, 64: 39)"


def test_a_gpu_keeps_growing_to_the_largest_size() -> None:
    table = {8: 100.0, 16: 200.0, 32: 390.0, 64: 700.0, 128: 1100.0, 256: 1500.0}
    rate, tried = rates(table)
    assert batch_tuning.choose(rate).size == 256 and tried == list(table)


def test_a_slow_trial_ends_the_search() -> None:
    rate, tried = rates({8: 5.0, 16: 6.0, 32: 7.0, 64: 8.0, 128: 9.0, 256: 10.0}, took=4.0)
    assert batch_tuning.choose(rate).size == 8 and tried == [8]


def test_the_synthetic_pairs_have_typical_lengths() -> None:
    pairs = batch_tuning.pairs(10)
    assert len(pairs) == 10 and len({p for _, p in pairs}) > 1
    assert all(40 <= len(passage.split()) <= 120 for _, passage in pairs)


def test_auto_measures_with_the_real_model_and_a_given_size_is_kept(model_dir) -> None:
    from rerank_contract.jobs import ScoreMode
    from rerank_worker.runtime import Reranker

    auto = Reranker(str(model_dir), device="cpu", batch_size=None, max_length=None)
    line = auto.tune()
    assert line is not None and line.startswith(f"micro-batch {auto.batch_size} ")
    assert auto.batch_size in batch_tuning.SIZES and auto.tune() is None  # measured once
    fixed = Reranker(str(model_dir), device="cpu", batch_size=5, max_length=None)
    assert fixed.tune() is None and fixed.batch_size == 5
    candidates = [p for _, p in batch_tuning.pairs(12)]
    assert auto.score("q", candidates, ScoreMode.RAW) == pytest.approx(fixed.score("q", candidates, ScoreMode.RAW))


def test_a_cpu_call_is_cut_into_several_micro_batches_once_it_is_large_enough(model_dir) -> None:
    """Small sorted pools pad less in more, smaller micro-batches; a single request stays one forward pass."""
    from rerank_worker.runtime import Reranker

    reranker = Reranker(str(model_dir), device="cpu", batch_size=64, max_length=None)
    assert reranker.micro_batch(10) == 64  # one request: one forward pass
    assert reranker.micro_batch(63) == 64
    assert reranker.micro_batch(120) == 30  # four micro-batches
    assert reranker.micro_batch(512) == 64  # a large batch: the batch size
    reranker.device = "cuda:0"
    assert reranker.micro_batch(120) == 64  # a GPU: unchanged
