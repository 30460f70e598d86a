"""What a job computes: contract payloads in, contract results out, with the scorer it is handed.

RQ names jobs by dotted path (``rerank_contract.jobs.RERANK_JOB`` is ``rerank_worker.jobs.rerank``);
:class:`~rerank_worker.worker.RerankWorker` recognises those names and runs the jobs itself, several
sync jobs per model call and bulk jobs chunk by chunk, so that no job function needs the model from a
global. The two functions below exist for RQ's name lookup and fail clearly on any other RQ worker.
Results are JSON-ready dicts: RQ's JSON serializer silently replaces values it cannot encode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rerank_contract.jobs import BulkItemResult, BulkPayload, BulkResult, RerankPayload, RerankResult, ScoreMode, rank
from rerank_worker.scorer import Scorer

#: A slice ``candidates[start:end]`` of item ``item`` of a bulk payload.
Slice = tuple[int, int, int]


@dataclass(frozen=True)
class Scored:
    """What :func:`score_payloads` gives back, per payload in input order, and the time it took."""

    scores: list[list[float]]
    tokens: list[int]
    inference_ms: float


def score_payloads(scorer: Scorer, payloads: list[RerankPayload]) -> Scored:
    """Scores for each payload in input order, from one model call per (score mode, instruction).

    Candidates pass their payload's length rules first (``truncate=false`` may raise InputTooLong); a
    chunked candidate gets its best chunk's score. Payloads with different instructions never share a call:
    the instruction is part of every input the model reads.
    """
    started = time.perf_counter()
    prepared = [scorer.prepare(p) for p in payloads]
    scores: list[list[float]] = [[] for _ in payloads]
    tokens = [0] * len(payloads)
    groups: dict[tuple[ScoreMode, str | None], list[int]] = {}
    for i, p in enumerate(payloads):
        if p.candidates:
            groups.setdefault((p.score_mode, p.instruction), []).append(i)
    for (mode, instruction), members in groups.items():
        requests = [(payloads[i].query, prepared[i].texts) for i in members]
        # A scorer is asked for an instruction only when there is one, so scorers written before them still work.
        grouped = (
            scorer.score_many(requests, mode) if instruction is None else scorer.score_many(requests, mode, instruction)
        )
        for i, group_scores, group_tokens in zip(members, grouped.scores, grouped.tokens, strict=True):
            scores[i] = prepared[i].best(group_scores, len(payloads[i].candidates))
            tokens[i] = group_tokens
    return Scored(scores, tokens, (time.perf_counter() - started) * 1000)


def rerank_result(
    scorer: Scorer,
    scores: list[float],
    *,
    worker: str,
    queue_ms: float,
    inference_ms: float,
    batch_jobs: int,
    batch_pairs: int,
    tokens: int | None = None,
) -> dict[str, Any]:
    """The contract's result for one sync job; ``batch_*`` describe the model call that scored it."""
    return RerankResult(
        results=rank(scores),
        model=scorer.model_name,
        device=scorer.device,
        worker=worker,
        queue_ms=round(max(0.0, queue_ms), 3),
        inference_ms=round(inference_ms, 3),
        batch_jobs=batch_jobs,
        batch_pairs=batch_pairs,
        tokens=tokens,
    ).model_dump(mode="json")


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


def score_chunk(
    scorer: Scorer,
    payload: BulkPayload,
    chunk: list[Slice],
    scores: list[list[float]],
    tokens: list[int] | None = None,
) -> int:
    """Score one chunk into ``scores`` (per item, input order), adding its tokens to ``tokens`` (per item);
    returns its pairs. Each slice runs the sync path's length rules, instruction and chunking."""
    payloads = [
        RerankPayload(
            query=payload.items[i].query,
            candidates=payload.items[i].candidates[a:b],
            score_mode=payload.score_mode,
            instruction=payload.instruction,
            max_chunks_per_doc=payload.max_chunks_per_doc,
        )
        for i, a, b in chunk
    ]
    scored = score_payloads(scorer, payloads)
    for (i, a, b), chunk_scores, chunk_tokens in zip(chunk, scored.scores, scored.tokens, strict=True):
        scores[i][a:b] = chunk_scores
        if tokens is not None:
            tokens[i] += chunk_tokens
    return sum(b - a for _, a, b in chunk)


def bulk_result(
    scorer: Scorer,
    payload: BulkPayload,
    scores: list[list[float]],
    *,
    worker: str,
    inference_ms: float,
    tokens: list[int] | None = None,
) -> dict[str, Any]:
    """The contract's result for a bulk job: every item's candidates best first, in input order."""
    return BulkResult(
        items=[BulkItemResult(id=item.id, results=rank(s)) for item, s in zip(payload.items, scores, strict=True)],
        model=scorer.model_name,
        device=scorer.device,
        worker=worker,
        pairs=payload.pairs,
        inference_ms=round(inference_ms, 3),
        tokens=None if tokens is None else sum(tokens),
    ).model_dump(mode="json")


class NotARerankWorker(RuntimeError):
    """A job of this service was taken by a worker that is not ``rerank-server worker``."""


def rerank(payload: dict[str, Any]) -> dict[str, Any]:
    """Job function of RERANK_JOB: run by :class:`~rerank_worker.worker.RerankWorker`, never called."""
    raise NotARerankWorker("rerank jobs run only on `rerank-server worker`, which holds the model")


def rerank_bulk(payload: dict[str, Any]) -> dict[str, Any]:
    """Job function of BULK_JOB: run by :class:`~rerank_worker.worker.RerankWorker`, never called."""
    raise NotARerankWorker("bulk jobs run only on `rerank-server worker`, which holds the model")
