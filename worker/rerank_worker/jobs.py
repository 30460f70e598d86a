"""Job functions, called by RQ on the worker by their dotted path (see ``rerank_contract.jobs``).

Each takes JSON-decoded arguments, validates them against the contract, and returns a
JSON-ready dict: RQ's JSON serializer silently replaces values it cannot encode.

:class:`~rerank_worker.worker.RerankWorker` usually runs several waiting :data:`RERANK_JOB` jobs
together through :func:`score_payloads` instead of calling :func:`rerank` once per job; both give
the same scores.
"""

from __future__ import annotations

import time
from typing import Any

from rq import get_current_job

from rerank_contract.jobs import (
    BulkItemResult,
    BulkPayload,
    BulkResult,
    RerankPayload,
    RerankResult,
    ScoreMode,
    rank,
)
from rerank_worker import bulk, runtime


def score_payloads(payloads: list[RerankPayload]) -> tuple[list[list[float]], float]:
    """Scores for each payload in input order, from one model call per score mode, and the time it took (ms).

    Candidates pass their payload's length rules first (see ``Reranker.prepare``).
    """
    model = runtime.resident()
    started = time.perf_counter()
    candidates = [model.prepare(p) for p in payloads]  # each payload's length rules (truncate=false may raise)
    scores: list[list[float]] = [[] for _ in payloads]
    for mode in ScoreMode:
        members = [i for i, p in enumerate(payloads) if p.score_mode is mode and p.candidates]
        if not members:
            continue
        grouped = model.score_many([(payloads[i].query, candidates[i]) for i in members], mode)
        for i, group_scores in zip(members, grouped, strict=True):
            scores[i] = group_scores
    return scores, (time.perf_counter() - started) * 1000


def make_result(
    scores: list[float], *, worker: str, queue_ms: float, inference_ms: float, batch_jobs: int, batch_pairs: int
) -> dict[str, Any]:
    """The contract's result for one job, as the JSON-ready dict RQ stores; ``batch_*`` describe the model
    call that scored it."""
    model = runtime.resident()
    return RerankResult(
        results=rank(scores),
        model=model.model_name,
        device=model.device,
        worker=worker,
        queue_ms=round(queue_ms, 3),
        inference_ms=round(inference_ms, 3),
        batch_jobs=batch_jobs,
        batch_pairs=batch_pairs,
    ).model_dump(mode="json")


def rerank(payload: dict[str, Any]) -> dict[str, Any]:
    """Score ``payload.candidates`` against ``payload.query``; results best first."""
    request = RerankPayload.model_validate(payload)
    job = get_current_job()
    queue_ms = 0.0
    if job is not None and job.enqueued_at and job.started_at:
        queue_ms = max(0.0, (job.started_at - job.enqueued_at).total_seconds() * 1000)
    (scores,), inference_ms = score_payloads([request])
    return make_result(
        scores,
        worker=(job.worker_name or "") if job else "",
        queue_ms=queue_ms,
        inference_ms=inference_ms,
        batch_jobs=1,
        batch_pairs=len(request.candidates),
    )


def rerank_bulk(payload: dict[str, Any]) -> dict[str, Any]:
    """Score every item of a bulk payload in chunks; results per item in input order, each best first."""
    request = BulkPayload.model_validate(payload)
    scores, inference_ms = bulk.score(request, bulk.installed())
    model = runtime.resident()
    job = get_current_job()
    return BulkResult(
        items=[BulkItemResult(id=item.id, results=rank(s)) for item, s in zip(request.items, scores, strict=True)],
        model=model.model_name,
        device=model.device,
        worker=(job.worker_name or "") if job else "",
        pairs=request.pairs,
        inference_ms=round(inference_ms, 3),
    ).model_dump(mode="json")
