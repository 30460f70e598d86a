"""The RQ worker class: jobs run in this process so the model stays resident, several at a time.

RQ's default ``Worker`` forks a work-horse per job, which breaks CUDA and MPS; ``SimpleWorker``
runs jobs in-process. :class:`RerankWorker` adds cross-request batching: after RQ hands it one
rerank job, it takes the rerank jobs already waiting (without blocking, up to a budget of pairs),
scores them all with one model call, then completes each job with its own result. A job with a
bad payload fails alone.

RQ's per-job bookkeeping (start, then success) costs about 1 ms of Python and several round trips
per job, which on a GPU is more than the model call; a batch does RQ's same writes, through RQ's own
methods, in one pipeline to start it and one transaction to finish it (dependents are then enqueued
by RQ). Failures, and jobs with repeats, go through RQ's own handlers. The model runs on its own
thread; on a GPU (``overlap``), while it scores one batch this thread finishes the previous batch
and gathers and starts the next, so the device does not wait for the queue work. On a CPU the same
work would take cores from the model's own threads (measured: about 15% less throughput on 2
cores), so there the batches take turns with it.

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
import time
import traceback
from concurrent.futures import Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from redis.client import Pipeline
from rq import Queue, SimpleWorker, get_current_job
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, now
from rq.worker import WorkerStatus

from rerank_contract.jobs import (
    ALLOWED_JOB_FUNCTIONS,
    PROGRESS_META,
    RERANK_JOB,
    SYNC_QUEUE,
    Progress,
    RerankPayload,
)
from rerank_worker import jobs, runtime

log = logging.getLogger(__name__)

#: Job ids taken from the sync queue per round trip while a batch is collected.
POP_GROUP = 16
#: How long one ``execute_job`` keeps feeding the model before RQ's own loop runs its upkeep again.
PIPELINE_S = 5.0


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


def _pairs(batch: list[_Running]) -> int:
    """The (query, candidate) pairs of the batch's valid jobs."""
    return sum(len(r.payload.candidates) for r in batch if r.payload is not None)


