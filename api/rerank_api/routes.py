"""``GET /health``: open even when an API key is set, so load balancers and ``curl -f`` can use it.

The rerank endpoints are in :mod:`rerank_api.formats`.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from rerank_api.deps import MonitorDep, SettingsDep
from rerank_api.models import Models
from rerank_api.monitor import Snapshot, WorkerMonitor
from rerank_api.schemas import SERVING_STATUSES, HealthResponse, ModelHealth
from rerank_contract.defaults import REAPER_STALE_INTERVALS
from rerank_contract.jobs import BULK_QUEUE, QUEUES, SYNC_QUEUE, WorkerInfo

router = APIRouter(tags=["service"])


def _joined(values: set[str]) -> str | None:
    return ",".join(sorted(values)) or None


def _reaper(workers: tuple[WorkerInfo, ...], stale_after_s: float, now: float) -> tuple[float | None, str | None]:
    """The age of the newest sweep, and the problem when no live worker's reaper is fresh (None when one is)."""
    swept = [w.reaper_swept_at for w in workers if w.reaper_swept_at is not None]
    age = max(0.0, now - max(swept)) if swept else None
    if not workers or any(
        now - (w.started_at if w.reaper_swept_at is None else w.reaper_swept_at) <= stale_after_s for w in workers
    ):
        return age, None
    last = "none has swept yet" if age is None else f"the newest sweep was {age:.0f} s ago"
    return age, (
        f"no live worker's reaper has swept in the last {stale_after_s:g} s ({last}): "
        "jobs of dead workers are not handed back to the queue"
    )


def _monitor(monitor: WorkerMonitor) -> tuple[float | None, str | None]:
    age = monitor.age_s()
    if age is not None and age <= monitor.stale_after_s:
        return age, None
    ago = "never" if age is None else f"{age:.0f} s ago"
    return age, (
        f"this API process's worker monitor last refreshed {ago} (stale after {monitor.stale_after_s:g} s): "
        "its no-worker (503) and queue-full (429) answers are out of date; restart the API"
    )


def _status(snapshot: Snapshot, monitor_problem: str | None, degraded: list[str | None]) -> str:
    if snapshot.redis_error is not None:
        return "redis_unavailable"
    if not snapshot.workers:
        return "no_worker"
    if monitor_problem:
        return "monitor_stale"
    if any(degraded):
        return "degraded"
    return "ok"


def _model_problems(snapshot: Snapshot, models: Models) -> list[str]:
    """The default model with no live worker while others serve; several models consuming the default queues."""
    problems = []
    default = models.all.get(models.default_name) if models.default_name else None
    if snapshot.workers and models.default_name and (default is None or not default.workers):
        problems.append(
            f"no worker of the default model {models.default_name!r} is alive: requests without `model` get 503"
        )
    sharing = sorted({w.model for w in snapshot.workers if SYNC_QUEUE in w.queues})
    if len(sharing) > 1:
        problems.append(
            f"models {', '.join(sharing)} all consume the default queues ({SYNC_QUEUE}, {BULK_QUEUE}): set "
            "RERANK_DEFAULT_MODEL on their workers and the API"
        )
    return problems


def models_health(snapshot: Snapshot, models: Models) -> list[ModelHealth]:
    """Every known model with its names, live workers and queue depths (``/health`` and the page)."""
    return [
        ModelHealth(
            name=m.name,
            served_names=list(m.served_names),
            default=m.default,
            workers_alive=len(m.workers),
            workers=[w.name for w in m.workers],
            queue_depth={q: snapshot.queue_depth.get(q, 0) for q in (m.sync_queue, m.bulk_queue)},
        )
        for m in models.all.values()
    ]


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Service health: live workers, their device and model, queue depth, background loops",
    responses={
        503: {
            "model": HealthResponse,
            "description": "Redis unreachable, no worker alive, or this API's worker monitor stalled.",
        }
    },
)
async def health(request: Request, monitor: MonitorDep, settings: SettingsDep):
    """200 with ``status: ok`` when Redis answers, a worker is alive and the background loops are current;
    200 with ``degraded`` when serving with ``problems`` (no live worker's reaper is sweeping, the default model
    has no live worker while others do, several models consume the default queues); else 503. ``model`` and
    ``device`` are the default model's; ``models`` lists every model with its workers."""
    snapshot = await monitor.refresh_or_last()
    monitor_age, monitor_problem = _monitor(monitor)
    reaper_age, reaper_problem = _reaper(
        snapshot.workers, REAPER_STALE_INTERVALS * settings.heartbeat_interval_s, time.time()
    )
    models = Models(snapshot, settings.default_model)
    model_problems = _model_problems(snapshot, models)
    status = _status(snapshot, monitor_problem, [reaper_problem, *model_problems])
    default = models.all.get(models.default_name) if models.default_name else None
    served = default.workers if default is not None and default.workers else snapshot.workers
    problems = [
        p
        for p in (
            snapshot.redis_error,
            "no worker alive: start one with `rerank-server worker`"
            if snapshot.redis_error is None and not snapshot.workers
            else None,
            monitor_problem,
            reaper_problem,
            *model_problems,
        )
        if p
    ]
    body = HealthResponse(
        status=status,
        problems=problems,
        device=_joined({w.device for w in served}),
        model=models.default_name or _joined({w.model for w in snapshot.workers}),
        backend=_joined({w.backend for w in served}),
        redis="unreachable" if snapshot.redis_error else "ok",
        instance=request.app.state.instance,
        workers_alive=len(snapshot.workers),
        queue_depth={q: snapshot.queue_depth.get(q, 0) for q in QUEUES},  # the seed's two; each model's in `models`
        monitor_age_s=None if monitor_age is None else round(monitor_age, 3),
        reaper_age_s=None if reaper_age is None else round(reaper_age, 3),
        unreadable_workers=list(snapshot.unreadable),
        workers=list(snapshot.workers),
        models=models_health(snapshot, models),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if status in SERVING_STATUSES else 503)
