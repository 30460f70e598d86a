"""Prometheus metrics of one app: HTTP traffic, queue and workers, and what the workers report per job.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (``create_app`` runs several
times in one test process; the global registry would refuse the duplicates). With several API
processes on one port (``RERANK_API_PROCESSES``) a scrape reaches one of them, so counters and
histograms are prometheus-client's multiprocess kind instead: ``rerank-server api`` sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before it starts them, every process keeps its values in
files there, and ``/metrics`` sums every process's files (:func:`multiprocess_dir`). HTTP metrics come from
:class:`HttpMetrics`, an ASGI middleware labelled by route template so ids in paths do not explode
the label set. Queue depths and live workers are read from the monitor's snapshot at scrape time.
Per-job timings and batch sizes are observed once, in ``ranking.py``, from each job's result.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rerank_api.monitor import Snapshot
from rerank_contract.jobs import QUEUES, RerankResult

#: Route label of requests that matched no route (404s), so scanners cannot grow the label set.
UNMATCHED = "unmatched"

#: prometheus-client's own variable: set before it is imported, every metric of the process keeps its values
#: in files in that folder, which :class:`~prometheus_client.multiprocess.MultiProcessCollector` sums up.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_POWERS_OF_TWO = tuple(float(2**i) for i in range(13))  # 1 .. 4096


class _SnapshotCollector(Collector):
    """Queue depths, live workers and Redis reachability, as the monitor saw them last."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self._snapshot()
        if snapshot is None:  # before the app's lifespan started the monitor
            return
        redis_up = GaugeMetricFamily("rerank_redis_up", "1 when the API reached Redis on its last check.")
        redis_up.add_metric([], 0 if snapshot.redis_error else 1)
        workers = GaugeMetricFamily("rerank_workers_alive", "Workers whose heartbeat is fresh.")
        workers.add_metric([], len(snapshot.workers))
        depth = GaugeMetricFamily("rerank_queue_depth", "Jobs waiting in each queue.", labels=["queue"])
        for queue in dict.fromkeys([*QUEUES, *snapshot.queue_depth]):  # today's two, then every model's own
            depth.add_metric([queue], snapshot.queue_depth.get(queue, 0))
        per_model = GaugeMetricFamily(
            "rerank_model_workers_alive", "Workers whose heartbeat is fresh, per model.", labels=["model"]
        )
        counts: dict[str, int] = {}
        for worker in snapshot.workers:
            counts[worker.model] = counts.get(worker.model, 0) + 1
        for model, count in sorted(counts.items()):
            per_model.add_metric([model], count)
        backend = GaugeMetricFamily(
            "rerank_worker_backend",
            "1 per live worker, labelled with its model, what runs it (RERANK_BACKEND) and the exported file it runs.",
            labels=["worker", "model", "backend", "file"],
        )
        for worker in snapshot.workers:
            backend.add_metric([worker.name, worker.model, worker.backend, worker.backend_file or ""], 1)
        yield from (redis_up, workers, depth, per_model, backend)


def multiprocess_dir() -> str | None:
    """The folder the API processes share their metrics in, or None when this process counts alone.

    It is ``PROMETHEUS_MULTIPROC_DIR``; prometheus-client read it when it was imported, and a folder set
    after that would be one nothing is written to: that is refused rather than served as empty counters.
    """
    path = os.environ.get(MULTIPROC_DIR_ENV)
    if not path:
        return None
    if values.ValueClass is values.MutexValue:
        raise RuntimeError(
            f"{MULTIPROC_DIR_ENV} was set after prometheus_client was imported: set it before the process starts"
        )
    if not Path(path).is_dir():
        raise RuntimeError(f"{MULTIPROC_DIR_ENV}={path} is not a folder")
    return path


