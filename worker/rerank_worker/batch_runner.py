"""When batches run: one after another, or, on a GPU, overlapping the worker's queue work with the model.

On a GPU or MPS (:func:`overlaps`), the model scores one batch on its own thread while this thread
finishes the previous batch and gathers and starts the next, so the device does not wait for Redis.
On a CPU the same work would take cores from torch's own threads (measured: about 15% less throughput
on 2 cores), so there batches take turns with the model, which runs under RQ's job timeout alarm.
The model never runs two calls at once.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace

from rq.job import Job
from rq.timeouts import JobTimeoutException

from rerank_contract.defaults import OVERLAP_POLL_MIN_S, OVERLAP_POLL_SHARE, PIPELINE_S
from rerank_worker import rq_seam
from rerank_worker.sync_batches import BatchJob, SyncBatches


def model_thread(device: str) -> ThreadPoolExecutor | None:
    """The thread the model runs on, where batches on ``device`` overlap the worker's queue work (not on CPUs,
    see above); None: the model runs on the worker's thread."""
    return None if device.startswith("cpu") else ThreadPoolExecutor(1, thread_name_prefix="model")


class BatchRunner:
    """Runs sync batches for a worker; given a ``model_thread`` (one thread, the process's only caller of the
    model), overlapping them with the queue work."""

    def __init__(self, batches: SyncBatches, *, model_thread: ThreadPoolExecutor | None) -> None:
        self.batches = batches
        self.overlap = model_thread is not None
        self._model_thread = model_thread
        self._last_call_s = 0.0

    def run(self, batch: list[BatchJob]) -> Job | None:
        """Score ``batch`` (not yet started) and the batches that arrive meanwhile.

        Ends when the queue is empty, at a job that is not batchable (returned, to be run on its own),
        on a stop request, or after :data:`PIPELINE_S`, so RQ's own loop runs its upkeep. A batch that
        outlives its jobs' timeout fails them with ``JobTimeoutException``.
        """
        until = time.monotonic() + PIPELINE_S
        foreign = self.batches.collect(batch, unstarted=len(batch))
        scoring = self._submit(batch)
        while batch:
            upcoming: list[BatchJob] = []
            if self.overlap:
                foreign = self._take_waiting(upcoming, foreign, until)
                if len(batch) > 1 or upcoming:  # under load: keep gathering while the model runs
                    foreign = self._gather(scoring, upcoming, foreign, until)
            self._wait(scoring, batch)
            if upcoming:
                foreign = self._take_waiting(upcoming, foreign, until)
                scoring = self._submit(upcoming)
                self.batches.finish(batch)
            else:  # idle: answer first, then look for more work
                self.batches.finish(batch)
                foreign = self._take_waiting(upcoming, foreign, until)
                if upcoming:
                    scoring = self._submit(upcoming)
            batch = upcoming
        return foreign

    def serve_waiting(self) -> None:
        """Run the sync jobs waiting now, in turn with the model, on this thread and without a new alarm
        (between a bulk job's chunks, whose own alarm must stay); anything else waits for later."""
        while not self.batches.stopping():
            batch: list[BatchJob] = []
            foreign = self.batches.collect(batch)
            if batch:
                self.batches.score(batch, alarm=False)
                self.batches.finish(batch)
            if foreign is not None:
                self.batches.push_back(foreign)
                return
            if not batch:
                return

    def _take_waiting(self, batch: list[BatchJob], foreign: Job | None, until: float) -> Job | None:
        if foreign is not None or self.batches.stopping() or time.monotonic() > until:
            return foreign
        return self.batches.collect(batch)

    def _gather(self, scoring: Future[None], batch: list[BatchJob], foreign: Job | None, until: float) -> Job | None:
        """While the model scores, take arriving jobs into the next ``batch`` until its budget is full.

        The queue is looked at every 5% of the last model call (at least every 2 ms); the wait ends
        as soon as the model is done.
        """
        interval = max(OVERLAP_POLL_MIN_S, OVERLAP_POLL_SHARE * self._last_call_s)
        while foreign is None and sum(m.pairs for m in batch) < self.batches.budget.pairs:
            done, _ = wait([scoring], timeout=interval)
            if done or self.batches.stopping() or time.monotonic() > until:
                break
            foreign = self._take_waiting(batch, foreign, until)
        return foreign

    def _submit(self, batch: list[BatchJob]) -> Future[None]:
        """Score ``batch`` on the model thread, or here and now under RQ's job timeout alarm."""
        if self._model_thread is not None:
            return self._model_thread.submit(self._score, batch, False)
        self._score(batch, True)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def _score(self, batch: list[BatchJob], alarm: bool) -> None:
        started = time.perf_counter()
        self.batches.score(batch, alarm=alarm)
        self._last_call_s = time.perf_counter() - started

    def _wait(self, scoring: Future[None], batch: list[BatchJob]) -> None:
        """Wait for the model thread's batch; past the longest job timeout, fail the batch's jobs."""
        timeout = max(rq_seam.job_timeout(m.job) for m in batch)
        try:
            scoring.result(timeout=timeout)
        except FutureTimeout:
            try:
                raise JobTimeoutException(f"the model call for this job's batch ran past {timeout} s") from None
            except JobTimeoutException:
                error = rq_seam.caught()
            # New records: the model thread may still write to the ones it holds.
            batch[:] = [replace(m, result=None, error=error) for m in batch]
