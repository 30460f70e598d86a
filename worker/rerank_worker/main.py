"""``rerank-server worker``: load the model once, then serve the queues until SIGTERM.

SIGTERM once finishes the job in hand and exits; twice stops at once (RQ's two-step shutdown).
Start-up failures (model cannot load, Redis unreachable) exit with :data:`EXIT_STARTUP_FAILED`
so a supervisor can tell "cannot start" from "crashed". Once started, a Redis outage does not end
the process: the RQ loop is restarted once Redis answers (:mod:`rerank_worker.reconnect`: capped back-off, a log line
when Redis goes and one when it is back), same process, the model kept. Two threads run beside
the RQ loop: the heartbeat (liveness for the API) and the reaper (jobs of dead workers back to RQ);
a third, with ``RERANK_WORKER_MAX_JOBS`` or ``RERANK_WORKER_MAX_MEMORY_MB``, retires the worker
(:mod:`rerank_worker.retire`: it finishes the job in hand and exits 0, for its supervisor to replace).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import StopRequested

from rerank_contract.defaults import EXIT_STARTUP_FAILED, RETIRE_CHECK_S, WORKER_TTL_S
from rerank_contract.jobs import SERIALIZER, WorkerInfo
from rerank_contract.redis_conn import connect
from rerank_contract.settings import Settings
from rerank_worker import model_source, rq_seam, scheduling, scoring, taking
from rerank_worker.heartbeat import Heartbeat
from rerank_worker.reaper import Reaper
from rerank_worker.reconnect import Reconnect, quiet_rq_retries
from rerank_worker.retire import Retirement, resident_bytes
from rerank_worker.scoring import Scorer
from rerank_worker.served import Served, default_clash, every_queue
from rerank_worker.worker import RerankWorker

log = logging.getLogger("rerank_worker")


def run(settings: Settings) -> int:
    """Run one worker process; returns its exit code."""
    try:
        scorer = scoring.load(settings)
    except model_source.ModelUnavailable as exc:  # expected (offline, a wrong folder): one line, no traceback
        log.error("%s", exc)
        return EXIT_STARTUP_FAILED
    except Exception:
        log.exception("cannot load model %s", settings.model)
        return EXIT_STARTUP_FAILED
    connection = connect(settings.redis_url, socket_timeout=WORKER_TTL_S)
    try:
        connection.ping()
    except Exception as exc:
        log.error("cannot reach Redis at %s: %s", settings.redis_url, exc)
        return EXIT_STARTUP_FAILED
    served = Served.from_settings(settings, scorer.model_name)
    scorer.model_name = served.name  # answers carry the canonical name
    if (clash := default_clash(connection, served)) is not None:
        log.error("%s", clash)
        return EXIT_STARTUP_FAILED
    model_thread = scheduling.model_thread(scorer.device)

    def ready() -> str | None:
        """Warm up (first calls are slower) and measure the micro-batch, where the model will run."""
        if settings.warmup:
            scorer.warmup()
        return scorer.tune()

    try:
        tuned = model_thread.submit(ready).result() if model_thread else ready()
    except Exception:
        log.exception("model %s cannot score", settings.model)
        return EXIT_STARTUP_FAILED
    if tuned:
        log.info("%s", tuned)
    workers = _WorkerFactory(settings, connection, scorer, model_thread, served.queues)
    worker = workers.new()

    reaper_connection = connect(settings.redis_url, socket_timeout=5.0)
    reaper = Reaper(
        reaper_connection,
        lambda: _queues(reaper_connection, every_queue(reaper_connection)),
        grace_s=settings.heartbeat_ttl_s,
    )
    started_at = time.time()

    def info() -> WorkerInfo:
        return WorkerInfo(
            name=worker.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            model=scorer.model_name,
            device=scorer.device,
            dtype=scorer.dtype,
            backend=scorer.backend,
            backend_file=scorer.backend_file,
            max_length=scorer.max_length,
            batch_size=scorer.batch_size,
            queues=served.queues,
            started_at=started_at,
            model_loads=type(scorer).loads,
            jobs_done=workers.jobs_done + worker.jobs_done,
            jobs_failed=workers.jobs_failed + worker.jobs_failed,
            reaper_swept_at=reaper.swept_at,
            served_names=served.names,
            source=settings.model,
            default=served.default,
        )

    heartbeat = Heartbeat(
        connect(settings.redis_url, socket_timeout=5.0),
        info,
        interval_s=settings.heartbeat_interval_s,
        ttl_s=settings.heartbeat_ttl_s,
    )
    heartbeat.start()
    stopped = threading.Event()
    threading.Thread(
        target=reaper.run, args=(settings.heartbeat_interval_s, stopped), name="rerank-reaper", daemon=True
    ).start()
    retirement = Retirement(
        max_jobs=settings.worker_max_jobs,
        max_memory_mb=settings.worker_max_memory_mb,
        jobs=lambda: workers.jobs_done + worker.jobs_done + workers.jobs_failed + worker.jobs_failed,
        memory=_memory(scorer, model_thread),
    )
    if retirement.enabled:
        threading.Thread(
            target=retirement.run, args=(RETIRE_CHECK_S, stopped), name="rerank-retire", daemon=True
        ).start()
    log.info(
        "worker %s serving %s with %s (%s) on %s",
        worker.name,
        ", ".join(served.queues),
        settings.model,
        ", ".join(served.names),
        scorer.device,
    )
    link = Reconnect()
    quiet_rq_retries()
    try:
        while True:
            try:
                worker.work(logging_level=settings.log_level)
                reason = "the worker loop ended"
            except RedisError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if worker.stopping:  # SIGTERM: RQ finished the job in hand
                break
            # Redis went away: keep the model, and a new RQ worker (a fresh name) once Redis answers.
            fresh = _reconnect(
                workers, link, worker.lost_redis or reason, stopping=functools.partial(_stopping, worker)
            )
            if fresh is None:
                break
            workers.retire(worker)
            worker = fresh
    except StopRequested:
        pass
    finally:
        stopped.set()
        _give_back_taken(reaper_connection, worker.name, served.queues)
        heartbeat.stop()
    return 0


def _give_back_taken(connection: Redis, taker: str, queues: list[str]) -> None:
    """At exit, any job this worker took but did not start goes back to its queue (normally there is none)."""
    try:
        if ids := taking.give_back(
            connection, taker, {name: Queue(name, connection=connection).key for name in queues}
        ):
            log.info("gave back %d jobs taken but not started", len(ids))
    except RedisError as exc:  # Redis is away: the reaper of another worker gives them back
        log.warning("could not give back the jobs taken but not started: %s", exc)


def _stopping(worker: RerankWorker) -> bool:
    return worker.stopping


def _reconnect(
    workers: _WorkerFactory, link: Reconnect, reason: str, *, stopping: Callable[[], bool]
) -> RerankWorker | None:
    """A new RQ worker, built once Redis answers (RQ's worker talks to Redis as it is made), however long that
    takes; None if a stop was requested meanwhile. Waits by :class:`Reconnect`'s capped back-off."""
    delay = link.lost(reason)
    while True:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:  # in slices, so a SIGTERM meanwhile ends the wait
            if stopping():
                return None
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        try:
            fresh = workers.new()
        except RedisError as exc:
            delay = link.lost(f"{type(exc).__name__}: {exc}")
            continue
        link.back()
        return fresh


def _memory(scorer: Scorer, model_thread: ThreadPoolExecutor | None) -> Callable[[], int]:
    """Resident memory; on MPS at least what the Metal driver holds for PyTorch, asked on the model's thread."""
    if not scorer.device.startswith("mps"):
        return resident_bytes
    import torch

    def measure() -> int:
        query = torch.mps.driver_allocated_memory
        held = model_thread.submit(query).result() if model_thread is not None else query()
        return max(resident_bytes(), int(held))

    return measure


def _queues(connection: Redis, names: list[str]) -> list[Queue]:
    return [Queue(name, connection=connection, serializer=SERIALIZER, job_class=rq_seam.RerankJob) for name in names]


class _WorkerFactory:
    """New RQ workers for the one resident model, each under a fresh name (RQ refuses to reuse a live one)."""

    def __init__(
        self,
        settings: Settings,
        connection: Redis,
        scorer: Scorer,
        model_thread: ThreadPoolExecutor | None,
        queue_names: list[str],
    ) -> None:
        self._settings = settings
        self._queue_names = queue_names
        self._connection = connection
        self._scorer = scorer
        self._model_thread = model_thread
        self.jobs_done = 0
        self.jobs_failed = 0

    def new(self) -> RerankWorker:
        return RerankWorker(
            _queues(self._connection, self._queue_names),
            name=f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}",
            connection=self._connection,
            serializer=SERIALIZER,
            worker_ttl=WORKER_TTL_S,
            log_job_description=False,
            scorer=self._scorer,
            max_batch_pairs=self._settings.max_batch_pairs,
            bulk_chunk_pairs=self._settings.bulk_chunk_pairs,
            model_thread=self._model_thread,
            max_batch_s=self._settings.max_batch_s,
            min_batch_pairs=self._scorer.batch_size,  # one micro-batch: the model's best batch is never cut
        )

    def retire(self, worker: RerankWorker) -> None:
        """Keep the counts of a worker loop that ended, for the heartbeat's totals."""
        self.jobs_done += worker.jobs_done
        self.jobs_failed += worker.jobs_failed
