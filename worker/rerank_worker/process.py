"""One worker process, as an object with three steps: :meth:`~WorkerProcess.start`, :meth:`~WorkerProcess.serve`,
:meth:`~WorkerProcess.stop` (the shape of uvicorn's ``Server``).

``start`` loads the model once, reaches Redis, warms up and measures the micro-batch, then starts the threads
beside the RQ loop: the heartbeat (liveness for the API), the reaper (jobs of dead workers back to RQ) and, with
``RERANK_WORKER_MAX_JOBS`` or ``RERANK_WORKER_MAX_MEMORY_MB``, the retirement check (:mod:`rerank_worker.retire`).
A start-up failure (model cannot load, Redis unreachable, a default-queue clash) is one log line and
:data:`~rerank_contract.defaults.EXIT_STARTUP_FAILED`, so a supervisor can tell "cannot start" from "crashed".

``serve`` runs RQ's loop until SIGTERM (once: finish the job in hand; twice: at once, RQ's two-step shutdown).
A Redis outage does not end it: a new RQ worker is built once Redis answers (:mod:`rerank_worker.reconnect`:
capped back-off, one log line when Redis goes and one when it is back), same process, the model kept.
``stop`` ends the threads and gives back any job taken but not started.
"""

from __future__ import annotations

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

from rerank_contract.defaults import (
    EXIT_STARTUP_FAILED,
    REDIS_SOCKET_TIMEOUT_S,
    RETIRE_CHECK_S,
    STOP_CHECK_S,
    WORKER_TTL_S,
)
from rerank_contract.jobs import SERIALIZER, WorkerInfo
from rerank_contract.redis_conn import connect
from rerank_contract.settings import Settings
from rerank_worker import batch_runner, model_loader, model_source, rq_seam, taking
from rerank_worker.heartbeat import Heartbeat
from rerank_worker.reaper import Reaper
from rerank_worker.reconnect import Reconnect, quiet_rq_retries
from rerank_worker.retire import Retirement, resident_bytes
from rerank_worker.scorer import Scorer
from rerank_worker.served import Served, default_clash, every_queue
from rerank_worker.worker import RerankWorker

log = logging.getLogger("rerank_worker")


class StartupFailed(Exception):
    """The worker cannot start: the message is the one log line that says why. ``expected`` failures (offline, a
    wrong folder, Redis away) are that line alone; the others carry their cause's traceback."""

    def __init__(self, message: str, *, expected: bool = True) -> None:
        super().__init__(message)
        self.expected = expected


