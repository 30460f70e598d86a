"""The RQ worker class: jobs run in this process so the model stays resident, several at a time.

RQ's default ``Worker`` forks a work-horse per job, which breaks CUDA and MPS; ``SimpleWorker``
runs jobs in-process. :class:`RerankWorker` adds cross-request batching: after RQ hands it one
rerank job, it takes the rerank jobs already waiting (without blocking, up to a budget of pairs),
scores them all with one model call, then completes each job with its own result through RQ's
own success and failure handlers. A job with a bad payload fails alone.

:class:`RerankJob` refuses every function outside the contract's allowlist before RQ imports it,
so a job naming ``os.system`` fails instead of running.

Bulk jobs run through RQ's own path; after each chunk they call :meth:`RerankWorker.between_chunks`,
which records progress, keeps the job's heartbeat fresh, stops the job if it was cancelled, and
serves the sync jobs that arrived meanwhile, so a long bulk job delays a sync request by at most
one chunk.
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from rq import Queue, SimpleWorker, get_current_job
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, now
from rq.worker import WorkerStatus

from rerank_server.contract import (
    ALLOWED_JOB_FUNCTIONS,
    PROGRESS_META,
    RERANK_JOB,
    SYNC_QUEUE,
    Progress,
    RerankPayload,
)
from rerank_worker import jobs

log = logging.getLogger(__name__)


class RefusedJob(Exception):
    """A job named a function this worker does not run."""


class JobCancelled(Exception):
    """A running bulk job was cancelled; RQ records it as stopped."""


class RerankJob(Job):
    """A job that only runs this project's job functions."""

    def _execute(self) -> Any:
        if self.func_name not in ALLOWED_JOB_FUNCTIONS:
            raise RefusedJob(f"refused job {self.id}: {self.func_name!r} is not one of {sorted(ALLOWED_JOB_FUNCTIONS)}")
        return super()._execute()


def _is_rerank(job: Job) -> bool:
    try:
        return job.func_name == RERANK_JOB
    except DeserializationError:  # not JSON (a pickle, say): RQ's own path fails it
        return False


def _cancelled(job: Job) -> bool:
    """A job cancelled while queued (its caller gave up) but already popped: drop it unrun."""
    if job.get_status(refresh=False) != JobStatus.CANCELED:
        return False
    log.info("skipped cancelled job %s", job.id)
    return True


@dataclass
class _Running:
    """One job of a batch, from preparation to its result."""

    job: Job
    queue: Queue
    execution: Execution | None = None
    payload: RerankPayload | None = None
    result: dict[str, Any] | None = None
    error: tuple[Any, ...] | None = None  # sys.exc_info()


