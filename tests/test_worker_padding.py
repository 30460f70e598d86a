"""Bucketed padding (forced on, on CPU): the same scores as unpadded batches, and only the buckets' shapes."""

from __future__ import annotations

import random

import pytest
import torch

from rerank_worker import padding
from tests.tiny_model import TOPICS

WORDS = [w for docs in TOPICS.values() for d in docs for w in d.split()]


def test_buckets_are_few_grow_by_half_steps_and_end_at_the_limit() -> None:
    assert padding.buckets(512) == [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
    assert padding.buckets(100) == [16, 24, 32, 48, 64, 96, 100]
    assert len(padding.buckets(8192)) == 19 and padding.buckets(8192)[-1] == 8192
    sizes = padding.buckets(512)
    assert [padding.bucket_for(n, sizes) for n in (1, 16, 17, 25, 385, 512)] == [16, 16, 24, 32, 512, 512]


def test_padding_goes_on_the_tokenizers_side_with_the_pad_token_and_mask_zero() -> None:
    features = {
        "input_ids": torch.tensor([[101, 7, 102], [101, 102, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
        "token_type_ids": torch.tensor([[0, 1, 1], [0, 1, 0]]),
        "other": "kept",
    }
    right = padding.pad(features, 5, pad_token_id=0, left=False)
    assert right["input_ids"].tolist() == [[101, 7, 102, 0, 0], [101, 102, 0, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert right["token_type_ids"].tolist() == [[0, 1, 1, 0, 0], [0, 1, 0, 0, 0]]
    assert right["other"] == "kept"
    left = padding.pad(features, 4, pad_token_id=9, left=True)
    assert left["input_ids"].tolist() == [[9, 101, 7, 102], [9, 101, 102, 0]]
    assert left["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 1, 1, 0]]
    assert padding.pad(features, 3, pad_token_id=0, left=False) is features


def test_auto_is_on_for_mps_only() -> None:
    assert [padding.wanted("auto", d) for d in ("mps", "mps:0", "cuda:0", "cpu")] == [True, True, False, False]
    assert padding.wanted("on", "cpu") and not padding.wanted("off", "mps")


def _shapes(model) -> list[tuple[int, ...]]:
    """Every input_ids shape the model's forward pass sees from now on."""
    seen: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0]["input_ids"].shape)))
    return seen


def test_bucketed_batches_give_the_same_scores_as_unpadded_ones(model_dir) -> None:
    from sentence_transformers import CrossEncoder

    plain = CrossEncoder(str(model_dir), device="cpu")
    bucketed = CrossEncoder(str(model_dir), device="cpu")
    sizes = padding.install(bucketed, int(bucketed.max_seq_length))
    rng = random.Random(7)
    pairs = [(rng.choice(list(TOPICS)), " ".join(rng.choices(WORDS, k=rng.randint(1, 90)))) for _ in range(120)]
    plain_shapes, bucketed_shapes = _shapes(plain), _shapes(bucketed)

    want = plain.predict(pairs, batch_size=4, show_progress_bar=False)
    got = bucketed.predict(pairs, batch_size=4, show_progress_bar=False)

    assert got.dtype == want.dtype == "float32"
    assert got.tolist() == pytest.approx(want.tolist(), abs=1e-5)
    assert len(bucketed_shapes) == len(plain_shapes) == 30
    assert {length for _, length in bucketed_shapes} <= set(sizes)
    assert len({length for _, length in plain_shapes}) > len({length for _, length in bucketed_shapes})


def test_the_setting_turns_it_on_in_the_loaded_scorer(model_dir) -> None:
    from rerank_contract.settings import Settings
    from rerank_worker import model_loader

    on = model_loader.load(Settings(model=str(model_dir), device="cpu", bucket_padding="on"))
    off = model_loader.load(Settings(model=str(model_dir), device="cpu"))  # auto, and this is cpu
    assert on.model.preprocess.__name__ == "bucketed"
    assert off.model.preprocess.__name__ != "bucketed"
    assert on.score("machine learning", ["deep learning", "cooking recipes"]) == pytest.approx(
        off.score("machine learning", ["deep learning", "cooking recipes"]), abs=1e-5
    )
