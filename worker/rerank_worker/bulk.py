"""Bulk scoring: many (query, candidates) items scored in chunks of pairs.

Chunking keeps the worker's memory bounded whatever the job's size, gives progress to report, and
gives the worker a point between chunks to serve waiting sync requests and to notice that the job
was cancelled (see ``RerankWorker.between_chunks``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rerank_contract.jobs import BulkPayload, Progress
from rerank_worker import runtime

#: A slice ``candidates[start:end]`` of item ``item``.
Slice = tuple[int, int, int]


@dataclass(frozen=True)
class BulkConfig:
    """How this worker runs bulk jobs: chunk size, and what to do after each chunk."""

    chunk_pairs: int
    after_chunk: Callable[[Progress], None]


def chunks(payload: BulkPayload, chunk_pairs: int) -> Iterator[list[Slice]]:
    """Cut the items' pairs into runs of at most ``chunk_pairs``, in order; an item may span chunks."""
    chunk: list[Slice] = []
    room = chunk_pairs
    for index, item in enumerate(payload.items):
        start = 0
        while start < len(item.candidates):
            end = min(len(item.candidates), start + room)
            chunk.append((index, start, end))
            room -= end - start
            start = end
            if room == 0:
                yield chunk
                chunk, room = [], chunk_pairs
    if chunk:
        yield chunk


def score(payload: BulkPayload, config: BulkConfig) -> tuple[list[list[float]], float]:
    """Every item's scores in input order, and the model time in ms; calls ``config.after_chunk`` per chunk."""
    model = runtime.resident()
    scores = [[0.0] * len(item.candidates) for item in payload.items]
    total, done, inference_s = payload.pairs, 0, 0.0
    config.after_chunk(Progress(done=0, total=total))
    for chunk in chunks(payload, config.chunk_pairs):
        started = time.perf_counter()
        chunk_scores = model.score_many(
            [(payload.items[i].query, payload.items[i].candidates[a:b]) for i, a, b in chunk], payload.score_mode
        )
        inference_s += time.perf_counter() - started
        for (i, a, b), values in zip(chunk, chunk_scores, strict=True):
            scores[i][a:b] = values
            done += b - a
        config.after_chunk(Progress(done=done, total=total))
    return scores, inference_s * 1000


_config: BulkConfig | None = None


def install(config: BulkConfig) -> None:
    """Set how bulk jobs run in this process (the worker does this at start-up)."""
    global _config
    _config = config


def installed() -> BulkConfig:
    if _config is None:
        raise RuntimeError("bulk jobs are not set up in this process: start jobs with `rerank-server worker`")
    return _config
