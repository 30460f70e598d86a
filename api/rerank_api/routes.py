"""``GET /health``: open even when an API key is set, so load balancers and ``curl -f`` can use it.

The rerank endpoints are in :mod:`rerank_api.formats`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from rerank_api.deps import MonitorDep
from rerank_api.schemas import HealthResponse

router = APIRouter(tags=["service"])


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