class Metrics:
    """Every metric of one app: in its own registry, or in ``multiprocess_dir``'s files (summed over the processes).

    The monitor's snapshot (queue depths, live workers, Redis) is this process's own either way: every
    process reads the same Redis, so there is nothing to sum.
    """

    def __init__(self, snapshot: Callable[[], Snapshot | None], *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()  # what /metrics shows
        # Alone, the metrics themselves are in it; shared, they are in files (registered nowhere) and the
        # registry holds the collector that reads every process's files.
        r = self.registry if multiprocess_dir is None else None
        self._shared = None if multiprocess_dir is None else MultiProcessCollector(self.registry, multiprocess_dir)
        self.requests = Counter(
            "rerank_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "rerank_http_request_duration_seconds",
            "Time from request to the end of the answer.",
            ["method", "route"],
            buckets=_SECONDS,
            registry=r,
        )
        self.in_flight = Gauge(
            "rerank_http_requests_in_flight",
            "HTTP requests being answered now.",
            registry=r,
            multiprocess_mode="livesum",  # shared: the sum over the processes alive now
        )
        self.queue_wait = Histogram(
            "rerank_job_queue_seconds",
            "Time a rerank job waited in the queue for a worker.",
            buckets=_SECONDS,
            registry=r,
        )
        self.inference = Histogram(
            "rerank_job_inference_seconds",
            "Time the model call that scored a rerank job took (shared by the jobs of one batch).",
            buckets=_SECONDS,
            registry=r,
        )
        self.batch_jobs = Histogram(
            "rerank_batch_jobs",
            "Jobs in the model call that scored a rerank job, observed once per job.",
            buckets=_POWERS_OF_TWO,
            registry=r,
        )
        self.batch_pairs = Histogram(
            "rerank_batch_pairs",
            "(query, text) pairs in the model call that scored a rerank job, observed once per job.",
            buckets=_POWERS_OF_TWO,
            registry=r,
        )
        self.model_latency = Histogram(
            "rerank_model_request_seconds",
            "Time from request to result of the rerank calls each model scored (its _count: calls per model).",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.tokens = Counter(
            "rerank_tokens", "Tokens rerank jobs put through the model (template and chunks included).", registry=r
        )
        self.registry.register(_SnapshotCollector(snapshot))

    def observe_job(self, result: RerankResult, total_s: float | None = None) -> None:
        """Record what the worker reported for one finished job, and the request's time (``total_s``) per model."""
        if total_s is not None:
            self.model_latency.labels(result.model).observe(total_s)
        self.queue_wait.observe(result.queue_ms / 1000)
        self.inference.observe(result.inference_ms / 1000)
        if result.batch_jobs is not None:
            self.batch_jobs.observe(result.batch_jobs)
        if result.batch_pairs is not None:
            self.batch_pairs.observe(result.batch_pairs)
        if result.tokens is not None:
            self.tokens.inc(result.tokens)

    def exposition(self) -> bytes:
        if self.multiprocess_dir is not None:
            _forget_dead_processes(self.multiprocess_dir)
        return generate_latest(self.registry)

    def model_latency_families(self) -> Iterable[Metric]:
        """The per-model request histogram as ``/metrics`` shows it (summed over the processes when shared)."""
        if self._shared is None:
            return self.model_latency.collect()
        return [f for f in self._shared.collect() if f.name == "rerank_model_request_seconds"]

    def latency_families(self) -> Iterable[Metric]:
        """The request-latency histogram as ``/metrics`` shows it (summed over the processes when shared)."""
        if self._shared is None:
            return self.latency.collect()
        return [f for f in self._shared.collect() if f.name == "rerank_http_request_duration_seconds"]


def _forget_dead_processes(path: str) -> None:
    """Drop the in-flight gauge files of processes that are gone (a process killed mid-request leaves its count).

    Their counters and histograms stay: what they answered was answered, and totals must not go down.
    """
    for file in Path(path).glob("gauge_live*_*.db"):
        pid = file.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class HttpMetrics:
    """ASGI middleware counting HTTP requests by method, route template and status, and timing them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before answering, the server answers 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.in_flight.dec()
            method = scope["method"]
            label = route_label(scope)
            self.metrics.requests.labels(method, label, str(status)).inc()
            self.metrics.latency.labels(method, label).observe(time.perf_counter() - started)


def route_label(scope: Scope) -> str:
    """The template of the route that ``scope`` is for, or :data:`UNMATCHED` when no route has its path.

    FastAPI's own routes put themselves on the scope; the docs routes do not, and a body refused
    before routing (413) never reaches the router, so those are matched here against the app's route
    templates (a wrong method still names the route: it exists).
    """
    route = scope.get("route")  # set by the router on the scope it was handed: this one
    if route is not None:
        return getattr(route, "path", UNMATCHED)
    path = scope.get("path", "")
    for template, pattern in _templates(scope.get("app")):
        if pattern.match(path):
            return template
    return UNMATCHED


def _templates(app: object) -> list[tuple[str, re.Pattern[str]]]:
    """Every route template of ``app`` (its own routes and those in its OpenAPI schema), built once per app."""
    cached = getattr(getattr(app, "state", None), "route_templates", None)
    if cached is not None:
        return cached
    routes = [r for r in getattr(app, "routes", ()) if isinstance(getattr(r, "path", None), str)]
    templates = [(r.path, getattr(r, "path_regex", None) or compile_path(r.path)[0]) for r in routes]
    openapi = getattr(app, "openapi", None)
    templates += [(p, compile_path(p)[0]) for p in (openapi().get("paths", {}) if callable(openapi) else ())]
    if hasattr(app, "state"):
        app.state.route_templates = templates
    return templates


router = APIRouter(tags=["service"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Requests, latency, queue depth, live workers, queue wait, inference time and batch sizes, in
    Prometheus' text format."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
