"""``rerank-server worker``: load the model once, then serve the queues until SIGTERM.

SIGTERM once finishes the job in hand and exits; twice stops at once (RQ's two-step shutdown).
Start-up failures (model cannot load, Redis unreachable) exit with :data:`EXIT_STARTUP_FAILED`
so a supervisor can tell "cannot start" from "crashed".
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from rerank_server.contract import QUEUES, SERIALIZER, WorkerInfo
from rerank_server.redis_conn import connect
from rerank_server.settings import Settings
from rerank_worker import bulk, runtime
from rerank_worker.device import resolve_device
from rerank_worker.heartbeat import Heartbeat
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
        if settings.warmup:
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

    name = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
    worker = RerankWorker(
        list(QUEUES),
        name=name,
        connection=connection,
        serializer=SERIALIZER,
        job_class=RerankJob,
        worker_ttl=WORKER_TTL_S,
        log_job_description=False,
        max_batch_pairs=settings.max_batch_pairs,
    )
    bulk.install(bulk.BulkConfig(chunk_pairs=settings.bulk_chunk_pairs, after_chunk=worker.between_chunks))
    started_at = time.time()

    def info() -> WorkerInfo:
        return WorkerInfo(
            name=name,
            host=socket.gethostname(),
            pid=os.getpid(),
            model=model.model_name,
            device=model.device,
            dtype=model.dtype,
            max_length=model.max_length,
            queues=list(QUEUES),
            started_at=started_at,
            model_loads=runtime.loads,
            jobs_done=worker.jobs_done,
            jobs_failed=worker.jobs_failed,
        )

    heartbeat = Heartbeat(
        connect(settings.redis_url, socket_timeout=5.0),
        info,
        interval_s=settings.heartbeat_interval_s,
        ttl_s=settings.heartbeat_ttl_s,
    )
    heartbeat.start()
    log.info("worker %s serving %s with %s on %s", name, ", ".join(QUEUES), model.model_name, model.device)
    try:
        worker.work(logging_level=settings.log_level)
    finally:
        heartbeat.stop()
    return 0
