"""Bucketed padding: every micro-batch is padded to one of a few sequence lengths.

``CrossEncoder.predict`` pads each micro-batch to its longest pair, so a worker that runs for months
sees nearly every length from 1 to ``max_length``, each a new input shape. On MPS, PyTorch keeps a
compiled graph per shape and never lets go of them (pytorch/pytorch#132596, #181213; emptying the
allocator's cache does not release them), so memory grows for as long as new shapes come. Padded up to
the next bucket, lengths take only ``len(buckets(max_length))`` values (a few dozen at most), and the
batch dimension is at most the batch size: the set of shapes, and the memory they hold, stays bounded.

The extra positions are padding with attention mask 0, so a pair's score does not change (the tests
check it to 1e-5 in float32); the cost is some wasted compute, at most a third of a batch's length.
Imports torch: installed by the model loader on a loaded model only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

#: The smallest bucket: shorter pairs are rare in reranking, and padding them to 16 tokens costs nothing.
SMALLEST = 16


def buckets(max_length: int, smallest: int = SMALLEST) -> list[int]:
    """Lengths 16, 24, 32, 48, 64, 96, ... (powers of two and their midpoints) up to ``max_length``, which is one."""
    out: list[int] = []
    size = smallest
    while size < max_length:
        out.append(size)
        if size * 3 // 2 < max_length:
            out.append(size * 3 // 2)
        size *= 2
    out.append(max_length)
    return out


def bucket_for(length: int, sizes: list[int]) -> int:
    """The smallest bucket that holds ``length`` (never less than ``length``)."""
    for size in sizes:
        if size >= length:
            return size
    return length


def pad(features: dict[str, Any], target: int, *, pad_token_id: int, left: bool) -> dict[str, Any]:
    """``features`` with every ``(batch, seq)`` tensor padded to ``target`` positions, on the tokenizer's side.

    ``input_ids`` get the pad token, every other sequence tensor (``attention_mask``, ``token_type_ids``) 0.
    """
    input_ids = features.get("input_ids")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        return features
    length = input_ids.shape[1]
    if target <= length:
        return features
    out = dict(features)
    for name, value in features.items():
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == input_ids.shape:
            fill = pad_token_id if name == "input_ids" else 0
            extra = value.new_full((value.shape[0], target - length), fill)
            out[name] = torch.cat([extra, value] if left else [value, extra], dim=1)
    return out


def wanted(setting: str, device: str) -> bool:
    """``RERANK_BUCKET_PADDING``: ``auto`` is on for MPS only (CUDA and CPU do not keep a graph per shape)."""
    return setting == "on" or (setting == "auto" and device.startswith("mps"))


def install(model: Any, max_length: int) -> list[int]:
    """Make ``model`` (a CrossEncoder) pad every micro-batch to a bucket; returns the buckets.

    The hook is the model's ``preprocess``, which ``predict`` calls once per micro-batch, so
    sentence-transformers' own length sorting, truncation and score order stay as they are.
    """
    tokenizer = model.tokenizer
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    sizes = buckets(max_length)
    preprocess: Callable[..., dict[str, Any]] = model.preprocess

    def bucketed(*args: Any, **kwargs: Any) -> dict[str, Any]:
        features = preprocess(*args, **kwargs)
        input_ids = features.get("input_ids")
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            return features
        return pad(features, bucket_for(input_ids.shape[1], sizes), pad_token_id=pad_token_id, left=left)

    model.preprocess = bucketed
    log.info("bucketed padding on: %d sequence lengths up to %d", len(sizes), max_length)
    return sizes
