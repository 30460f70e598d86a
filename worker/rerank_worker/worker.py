"""The RQ worker class: jobs run in this process, so the model stays resident, and several at a time.

RQ's default ``Worker`` forks a work-horse per job, which breaks CUDA and MPS; ``SimpleWorker``
runs jobs in-process. :class:`RerankWorker` takes each job RQ dequeues and:

- refuses it (fails it with the reason) when :mod:`rerank_worker.admission` says so: a function
  outside the contract, callbacks, webhooks, repeats, or data that is not JSON;
- runs a sync rerank job together with the sync jobs waiting behind it (:mod:`rerank_worker.sync_batches`,
  scheduled by :mod:`rerank_worker.batch_runner`);
- runs a bulk job chunk by chunk (:mod:`rerank_worker.bulk`), serving the sync jobs that arrive
  between its chunks.

RQ's own job execution (``perform_job``) is never used: every start, success and failure goes through
:mod:`rerank_worker.rq_seam`, which writes what RQ's path writes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job

from rerank_contract.defaults import PUBSUB_POLL_S
from rerank_contract.jobs import BULK_JOB
from rerank_worker import admission, bulk, rq_seam, sync_batches, taking
from rerank_worker.batch_runner import BatchRunner
from rerank_worker.scorer import Scorer
from rerank_worker.sync_batches import SyncBatches

_P = ParamSpec("_P")
_R = TypeVar("_R")


class RedisLost(StopRequested):
    """Redis failed under RQ's loop: ends the loop quietly, for :mod:`rerank_worker.process` to reconnect.

    RQ's loop logs any other error as a crash, with a traceback, and its wait for a job retries a lost
    connection with a line per try; a ``StopRequested`` ends the loop without either.
    """


def _redis_lost_ends_loop(
    method: Callable[Concatenate[RerankWorker, _P], _R],
) -> Callable[Concatenate[RerankWorker, _P], _R]:
    """RQ's loop step ``method``, with a Redis error turned into :class:`RedisLost` (the reason kept)."""

    @functools.wraps(method)
    def wrapper(self: RerankWorker, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except RedisError as exc:
            self.lost_redis = f"{type(exc).__name__}: {exc}"
            raise RedisLost(self.lost_redis) from exc

    return wrapper


class RerankWorker(SimpleWorker):
    """A SimpleWorker that batches waiting rerank jobs, drives bulk jobs, and counts outcomes for the heartbeat."""

    job_class = rq_seam.RerankJob

    def __init__(
        self,
        *args: Any,
        scorer: Scorer,
        max_batch_pairs: int,
        bulk_chunk_pairs: int,
        model_thread: ThreadPoolExecutor | None = None,
        max_batch_s: float | None = None,
        min_batch_pairs: int = 1,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("job_class", rq_seam.RerankJob)
        super().__init__(*args, **kwargs)
        self.queue_class = rq_seam.taking_queue_class(self.name)  # what it dequeues is in its taken list
        self.scorer = scorer
        self.bulk_chunk_pairs = bulk_chunk_pairs
        sync_queue = self.queues[0]  # the model's own sync queue: queues come in priority order (worker_queues)
        self.sync = SyncBatches(
            self,
            scorer,
            sync_queue,
            max_batch_pairs=max_batch_pairs,
            max_batch_s=max_batch_s,
            min_batch_pairs=min_batch_pairs,
        )
        self.runner = BatchRunner(self.sync, model_thread=model_thread)
        self.refused = 0
        self.bulk_done = 0
        self.bulk_failed = 0
        self.stopping = False
        #: Inside RQ's dequeue (waiting for a job), where a stop request must end the wait at once.
        self._waiting = False
        #: Why Redis failed under RQ's loop (:class:`RedisLost`), None while it did not.
        self.lost_redis: str | None = None

    @property
    def jobs_done(self) -> int:
        return self.sync.done + self.bulk_done

    @property
    def jobs_failed(self) -> int:
        return self.sync.failed + self.bulk_failed + self.refused

    @property
    def batches(self) -> int:
        """Model calls made for sync batches."""
        return self.sync.calls

    def subscribe(self) -> None:
        """RQ's command channel, read in short slices so that stopping the worker never waits a minute for it."""
        rq_seam.subscribe(self, PUBSUB_POLL_S)

    def request_stop(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: remember it, so the process exits instead of restarting the loop.

        RQ's handler raises ``StopRequested`` whenever the worker is not BUSY, to end a wait for a job;
        but between RQ's dequeue and the start of what it popped (:func:`rq_seam.start`) the worker is not
        BUSY either, and raising there would drop a job that is in no queue any more. So outside the wait
        the request is kept instead, and the worker stops after the jobs in hand, as when BUSY. (Inside RQ's
        dequeue, after its pop has returned and before the dequeue does, RQ's own window of a few statements
        remains.)
        """
        self.stopping = True
        try:
            super().request_stop(signum, frame)
        except StopRequested:
            if self._waiting:
                raise
            rq_seam.keep_stop_request(self)
        except RedisError:  # RQ notes the request's date in Redis: during an outage the stop still counts
            rq_seam.keep_stop_request(self)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's wait for a job, which first honours a stop request that came after RQ's own check.

        RQ's loop looks at its stop flag, then its dequeue marks the worker idle: a request landing between
        the two found the worker BUSY, was only noted, and the worker then waited for a job anyway (a warm
        stop that hung until the next job or signal). Here the worker is marked idle first, so from then on a
        request raises; one that came before is in the flag, looked at next.
        """
        self._waiting = True
        try:
            rq_seam.mark_idle(self)
            if rq_seam.stop_requested(self):
                raise StopRequested()
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self._waiting = False

    @_redis_lost_ends_loop
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; also the first call of each turn of RQ's wait for a job, so a lost connection ends the
        wait here instead of in RQ's own retry loop."""
        super().heartbeat(timeout, pipeline)

    @_redis_lost_ends_loop
    def check_for_suspension(self, burst: bool) -> None:
        super().check_for_suspension(burst)

    @_redis_lost_ends_loop
    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()

    @_redis_lost_ends_loop
    def execute_job(self, job: Job, queue: Queue) -> None:
        next_job: Job | None = job
        while next_job is not None:
            next_job = self._execute(next_job, queue)
            queue = self.sync.queue

    def _execute(self, job: Job, queue: Queue) -> Job | None:
        """Run ``job`` (and, for a sync job, those waiting behind it); returns a job taken meanwhile that must
        run on its own next."""
        if sync_batches.cancelled(job):
            taking.drop(self.connection, self.name, [job.id])
            return None
        if (reason := admission.refusal(job)) is not None:
            rq_seam.refuse(self, job, queue, reason)
            self.refused += 1
            return None
        if job.func_name == BULK_JOB:
            ok = bulk.run(
                self,
                self.scorer,
                rq_seam.Running(job, queue),
                chunk_pairs=self.bulk_chunk_pairs,
                between_chunks=self.runner.serve_waiting,
            )
            self.bulk_done += ok
            self.bulk_failed += not ok
            return None
        return self.runner.run([sync_batches.batch_job(job, queue)])
