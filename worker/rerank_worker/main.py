"""``rerank-server worker``: load the model once, then serve the queues until SIGTERM.

SIGTERM once finishes the job in hand and exits; twice stops at once (RQ's two-step shutdown).
Start-up failures (model cannot load, Redis unreachable) exit with :data:`EXIT_STARTUP_FAILED`
so a supervisor can tell "cannot start" from "crashed". Once started, a Redis outage does not end
the process: the RQ loop is restarted with backoff, the model stays loaded. Two threads run beside
the RQ loop: the heartbeat (liveness for the API) and the reaper (jobs of dead workers back to RQ).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import StopRequested

from rerank_contract.jobs import QUEUES, SERIALIZER, WorkerInfo
from rerank_contract.redis_conn import connect
from rerank_contract.settings import Settings
from rerank_worker import bulk, runtime
from rerank_worker.device import resolve_device
from rerank_worker.heartbeat import Heartbeat
from rerank_worker.reaper import Reaper
from rerank_worker.reaper import run_forever as reaper_loop
from rerank_worker.worker import RerankJob, RerankWorker

log = logging.getLogger("rerank_worker")

EXIT_STARTUP_FAILED = 3
#: RQ's own worker TTL; its blocking dequeue waits ``WORKER_TTL_S - 15`` seconds per call.
WORKER_TTL_S = 60


def run(settings: Settings) -> int:
    """Run one worker process; returns its exit code."""
    try:
        model = runtime.Reranker(
            settings.model,
            device=resolve_device(settings.device),
            batch_size=settings.batch_size,
            max_length=settings.max_length,
            dtype=settings.dtype,
        )
        if settings.warmup:  # on the thread that will run the model: first calls on a thread are slower
            if runtime.on_model_thread(model.device):
                runtime.submit(model.warmup).result()
            else:
                model.warmup()
    except Exception:
        log.exception("cannot load model %s", settings.model)
        return EXIT_STARTUP_FAILED
    runtime.install(model)

    connection = connect(settings.redis_url, socket_timeout=WORKER_TTL_S)
    try:
        connection.ping()
    except Exception as exc:
        log.error("cannot reach Redis at %s: %s", settings.redis_url, exc)
        return EXIT_STARTUP_FAILED

    started_at = time.time()
    workers = _WorkerFactory(settings, connection)
    worker = workers.new()

    def info() -> WorkerInfo:
        return WorkerInfo(
            name=worker.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            model=model.model_name,
            device=model.device,
            dtype=model.dtype,
            max_length=model.max_length,
            queues=list(QUEUES),
            started_at=started_at,
            model_loads=runtime.loads,
            jobs_done=workers.jobs_done + worker.jobs_done,
            jobs_failed=workers.jobs_failed + worker.jobs_failed,
        )

    heartbeat = Heartbeat(
        connect(settings.redis_url, socket_timeout=5.0),
        info,
        interval_s=settings.heartbeat_interval_s,
        ttl_s=settings.heartbeat_ttl_s,
    )
    heartbeat.start()
    reaper_connection = connect(settings.redis_url, socket_timeout=5.0)
    reaper = Reaper(
        reaper_connection,
        [Queue(name, connection=reaper_connection, serializer=SERIALIZER) for name in QUEUES],
        grace_s=settings.heartbeat_ttl_s,
    )
    threading.Thread(
        target=reaper_loop, args=(reaper, settings.heartbeat_interval_s), name="rerank-reaper", daemon=True
    ).start()
    log.info("worker %s serving %s with %s on %s", worker.name, ", ".join(QUEUES), model.model_name, model.device)
    backoff = 0.5
    try:
        while True:
            try:
                worker.work(logging_level=settings.log_level)
                reason = "the worker loop ended"
            except RedisError as exc:
                reason = str(exc)
            if worker.stopping:  # SIGTERM: RQ finished the job in hand
                break
            # Redis went away (RQ quits its loop on some connection errors): keep the model, start a new loop.
            backoff = min(backoff * 2, 5.0)
            log.warning("lost Redis (%s): reconnecting in %.0f s", reason, backoff)
            time.sleep(backoff)
            workers.retire(worker)
            worker = workers.new()
    except StopRequested:
        pass
    finally:
        heartbeat.stop()
    return 0


class _WorkerFactory:
    """New RQ workers for the one resident model, each under a fresh name (RQ refuses to reuse a live one)."""

    def __init__(self, settings: Settings, connection: Redis) -> None:
        self._settings = settings
        self._connection = connection
        self.jobs_done = 0
        self.jobs_failed = 0

    def new(self) -> RerankWorker:
        worker = RerankWorker(
            list(QUEUES),
            name=f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}",
            connection=self._connection,
            serializer=SERIALIZER,
            job_class=RerankJob,
            worker_ttl=WORKER_TTL_S,
            log_job_description=False,
            max_batch_pairs=self._settings.max_batch_pairs,
            overlap=runtime.on_model_thread(runtime.resident().device),
        )
        bulk.install(bulk.BulkConfig(chunk_pairs=self._settings.bulk_chunk_pairs, after_chunk=worker.between_chunks))
        return worker

    def retire(self, worker: RerankWorker) -> None:
        """Keep the counts of a worker loop that ended, for the heartbeat's totals."""
        self.jobs_done += worker.jobs_done
        self.jobs_failed += worker.jobs_failed
