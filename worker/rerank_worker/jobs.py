"""Job functions, called by RQ on the worker by their dotted path (see ``rerank_server.contract``).

Each takes JSON-decoded arguments, validates them against the contract, and returns a
JSON-ready dict: RQ's JSON serializer silently replaces values it cannot encode.
"""

from __future__ import annotations

import time
from typing import Any

from rq import get_current_job

from rerank_server.contract import RerankPayload, RerankResult, rank
from rerank_worker import runtime


def rerank(payload: dict[str, Any]) -> dict[str, Any]:
    """Score ``payload.candidates`` against ``payload.query``; results best first."""
    request = RerankPayload.model_validate(payload)
    job = get_current_job()
    queue_ms = 0.0
    worker = ""
    if job is not None and job.enqueued_at and job.started_at:
        queue_ms = max(0.0, (job.started_at - job.enqueued_at).total_seconds() * 1000)
        worker = job.worker_name or ""
    model = runtime.resident()
    started = time.perf_counter()
    candidates = model.prepare(request)
    scores = model.score(request.query, candidates, request.score_mode)
    return RerankResult(
        results=rank(scores),
        model=model.model_name,
        device=model.device,
        worker=worker,
        queue_ms=round(queue_ms, 3),
        inference_ms=round((time.perf_counter() - started) * 1000, 3),
    ).model_dump(mode="json")
