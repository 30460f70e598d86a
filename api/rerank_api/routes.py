"""The endpoints of the seed's API: ``POST /v1/rerank`` and ``GET /health``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from rerank_api.dispatch import Dispatcher
from rerank_api.errors import ApiError, ErrorType, responses
from rerank_api.monitor import WorkerMonitor
from rerank_api.schemas import HealthResponse, RerankRequest, RerankResponse
from rerank_server.contract import RerankPayload
from rerank_server.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def _monitor(request: Request) -> WorkerMonitor:
    return request.app.state.monitor


SettingsDep = Annotated[Settings, Depends(_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
MonitorDep = Annotated[WorkerMonitor, Depends(_monitor)]

router = APIRouter()


def check_limits(query: str, candidates: list[str], settings: Settings) -> None:
    """413 past the configured number of candidates or characters."""
    if len(candidates) > settings.max_candidates:
        raise ApiError(
            ErrorType.TOO_LARGE,
            f"candidates: {len(candidates)} given, at most {settings.max_candidates} allowed (RERANK_MAX_CANDIDATES)",
        )
    chars = len(query) + sum(len(c) for c in candidates)
    if chars > settings.max_request_chars:
        raise ApiError(
            ErrorType.TOO_LARGE,
            f"request holds {chars} characters, at most {settings.max_request_chars} allowed "
            "(RERANK_MAX_REQUEST_CHARS)",
        )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@router.post(
    "/v1/rerank",
    response_model=RerankResponse,
    summary="Rank candidates by relevance to the query",
    responses=responses(
        ErrorType.VALIDATION,
        ErrorType.TOO_LARGE,
        ErrorType.NO_WORKER,
        ErrorType.WORKER_LOST,
        ErrorType.QUEUE_UNAVAILABLE,
        ErrorType.TIMEOUT,
        ErrorType.INFERENCE_FAILED,
    ),
)
async def rerank(body: RerankRequest, settings: SettingsDep, dispatcher: DispatcherDep, monitor: MonitorDep):
    """Every candidate's index and score, best first. Timings are in ``x-queue-time``,
    ``x-inference-time`` and ``x-total-time`` headers (milliseconds)."""
    started = time.perf_counter()
    check_limits(body.query, body.candidates, settings)
    if not body.candidates:
        models = {w.model for w in monitor.snapshot.workers}
        model = models.pop() if len(models) == 1 else settings.model
        return RerankResponse(results=[], model=model, processing_time_ms=_ms(time.perf_counter() - started))
    result = await dispatcher.run(RerankPayload(query=body.query, candidates=body.candidates))
    total_ms = _ms(time.perf_counter() - started)
    response = RerankResponse(results=result.results, model=result.model, processing_time_ms=total_ms)
    return JSONResponse(
        response.model_dump(mode="json"),
        headers={
            "x-queue-time": str(result.queue_ms),
            "x-inference-time": str(result.inference_ms),
            "x-total-time": str(total_ms),
        },
    )


def _joined(values: set[str]) -> str | None:
    return ",".join(sorted(values)) or None


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Service health: live workers, their device and model, queue depth",
    responses={503: {"model": HealthResponse, "description": "Redis unreachable or no worker alive."}},
)
async def health(monitor: MonitorDep):
    """200 with ``status: ok`` when Redis answers and at least one worker is alive, else 503."""
    snapshot = await monitor.refresh()
    if snapshot.redis_error is not None:
        status = "redis_unavailable"
    elif not snapshot.workers:
        status = "no_worker"
    else:
        status = "ok"
    body = HealthResponse(
        status=status,
        device=_joined({w.device for w in snapshot.workers}),
        model=_joined({w.model for w in snapshot.workers}),
        redis="unreachable" if snapshot.redis_error else "ok",
        workers_alive=len(snapshot.workers),
        queue_depth=snapshot.queue_depth,
        workers=list(snapshot.workers),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if status == "ok" else 503)