class WorkerProcess:
    """The resident model, its Redis connections and threads, and the RQ worker serving the model's queues."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = 0.0  # when it began to serve: its model loaded and ready (WorkerInfo.started_at)
        self._stopped = threading.Event()
        self._jobs_done = 0  # by RQ workers of this process that ended (a Redis outage replaces the worker)
        self._jobs_failed = 0

    def run(self) -> int:
        """Start, serve until stopped, stop; the process's exit code."""
        try:
            self.start()
        except StartupFailed as exc:
            log.error("%s", exc, exc_info=None if exc.expected else exc.__cause__)
            return EXIT_STARTUP_FAILED
        try:
            self.serve()
        finally:
            self.stop()
        return 0

    def start(self) -> None:
        """Load the model, reach Redis, get the model ready, and start the threads; raises :class:`StartupFailed`."""
        settings = self.settings
        self.scorer = self._load()
        self.connection = connect(settings.redis_url, socket_timeout=WORKER_TTL_S)
        try:
            self.connection.ping()
        except Exception as exc:
            raise StartupFailed(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc
        self.served = Served.from_settings(settings, self.scorer.model_name)
        self.scorer.model_name = self.served.name  # answers carry the canonical name
        if (clash := default_clash(self.connection, self.served)) is not None:
            raise StartupFailed(clash)
        self.model_thread = batch_runner.model_thread(self.scorer.device)
        self._ready()
        self.worker = self._new_worker()
        self._start_threads()
        log.info(
            "worker %s serving %s with %s (%s) on %s",
            self.worker.name,
            ", ".join(self.served.queues),
            settings.model,
            ", ".join(self.served.names),
            self.scorer.device,
        )

    def serve(self) -> None:
        """RQ's loop until a stop is asked; after a Redis outage, again with a new RQ worker."""
        link = Reconnect()
        quiet_rq_retries()
        try:
            while True:
                try:
                    self.worker.work(logging_level=self.settings.log_level)
                    reason = "the worker loop ended"
                except RedisError as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                if self.worker.stopping:  # SIGTERM: RQ finished the job in hand
                    return
                # Redis went away: keep the model, and a new RQ worker (a fresh name) once Redis answers.
                fresh = self._reconnect(link, self.worker.lost_redis or reason)
                if fresh is None:
                    return
                self._jobs_done += self.worker.jobs_done
                self._jobs_failed += self.worker.jobs_failed
                self.worker = fresh
        except StopRequested:
            pass

    def stop(self) -> None:
        """End the threads, and give back any job this worker took but did not start (normally there is none)."""
        self._stopped.set()
        try:
            if ids := taking.give_back(
                self._side_connection,
                self.worker.name,
                {name: Queue(name, connection=self._side_connection).key for name in self.served.queues},
            ):
                log.info("gave back %d jobs taken but not started", len(ids))
        except RedisError as exc:  # Redis is away: the reaper of another worker gives them back
            log.warning("could not give back the jobs taken but not started: %s", exc)
        self._heartbeat.stop()

    # --- start ----------------------------------------------------------------------------------

    def _load(self) -> Scorer:
        try:
            return model_loader.load(self.settings)
        except model_source.ModelUnavailable as exc:  # expected (offline, a wrong folder): one line, no traceback
            raise StartupFailed(str(exc)) from exc
        except Exception as exc:
            raise StartupFailed(f"cannot load model {self.settings.model}", expected=False) from exc

    def _ready(self) -> None:
        """Warm up (first calls are slower) and measure the micro-batch, on the thread the model will run on."""

        def ready() -> str | None:
            if self.settings.warmup:
                self.scorer.warmup()
            return self.scorer.tune()

        try:
            tuned = self.model_thread.submit(ready).result() if self.model_thread else ready()
        except Exception as exc:
            raise StartupFailed(f"model {self.settings.model} cannot score", expected=False) from exc
        if tuned:
            log.info("%s", tuned)

    def _start_threads(self) -> None:
        settings = self.settings
        self.started_at = time.time()
        self._side_connection = connect(settings.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S)
        side = self._side_connection
        self._reaper = Reaper(side, lambda: _queues(side, every_queue(side)), grace_s=settings.heartbeat_ttl_s)
        self._heartbeat = Heartbeat(
            connect(settings.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S),
            self._info,
            interval_s=settings.heartbeat_interval_s,
            ttl_s=settings.heartbeat_ttl_s,
        )
        self._heartbeat.start()
        threading.Thread(
            target=self._reaper.run,
            args=(settings.heartbeat_interval_s, self._stopped),
            name="rerank-reaper",
            daemon=True,
        ).start()
        retirement = Retirement(
            max_jobs=settings.worker_max_jobs,
            max_memory_mb=settings.worker_max_memory_mb,
            jobs=lambda: self.jobs_done + self.jobs_failed,
            memory=_memory(self.scorer, self.model_thread),
        )
        if retirement.enabled:
            threading.Thread(
                target=retirement.run, args=(RETIRE_CHECK_S, self._stopped), name="rerank-retire", daemon=True
            ).start()

    @property
    def jobs_done(self) -> int:
        return self._jobs_done + self.worker.jobs_done

    @property
    def jobs_failed(self) -> int:
        return self._jobs_failed + self.worker.jobs_failed

    def _info(self) -> WorkerInfo:
        """The heartbeat's record of this worker: what it serves, on what, and how it is doing."""
        scorer, served = self.scorer, self.served
        return WorkerInfo(
            name=self.worker.name,
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
            started_at=self.started_at,
            model_loads=type(scorer).loads,
            jobs_done=self.jobs_done,
            jobs_failed=self.jobs_failed,
            reaper_swept_at=self._reaper.swept_at,
            served_names=served.names,
            source=self.settings.model,
            default=served.default,
        )

    # --- serve ----------------------------------------------------------------------------------

    def _new_worker(self) -> RerankWorker:
        """An RQ worker for the resident model, under a fresh name (RQ refuses to reuse a live one's)."""
        settings = self.settings
        return RerankWorker(
            _queues(self.connection, self.served.queues),
            name=f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}",
            connection=self.connection,
            serializer=SERIALIZER,
            worker_ttl=WORKER_TTL_S,
            log_job_description=False,
            scorer=self.scorer,
            max_batch_pairs=settings.max_batch_pairs,
            bulk_chunk_pairs=settings.bulk_chunk_pairs,
            model_thread=self.model_thread,
            max_batch_s=settings.max_batch_s,
            min_batch_pairs=self.scorer.batch_size,  # one micro-batch: the model's best batch is never cut
        )

    def _reconnect(self, link: Reconnect, reason: str) -> RerankWorker | None:
        """A new RQ worker, built once Redis answers (RQ's worker talks to Redis as it is made), however long that
        takes; None if a stop was requested meanwhile. Waits by :class:`Reconnect`'s capped back-off."""
        delay = link.lost(reason)
        while True:
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:  # in slices, so a SIGTERM meanwhile ends the wait
                if self.worker.stopping:
                    return None
                time.sleep(min(STOP_CHECK_S, max(0.0, deadline - time.monotonic())))
            try:
                fresh = self._new_worker()
            except RedisError as exc:
                delay = link.lost(f"{type(exc).__name__}: {exc}")
                continue
            link.back()
            return fresh


def _memory(scorer: Scorer, model_thread: ThreadPoolExecutor | None) -> Callable[[], int]:
    """Resident memory; on MPS at least what the Metal driver holds for PyTorch, asked on the model's thread."""
    if not scorer.device.startswith("mps"):
        return resident_bytes
    import torch  # only on MPS, where the scorer has loaded it already

    def measure() -> int:
        query = torch.mps.driver_allocated_memory
        held = model_thread.submit(query).result() if model_thread is not None else query()
        return max(resident_bytes(), int(held))

    return measure


def _queues(connection: Redis, names: list[str]) -> list[Queue]:
    return [Queue(name, connection=connection, serializer=SERIALIZER, job_class=rq_seam.RerankJob) for name in names]
