"""The one path every request format takes: limits, dispatch, ``top_n`` and timing headers.

Formats convert their wire body into a :class:`RerankPayload` and their answer from :class:`Ranked`;
everything in between is here, once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from rerank_api.dispatch import Dispatcher
from rerank_api.errors import ErrorType
from rerank_api.limits import check_limits, check_texts
from rerank_api.metrics import Metrics
from rerank_contract.jobs import RerankPayload, ScoredIndex
from rerank_contract.settings import Settings

#: Error types any rerank route can answer with, for its OpenAPI ``responses``.
RERANK_ERRORS = (
    ErrorType.VALIDATION,
    ErrorType.TOO_LARGE,
    ErrorType.NO_WORKER,
    ErrorType.MODEL_NOT_FOUND,
    ErrorType.WORKER_LOST,
    ErrorType.QUEUE_UNAVAILABLE,
    ErrorType.TIMEOUT,
    ErrorType.INFERENCE_FAILED,
    ErrorType.OVERLOADED,
)


@dataclass(frozen=True)
class Ranked:
    """Scored candidates, best first, cut to ``top_n``; ``total_ms`` is the API's time on the request.

    ``tokens``: what the model read for the request (template, instruction and chunks included); 0 when
    nothing was scored, None from a worker older than token counts."""

    results: list[ScoredIndex]
    model: str
    total_ms: float
    tokens: int | None = 0


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Ranker:
    """Per-request helper (see :func:`ranker`): runs a payload and puts ``x-queue-time`` etc. on the response."""

    def __init__(self, request: Request, response: Response) -> None:
        state = request.app.state  # what create_app put there, read here rather than as sub-dependencies
        self._settings: Settings = state.settings
        self._dispatcher: Dispatcher = state.dispatcher
        self._metrics: Metrics = state.metrics
        self._request = request
        self._response = response
        self._started = time.perf_counter()

    async def rank(self, payload: RerankPayload, top_n: int | None = None, model: str | None = None) -> Ranked:
        """Score ``payload`` on a worker of ``model`` (any of its names; None: the default model); an empty
        candidate list answers at once without a job, naming the model it would have gone to."""
        check_limits(payload.query, payload.candidates, self._settings)
        if payload.instruction:
            check_texts([payload.instruction], self._settings)
        if not payload.candidates:  # no worker needed: named after the model it would have gone to
            models = self._dispatcher.models()
            found = models.find(model)
            if found is None and model is not None and models.all:
                await self._dispatcher.route(model)  # 404 naming the served ones (or found after all, in Redis)
            name = found.name if found else model or self._settings.default_model or self._settings.model
            return Ranked(results=[], model=name, total_ms=_ms(time.perf_counter() - self._started))
        result = await self._dispatcher.run(payload, gone=self._request.is_disconnected, model=model)
        total_ms = _ms(time.perf_counter() - self._started)
        self._metrics.observe_job(result, total_ms / 1000)
        self._response.headers.update(
            {
                "x-queue-time": str(result.queue_ms),
                "x-inference-time": str(result.inference_ms),
                "x-total-time": str(total_ms),
            }
        )
        if result.tokens is not None:
            self._response.headers["x-compute-tokens"] = str(result.tokens)  # TEI's header
        return Ranked(results=result.results[:top_n], model=result.model, total_ms=total_ms, tokens=result.tokens)


async def ranker(request: Request, response: Response) -> Ranker:
    """The request's :class:`Ranker`, built on the event loop (FastAPI runs a class dependency in a thread).

    It takes the app's state from the request: FastAPI solves each sub-dependency anew per request, and the
    four it had cost 30 of the 140 µs of CPU the app spent per request (in-process, Redis aside)."""
    return Ranker(request, response)


RankerDep = Annotated[Ranker, Depends(ranker)]