class RerankWorker(SimpleWorker):
    """A SimpleWorker that batches waiting rerank jobs and counts its outcomes for the heartbeat."""

    job_class = RerankJob
    #: RQ backs off up to a minute between reconnects while Redis is down; a few seconds suits a service.
    max_connection_wait_time = 5.0

    def __init__(self, *args: Any, max_batch_pairs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_batch_pairs = max_batch_pairs
        self._sync_queue = next(q for q in self.queues if q.name == SYNC_QUEUE)
        self.jobs_done = 0
        self.jobs_failed = 0
        self.batches = 0
        self.stopping = False

    def request_stop(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: remember it, so the process exits instead of restarting the loop."""
        self.stopping = True
        super().request_stop(signum, frame)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        super().handle_job_success(job, queue, started_job_registry)
        self.jobs_done += 1

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry | None = None, exc_string: str = ""
    ) -> None:
        super().handle_job_failure(job, queue, started_job_registry, exc_string)
        self.jobs_failed += 1

    def execute_job(self, job: Job, queue: Queue) -> None:
        if _cancelled(job):
            return
        if not _is_rerank(job):
            super().execute_job(job, queue)
            return
        batch, leftover = self._collect_batch(_Running(job, queue), sync_only=False)
        self._run_batch(batch, nested=False)
        self.set_state(WorkerStatus.IDLE)
        if leftover is not None:
            super().execute_job(*leftover)

    def between_chunks(self, progress: Progress) -> None:
        """Called by a running bulk job after each chunk (see :mod:`rerank_worker.bulk`)."""
        job = get_current_job()
        if job is None:
            return
        job.meta[PROGRESS_META] = progress.model_dump()
        job.save_meta()
        if job.get_status(refresh=True) in (JobStatus.CANCELED, JobStatus.STOPPED):
            self._stopped_job_id = job.id
            raise JobCancelled(f"job {job.id} was cancelled after {progress.done} of {progress.total} pairs")
        bulk_execution = self.execution
        self.maintain_heartbeats(job)
        if progress.done < progress.total:
            self._serve_sync()
        self.execution = bulk_execution
        self.set_current_job_id(job.id)
        self.set_state(WorkerStatus.BUSY)

    def _serve_sync(self) -> None:
        """Run the sync jobs waiting now, in batches; anything else waits for the bulk job to end."""
        while not self._stop_requested:
            found = self._pop_sync()
            if found is None:
                return
            if _cancelled(found[0]):
                continue
            if not _is_rerank(found[0]):
                self._sync_queue.push_job_id(found[0].id, at_front=True)
                return
            batch, leftover = self._collect_batch(_Running(*found), sync_only=True)
            self._run_batch(batch, nested=True)
            if leftover is not None:
                self._sync_queue.push_job_id(leftover[0].id, at_front=True)
                return

    def _pop_sync(self) -> tuple[Job, Queue] | None:
        """The next job on the sync queue, without blocking (RQ's ``dequeue_any`` would also take bulk jobs)."""
        while True:
            popped = self.queue_class.lpop([self._sync_queue.key], None, connection=self.connection)
            if popped is None:
                return None
            try:
                job = self.job_class.fetch(as_text(popped[1]), connection=self.connection, serializer=self.serializer)
            except NoSuchJobError:  # expired while queued (its caller gave up)
                continue
            return job, self._sync_queue

    def _pop(self, sync_only: bool) -> tuple[Job, Queue] | None:
        if sync_only:
            return self._pop_sync()
        return self.queue_class.dequeue_any(
            self._ordered_queues,
            None,
            connection=self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )

    def _collect_batch(self, first: _Running, *, sync_only: bool) -> tuple[list[_Running], tuple[Job, Queue] | None]:
        """``first`` plus the rerank jobs already queued, up to :attr:`max_batch_pairs` pairs.

        Stops at the first job that is not a rerank job and returns it to be run on its own.
        """
        batch = [first]
        pairs = self._parse(first)
        while pairs < self.max_batch_pairs and not self._stop_requested:
            found = self._pop(sync_only)
            if found is None:
                break
            if _cancelled(found[0]):
                continue
            if not _is_rerank(found[0]):
                return batch, found
            running = _Running(*found)
            pairs += self._parse(running)
            batch.append(running)
        return batch, None

    @staticmethod
    def _parse(running: _Running) -> int:
        """Validate the job's payload (a bad one fails that job alone); returns its number of pairs."""
        try:
            (payload,) = running.job.args
            running.payload = RerankPayload.model_validate(payload)
        except Exception:
            running.error = sys.exc_info()
            return 0
        return len(running.payload.candidates)

    def _run_batch(self, batch: list[_Running], *, nested: bool) -> None:
        """Score ``batch`` and finish its jobs. ``nested``: inside a bulk job, whose timeout alarm must stay."""
        for running in batch:
            running.execution = self.prepare_execution(running.job)
            self.prepare_job_execution(running.job)
            running.job.started_at = now()
        valid = [r for r in batch if r.payload is not None]
        self._score(valid, nested=nested)
        if len(valid) > 1 and any(r.error for r in valid):
            # A failure of the shared call says nothing about each job: retry them one by one.
            for running in valid:
                running.error = None
                self._score([running], nested=nested)
        self.batches += 1
        for running in batch:
            self._finish(running)

    def _score(self, members: list[_Running], *, nested: bool) -> None:
        if not members:
            return
        timeout = max(r.job.timeout or self.queue_class.DEFAULT_TIMEOUT for r in members)
        payloads = [r.payload for r in members]
        try:
            if nested:
                scores, inference_ms = jobs.score_payloads(payloads)  # type: ignore[arg-type]
            else:
                with self.death_penalty_class(timeout, JobTimeoutException, job_id=members[0].job.id):
                    scores, inference_ms = jobs.score_payloads(payloads)  # type: ignore[arg-type]
        except Exception:
            error = sys.exc_info()
            for running in members:
                running.error = error
            return
        pairs = sum(len(p.candidates) for p in payloads)  # type: ignore[union-attr]
        for running, job_scores in zip(members, scores, strict=True):
            job = running.job
            queue_ms = (job.started_at - job.enqueued_at).total_seconds() * 1000 if job.enqueued_at else 0.0
            running.result = jobs.make_result(
                job_scores,
                worker=self.name,
                queue_ms=max(0.0, queue_ms),
                inference_ms=inference_ms,
                batch_jobs=len(members),
                batch_pairs=pairs,
            )

    def _finish(self, running: _Running) -> None:
        """Complete one job through RQ's handlers, as ``perform_job`` would."""
        job, queue = running.job, running.queue
        job.ended_at = now()
        self.execution = running.execution
        if running.error is None:
            job._result = running.result
            job._status = JobStatus.FINISHED
            self.handle_job_success(job=job, queue=queue, started_job_registry=queue.started_job_registry)
            return
        job._status = JobStatus.FAILED
        self.handle_exception(job, *running.error)
        self.handle_job_failure(
            job=job,
            queue=queue,
            started_job_registry=queue.started_job_registry,
            exc_string="".join(traceback.format_exception(*running.error)),
        )
