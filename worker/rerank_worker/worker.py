"""The RQ worker class: jobs run in this process so the model stays resident, several at a time.

RQ's default ``Worker`` forks a work-horse per job, which breaks CUDA and MPS; ``SimpleWorker``
runs jobs in-process. :class:`RerankWorker` adds cross-request batching: after RQ hands it one
rerank job, it takes the rerank jobs already waiting (without blocking, up to a budget of pairs),
scores them all with one model call, then completes each job with its own result through RQ's
own success and failure handlers. A job with a bad payload fails alone.

:class:`RerankJob` refuses every function outside the contract's allowlist before RQ imports it,
so a job naming ``os.system`` fails instead of running.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import Any

from rq import Queue, SimpleWorker
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import now
from rq.worker import WorkerStatus

from rerank_server.contract import ALLOWED_JOB_FUNCTIONS, RERANK_JOB, RerankPayload
from rerank_worker import jobs


class RefusedJob(Exception):
    """A job named a function this worker does not run."""


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

    def __init__(self, *args: Any, max_batch_pairs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_batch_pairs = max_batch_pairs
        self.jobs_done = 0
        self.jobs_failed = 0
        self.batches = 0

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        super().handle_job_success(job, queue, started_job_registry)
        self.jobs_done += 1

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry | None = None, exc_string: str = ""
    ) -> None:
        super().handle_job_failure(job, queue, started_job_registry, exc_string)
        self.jobs_failed += 1

    def execute_job(self, job: Job, queue: Queue) -> None:
        if not _is_rerank(job):
            super().execute_job(job, queue)
            return
        batch, leftover = self._collect_batch(_Running(job, queue))
        self._run_batch(batch)
        self.set_state(WorkerStatus.IDLE)
        if leftover is not None:
            super().execute_job(*leftover)

    def _collect_batch(self, first: _Running) -> tuple[list[_Running], tuple[Job, Queue] | None]:
        """``first`` plus the rerank jobs already queued, up to :attr:`max_batch_pairs` pairs.

        Stops at the first job that is not a rerank job and returns it to be run on its own.
        """
        batch = [first]
        pairs = self._parse(first)
        while pairs < self.max_batch_pairs and not self._stop_requested:
            found = self.queue_class.dequeue_any(
                self._ordered_queues,
                None,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )
            if found is None:
                break
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

    def _run_batch(self, batch: list[_Running]) -> None:
        for running in batch:
            running.execution = self.prepare_execution(running.job)
            self.prepare_job_execution(running.job)
            running.job.started_at = now()
        valid = [r for r in batch if r.payload is not None]
        self._score(valid)
        if len(valid) > 1 and any(r.error for r in valid):
            # A failure of the shared call says nothing about each job: retry them one by one.
            for running in valid:
                running.error = None
                self._score([running])
        self.batches += 1
        for running in batch:
            self._finish(running)

    def _score(self, members: list[_Running]) -> None:
        if not members:
            return
        timeout = max(r.job.timeout or self.queue_class.DEFAULT_TIMEOUT for r in members)
        try:
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=members[0].job.id):
                scores, inference_ms = jobs.score_payloads([r.payload for r in members])  # type: ignore[misc]
        except Exception:
            error = sys.exc_info()
            for running in members:
                running.error = error
            return
        for running, job_scores in zip(members, scores, strict=True):
            job = running.job
            queue_ms = (job.started_at - job.enqueued_at).total_seconds() * 1000 if job.enqueued_at else 0.0
            running.result = jobs.make_result(
                job_scores, worker=self.name, queue_ms=max(0.0, queue_ms), inference_ms=inference_ms
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
