"""Sync batches: several waiting rerank jobs started, scored with one model call, and finished together.

A job with a bad payload, or one the shared call fails on, fails alone: when a shared call fails,
its jobs are scored again one by one. Every start, success and failure goes through
:mod:`rerank_worker.rq_seam`, so RQ's records stay as its own path writes them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.utils import now

from rerank_contract.jobs import RERANK_JOB, RerankPayload
from rerank_worker import admission, collector, jobs, rq_seam
from rerank_worker.scorer import Scorer

log = logging.getLogger(__name__)


@dataclass
class BatchJob:
    """One job of a batch, from its payload to its result or error."""

    running: rq_seam.Running
    payload: RerankPayload | None = None
    result: dict[str, Any] | None = None
    error: rq_seam.ExcInfo | None = None

    @property
    def job(self) -> Job:
        return self.running.job

    @property
    def pairs(self) -> int:
        return len(self.payload.candidates) if self.payload is not None else 0


def cancelled(job: Job) -> bool:
    """A job cancelled while queued (its caller gave up) but already popped: dropped unrun."""
    if job.get_status(refresh=False) != JobStatus.CANCELED:
        return False
    log.info("skipped cancelled job %s", job.id)
    return True


def batchable(job: Job) -> bool:
    """A sync rerank job that asks for nothing this worker refuses."""
    return admission.refusal(job) is None and job.func_name == RERANK_JOB


def batch_job(job: Job, queue: Queue) -> BatchJob:
    """The job as one of a batch; a payload that does not validate makes it fail alone."""
    running = BatchJob(rq_seam.Running(job, queue))
    try:
        (payload,) = job.args
        running.payload = RerankPayload.model_validate(payload)
    except Exception:
        running.error = rq_seam.caught()
    return running


class SyncBatches:
    """Collects, starts, scores and finishes sync batches for one worker."""

    def __init__(
        self,
        worker: SimpleWorker,
        scorer: Scorer,
        queue: Queue,
        *,
        max_batch_pairs: int,
        max_batch_s: float | None = None,
        min_batch_pairs: int = 1,
    ) -> None:
        self._worker = worker
        self._scorer = scorer
        self.queue = queue
        self._source = collector.QueueSource(queue, worker.job_class, worker.name)
        self.budget = collector.PairBudget(max_batch_pairs, max_batch_s=max_batch_s, min_pairs=min_batch_pairs)
        self.done = 0
        self.failed = 0
        self.calls = 0

    def stopping(self) -> bool:
        """SIGTERM asked the worker to stop: take no more jobs."""
        return rq_seam.stop_requested(self._worker)

    def collect(self, batch: list[BatchJob], *, unstarted: int = 0) -> Job | None:
        """Add the batchable jobs waiting now to ``batch``, within the pair budget, and start them with the last
        ``unstarted`` members already there (in one round trip); returns the first job that is not batchable (to
        be run on its own), or None."""
        known = len(batch) - unstarted

        def join(job: Job) -> int | None:
            if not batchable(job):
                return None
            batch.append(batch_job(job, self.queue))
            return batch[-1].pairs

        used = sum(m.pairs for m in batch)
        _, foreign = collector.collect(
            self._source,
            room=self.budget.pairs - used,
            join=join,
            skip=cancelled,
            stop=self.stopping,
        )
        if len(batch) > known:
            rq_seam.start(self._worker, [m.running for m in batch[known:]])
        return foreign

    def push_back(self, job: Job) -> None:
        """Return a job taken while collecting to the front of the queue, for later."""
        self._source.push_back([job.id])

    def score(self, batch: list[BatchJob], *, alarm: bool) -> None:
        """Score the batch's valid jobs with one model call; if that call fails, each job alone.

        ``alarm``: under RQ's job timeout (on the worker's own thread); touches only the batch's own
        :class:`BatchJob` records, so it may run on the model thread.
        """
        valid = [m for m in batch if m.payload is not None]
        started = time.perf_counter()
        self._score(valid, alarm)
        if not any(m.error for m in valid):
            self.budget.observe(sum(m.pairs for m in valid), time.perf_counter() - started)
        if len(valid) > 1 and any(m.error for m in valid):
            # A failure of the shared call says nothing about each job: retry them one by one.
            for one in valid:
                one.error = None
                self._score([one], alarm)
        self.calls += 1

    def _score(self, members: list[BatchJob], alarm: bool) -> None:
        if not members:
            return
        payloads = cast("list[RerankPayload]", [m.payload for m in members])  # the valid jobs: each has its payload
        try:
            if alarm:
                longest = max(rq_seam.job_timeout(m.job) for m in members)
                with rq_seam.time_limit(self._worker, longest, members[0].job):
                    scored = jobs.score_payloads(self._scorer, payloads)
            else:
                scored = jobs.score_payloads(self._scorer, payloads)
        except Exception:
            error = rq_seam.caught()
            for one in members:
                one.error = error
            return
        pairs = sum(len(p.candidates) for p in payloads)
        for one, job_scores, tokens in zip(members, scored.scores, scored.tokens, strict=True):
            job = one.job
            assert job.started_at is not None
            queue_ms = (job.started_at - job.enqueued_at).total_seconds() * 1000 if job.enqueued_at else 0.0
            one.result = jobs.rerank_result(
                self._scorer,
                job_scores,
                worker=self._worker.name,
                queue_ms=queue_ms,
                inference_ms=scored.inference_ms,
                batch_jobs=len(members),
                batch_pairs=pairs,
                tokens=tokens,
            )

    def finish(self, batch: list[BatchJob]) -> None:
        """Record each job's result, or its failure, through RQ."""
        ended = now()
        done = [(m.running, m.result) for m in batch if m.error is None]
        rq_seam.succeed(self._worker, done, ended)
        if done and log.isEnabledFor(logging.INFO):  # the ids are joined only when they will be logged
            log.info("finished %d jobs (%s)", len(done), ", ".join(r.job.id for r, _ in done))
        self.done += len(done)
        for one in batch:
            if one.error is not None:
                rq_seam.fail(self._worker, one.running, one.error, ended)
                self.failed += 1