class RerankWorker(SimpleWorker):
    """A SimpleWorker that batches waiting rerank jobs and counts its outcomes for the heartbeat."""

    job_class = RerankJob
    #: RQ backs off up to a minute between reconnects while Redis is down; a few seconds suits a service.
    max_connection_wait_time = 5.0

    def __init__(self, *args: Any, max_batch_pairs: int, overlap: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_batch_pairs = max_batch_pairs
        self.overlap = overlap
        self._sync_queue = next(q for q in self.queues if q.name == SYNC_QUEUE)
        self.jobs_done = 0
        self.jobs_failed = 0
        self.batches = 0
        self.stopping = False
        self._last_compute_s = 0.0

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
        first = _Running(job, queue)
        self._parse(first)
        batch, foreign = self._collect_batch([first])
        foreign = self._run_pipelined(batch, foreign)
        if foreign is not None:
            super().execute_job(*foreign)

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
            batch, foreign = self._collect_batch([])
            if batch:
                self._start(batch)
                self._compute(batch, False)
                self._finish(batch)
            if foreign is not None:
                self._push_back([foreign[0].id])
                return
            if not batch:
                return

    def _collect_batch(self, batch: list[_Running]) -> tuple[list[_Running], tuple[Job, Queue] | None]:
        """``batch`` plus the rerank jobs waiting on the sync queue, up to :attr:`max_batch_pairs` pairs.

        Ids are taken :data:`POP_GROUP` at a time and their jobs fetched in one round trip; ids past the
        budget go back to the front of the queue in order. Stops at the first job that is not a rerank job
        and returns it, to be run on its own.
        """
        pairs = _pairs(batch)
        key = self._sync_queue.key
        while pairs < self.max_batch_pairs and not self._stop_requested:
            ids = [as_text(i) for i in self.connection.lpop(key, POP_GROUP) or []]
            if not ids:
                break
            jobs = self.job_class.fetch_many(ids, connection=self.connection, serializer=self.serializer)
            for index, job in enumerate(jobs):
                if pairs >= self.max_batch_pairs:
                    self._push_back(ids[index:])
                    return batch, None
                if job is None or _cancelled(job):  # expired or cancelled while queued: its caller gave up
                    continue
                if not _is_rerank(job):
                    self._push_back(ids[index + 1 :])
                    return batch, (job, self._sync_queue)
                running = _Running(job, self._sync_queue)
                pairs += self._parse(running)
                batch.append(running)
        return batch, None

    def _push_back(self, ids: list[str]) -> None:
        """Return job ids to the front of the sync queue, keeping their order."""
        if ids:
            self.connection.lpush(self._sync_queue.key, *reversed(ids))

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

    def _run_pipelined(self, batch: list[_Running], foreign: tuple[Job, Queue] | None) -> tuple[Job, Queue] | None:
        """Score ``batch`` and the batches that arrive meanwhile on the model thread.

        With :attr:`overlap`, while the model thread scores a batch, this thread collects and starts
        the next one from the jobs waiting, then finishes the previous one. Ends when the queue is
        empty, at a job that is not a rerank job (returned, to be run on its own), on a stop request,
        or after :data:`PIPELINE_S`. A batch that outlives its jobs' timeout fails them with
        ``JobTimeoutException``.
        """
        until = time.monotonic() + PIPELINE_S
        self._start(batch)
        scoring = self._submit(batch)
        while batch:
            upcoming: list[_Running] = []
            if self.overlap:
                upcoming, foreign = self._take_waiting([], foreign, until)
                if len(batch) > 1 or upcoming:  # under load: keep gathering while the model runs
                    upcoming, foreign = self._gather(scoring, upcoming, foreign, until)
            self._wait(scoring, batch)
            if upcoming:
                upcoming, foreign = self._take_waiting(upcoming, foreign, until)
                scoring = self._submit(upcoming)
                self._finish(batch)
            else:  # idle: answer first, then look for more work
                self._finish(batch)
                upcoming, foreign = self._take_waiting([], foreign, until)
                if upcoming:
                    scoring = self._submit(upcoming)
            batch = upcoming
        return foreign

    def _take_waiting(
        self, batch: list[_Running], foreign: tuple[Job, Queue] | None, until: float
    ) -> tuple[list[_Running], tuple[Job, Queue] | None]:
        """``batch`` plus the rerank jobs waiting now (see :meth:`_collect_batch`), the new ones started."""
        if foreign is not None or self._stop_requested or time.monotonic() > until:
            return batch, foreign
        known = len(batch)
        batch, foreign = self._collect_batch(batch)
        if len(batch) > known:
            self._start(batch[known:])
        return batch, foreign

    def _gather(
        self, scoring: Future[None], batch: list[_Running], foreign: tuple[Job, Queue] | None, until: float
    ) -> tuple[list[_Running], tuple[Job, Queue] | None]:
        """While the model scores, take arriving jobs into the next ``batch`` until its budget is full.

        The queue is looked at every 5% of the last model call (at least every 2 ms); the wait ends
        as soon as the model is done.
        """
        interval = max(0.002, 0.05 * self._last_compute_s)
        while foreign is None and _pairs(batch) < self.max_batch_pairs:
            done, _ = wait([scoring], timeout=interval)
            if done or self._stop_requested or time.monotonic() > until:
                break
            batch, foreign = self._take_waiting(batch, foreign, until)
        return batch, foreign

    def _submit(self, batch: list[_Running]) -> Future[None]:
        """Score ``batch`` on the model thread (with :attr:`overlap`), or here and now under RQ's job
        timeout alarm; a :class:`Future` either way."""
        if self.overlap:
            return runtime.submit(self._compute, batch, False)
        self._compute(batch, True)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def _wait(self, scoring: Future[None], batch: list[_Running]) -> None:
        """Wait for the model thread's batch; past the longest job timeout, fail the batch's jobs."""
        timeout = max(r.job.timeout or self.queue_class.DEFAULT_TIMEOUT for r in batch)
        try:
            scoring.result(timeout=timeout)
        except FutureTimeout:
            try:
                raise JobTimeoutException(f"the model call for this job's batch ran past {timeout} s") from None
            except JobTimeoutException:
                error = sys.exc_info()
            # New records: the model thread may still write to the ones it holds.
            batch[:] = [replace(running, result=None, error=error) for running in batch]

    def _compute(self, batch: list[_Running], alarm: bool) -> None:
        """Score the batch's valid jobs with one model call; if that call fails, each job alone.

        Runs on the model thread, or on this one (``alarm``: under RQ's job timeout; not between bulk
        chunks, whose own alarm must stay); touches only the batch's own :class:`_Running` records.
        """
        started = time.perf_counter()
        valid = [r for r in batch if r.payload is not None]
        self._score(valid, alarm)
        if len(valid) > 1 and any(r.error for r in valid):
            # A failure of the shared call says nothing about each job: retry them one by one.
            for running in valid:
                running.error = None
                self._score([running], alarm)
        self.batches += 1
        self._last_compute_s = time.perf_counter() - started

    def _finish(self, batch: list[_Running]) -> None:
        """Record each job's result (or failure) through RQ."""
        ended = now()
        for running in batch:
            running.job.ended_at = ended
        self._succeed([r for r in batch if r.error is None])
        for running in batch:
            if running.error is not None:
                self._fail(running)

    def _start(self, batch: list[_Running]) -> None:
        """RQ's start-of-job bookkeeping (``prepare_execution`` and ``prepare_job_execution``) for the
        whole batch in one round trip: each job is started, with its execution in the started registry."""
        with self.connection.pipeline() as pipe:
            longest = 0
            for running in batch:
                ttl = self.get_heartbeat_ttl(running.job)
                longest = max(longest, ttl)
                running.execution = Execution.create(running.job, ttl, pipeline=pipe, worker_name=self.name)
                running.job.heartbeat(now(), ttl, pipeline=pipe)
                running.job.prepare_for_execution(self.name, pipeline=pipe)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.set_current_job_id(batch[0].job.id, pipeline=pipe)
            self.set_current_job_working_time(0, pipeline=pipe)
            self.heartbeat(longest, pipeline=pipe)
            pipe.execute()

    def _score(self, members: list[_Running], alarm: bool) -> None:
        if not members:
            return
        payloads = [r.payload for r in members]
        try:
            if alarm:
                timeout = max(r.job.timeout or self.queue_class.DEFAULT_TIMEOUT for r in members)
                with self.death_penalty_class(timeout, JobTimeoutException, job_id=members[0].job.id):
                    scores, inference_ms = jobs.score_payloads(payloads)  # type: ignore[arg-type]
            else:
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

    def _succeed(self, done: list[_Running]) -> None:
        """RQ's success bookkeeping (``handle_job_success``) for the whole batch in one transaction.

        RQ watches each job's dependents set, reads it, then writes; here the read is inside the
        transaction instead, which keeps RQ's guard against a dependent enqueued meanwhile and saves
        two round trips: a dependent registered before the transaction is seen by it (and enqueued
        right after, by RQ's ``enqueue_dependents``), and one registered after it finds its parent
        finished and is enqueued by RQ at once. (A worker killed between the two leaves such
        dependents deferred; the API's jobs never have any.) Jobs with repeats to schedule go
        through RQ's own handler.
        """
        for running in done:
            running.job._result = running.result
        plain = [r for r in done if not r.job.repeats_left]
        if plain:
            with self.connection.pipeline() as pipe:
                for running in plain:
                    pipe.exists(running.job.dependents_key)
                for running in plain:
                    self._record_success(running, pipe)
                has_dependents = pipe.execute()[: len(plain)]
            self.jobs_done += len(plain)
            log.info("finished %d jobs (%s)", len(plain), ", ".join(r.job.id for r in plain))
            for running, dependents in zip(plain, has_dependents, strict=True):
                if dependents:
                    running.queue.enqueue_dependents(running.job)
        for running in done:
            if running.job.repeats_left:
                self.execution = running.execution
                running.job._status = JobStatus.FINISHED
                queue = running.queue
                self.handle_job_success(job=running.job, queue=queue, started_job_registry=queue.started_job_registry)

    def _record_success(self, running: _Running, pipe: Pipeline) -> None:
        """The writes of RQ's ``handle_job_success`` for a job without repeats (dependents: see :meth:`_succeed`)."""
        job, execution = running.job, running.execution
        assert job.started_at is not None and job.ended_at is not None and execution is not None
        self.increment_successful_job_count(pipeline=pipe)
        self.increment_total_working_time(job.ended_at - job.started_at, pipe)
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        if result_ttl != 0:
            job._handle_success(
                result_ttl,
                pipeline=pipe,
                worker_name=self.name,
                execution_id=execution.id,
                execution_started_at=execution.created_at,
                execution_ended_at=job.ended_at,
            )
        job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
        self.execution = execution
        self.cleanup_execution(job, pipeline=pipe)

    def _fail(self, running: _Running) -> None:
        """Fail one job through RQ's handlers, as ``perform_job`` would."""
        job, queue = running.job, running.queue
        assert running.error is not None
        self.execution = running.execution
        job._status = JobStatus.FAILED
        self.handle_exception(job, *running.error)
        self.handle_job_failure(
            job=job,
            queue=queue,
            started_job_registry=queue.started_job_registry,
            exc_string="".join(traceback.format_exception(*running.error)),
        )
