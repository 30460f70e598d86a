"""The page at ``/``: the service's live state and a playground, as static files (no build step, no CDN).

``GET /`` and its files are open, like ``/docs``: they hold no data. The page reads ``GET /v1/status``
(protected like every data route: with ``RERANK_API_KEY`` set, the page asks for the key) every few
seconds and works out rates from the difference of two readings; its playground calls ``/v1/rerank``.
"""

from __future__ import annotations

import asyncio
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from rerank_api.deps import MetricsDep, MonitorDep
from rerank_api.metrics import Metrics
from rerank_api.models import Models
from rerank_api.routes import models_health
from rerank_contract import __version__
from rerank_contract.bulk_jobs import BulkJobs, UnknownJob
from rerank_contract.jobs import BULK_QUEUE, SERIALIZER
from rerank_contract.redis_conn import connect

#: Where the page's script and style are served.
STATIC_PATH = "/static/page"
#: The routes whose latency the page shows: the rerank formats.
RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")
#: Bulk jobs the page lists: the most recent of each kind.
BULK_SHOWN = 10

open_router = APIRouter(include_in_schema=False)
router = APIRouter(tags=["service"])


def folder() -> Path:
    return Path(str(files("rerank_api") / "static"))


@open_router.get("/")
async def page() -> FileResponse:
    return FileResponse(folder() / "index.html", media_type="text/html")


@router.get("/v1/status", summary="What the page at / shows: workers, queues, bulk jobs and traffic totals")
async def status(request: Request, monitor: MonitorDep, metrics: MetricsDep) -> dict[str, Any]:
    """Live workers (model, device, jobs done), the models with their names, workers and queues, queue depths,
    recent bulk jobs with their progress, the API's running totals of rerank requests and their latency, and per
    model its calls' latency histogram (rates and quantiles come from two readings' difference)."""
    snapshot = await monitor.refresh_or_last()
    problems = [snapshot.redis_error] if snapshot.redis_error else []
    try:
        bulk = await asyncio.to_thread(_bulk_jobs, request.app)
    except RedisError as exc:
        bulk = []
        problems.append(f"cannot list bulk jobs: {exc}")
    count = total = 0.0
    for family in metrics.latency_families():  # every API process's, when there are several
        for sample in family.samples:
            if sample.labels.get("route") in RERANK_ROUTES:
                if sample.name.endswith("_count"):
                    count += sample.value
                elif sample.name.endswith("_sum"):
                    total += sample.value
    models = models_health(snapshot, Models(snapshot, request.app.state.settings.default_model))
    return {
        "models": [m.model_dump(mode="json") for m in models],
        "model_latency": _model_latency(metrics),
        "version": __version__,
        "at": time.time(),
        "redis": "unreachable" if snapshot.redis_error else "ok",
        "problems": problems,
        "queue_depth": snapshot.queue_depth,
        "workers": [w.model_dump(mode="json") for w in snapshot.workers],
        "bulk_jobs": bulk,
        "rerank_requests": int(count),
        "rerank_seconds": total,
    }


def _model_latency(metrics: Metrics) -> dict[str, dict[str, Any]]:
    """Per model: the running count and sum of its rerank calls' seconds, and the histogram's cumulative buckets
    ``[[le, count]]`` in order (``le`` as Prometheus writes it, ``+Inf`` last); the page charts their differences."""
    out: dict[str, dict[str, Any]] = {}
    for family in metrics.model_latency_families():
        for sample in family.samples:
            entry = out.setdefault(sample.labels.get("model", ""), {"count": 0.0, "sum": 0.0, "buckets": {}})
            if sample.name.endswith("_bucket"):
                le = sample.labels["le"]
                entry["buckets"][le] = entry["buckets"].get(le, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                entry["count"] += sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] += sample.value
    for entry in out.values():
        entry["buckets"] = sorted(entry["buckets"].items(), key=lambda b: float(b[0]))
    return out


def _bulk_jobs(app: FastAPI) -> list[dict[str, Any]]:
    """The newest bulk jobs, running ones first, then waiting, then done: id, status and progress."""
    bulk: BulkJobs = app.state.bulk_jobs
    if getattr(app.state, "page_redis", None) is None:
        app.state.page_redis = connect(app.state.settings.redis_url)
    redis: Redis = app.state.page_redis
    queue = Queue(BULK_QUEUE, connection=redis, serializer=SERIALIZER)
    ids = [
        *StartedJobRegistry(queue=queue).get_job_ids(),
        *queue.get_job_ids(0, BULK_SHOWN - 1),
        *FinishedJobRegistry(queue=queue).get_job_ids(-BULK_SHOWN, -1)[::-1],
        *FailedJobRegistry(queue=queue).get_job_ids(-BULK_SHOWN, -1)[::-1],
    ]
    out = []
    for job_id in list(dict.fromkeys(ids))[: 2 * BULK_SHOWN]:
        try:
            state = bulk.state(job_id)
        except UnknownJob:
            continue
        out.append(state.model_dump(mode="json", include={"id", "status", "progress", "enqueued_at", "error"}))
    return out


def install(app: FastAPI, protection: dict[str, Any]) -> None:
    """``/`` and its files (open), ``/v1/status`` (with ``protection``, as the other data routes)."""
    app.mount(STATIC_PATH, StaticFiles(directory=folder()), name="page-assets")
    app.include_router(open_router)
    app.include_router(router, **protection)
