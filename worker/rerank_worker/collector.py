"""Collecting a batch: the sync jobs waiting now, taken in order up to a budget of pairs.

Pure logic over a small :class:`JobSource` (pop ids, fetch their jobs, push ids back), so it can be
tested on fakeredis or a list. Ids are taken a few at a time and their jobs fetched in one round trip;
ids past the budget go back to the front of the queue in order, so nobody is overtaken.

The budget (:class:`PairBudget`) is the fixed pair cap, lowered to what the model scores in
``max_batch_s`` at the rate it showed on recent batches, but never below one micro-batch: on a slow CPU
a batch then ends in about a second instead of making every job in it wait for a 10-second call, while
the model still runs whole micro-batches; on a GPU the cap is the smaller of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rq import Queue
from rq.job import Job

from rerank_contract.defaults import POP_GROUP
from rerank_worker import taking


class PairBudget:
    """How many pairs the next batch may hold: ``max_pairs``, bounded by ``max_batch_s`` of expected compute."""

    #: Weight of the newest batch in the rate estimate: a few batches follow a change of load or length.
    SMOOTHING = 0.3

    def __init__(self, max_pairs: int, *, max_batch_s: float | None = None, min_pairs: int = 1) -> None:
        self.max_pairs = max_pairs
        self.max_batch_s = max_batch_s
        self.min_pairs = min(min_pairs, max_pairs)
        #: Pairs per second of recent model calls (None until a call of at least ``min_pairs`` was seen).
        self.pairs_per_s: float | None = None

    def observe(self, pairs: int, seconds: float) -> None:
        """Learn from a model call of ``pairs`` that took ``seconds`` (smaller calls say little of the rate)."""
        if pairs < self.min_pairs or seconds <= 0:
            return
        rate = pairs / seconds
        old = self.pairs_per_s
        self.pairs_per_s = rate if old is None else old + self.SMOOTHING * (rate - old)

    @property
    def pairs(self) -> int:
        if self.max_batch_s is None or self.pairs_per_s is None:
            return self.max_pairs
        return max(self.min_pairs, min(self.max_pairs, int(self.pairs_per_s * self.max_batch_s)))


class JobSource(Protocol):
    """The front of one queue."""

    def pop(self, count: int) -> list[str]:
        """Up to ``count`` job ids from the front, without blocking, each kept where a dead taker's are found."""
        ...

    def fetch(self, ids: list[str]) -> list[Job | None]:
        """The jobs of ``ids`` (None for one that expired), in order."""
        ...

    def push_back(self, ids: list[str]) -> None:
        """Put taken ``ids`` back at the front, in their order."""
        ...

    def drop(self, ids: list[str]) -> None:
        """Forget taken ``ids`` that will not run (expired or cancelled)."""
        ...


class QueueSource:
    """A :class:`JobSource` over an RQ queue's Redis list, taking into the worker's own list
    (:mod:`rerank_worker.taking`), from which starting a job moves it into RQ's started registry."""

    def __init__(self, queue: Queue, job_class: type[Job], taker: str) -> None:
        self._queue = queue
        self._job_class = job_class
        self._taker = taker

    def pop(self, count: int) -> list[str]:
        found = taking.take(self._queue.connection, self._taker, [self._queue.key], count)
        return [] if found is None else found[1]

    def fetch(self, ids: list[str]) -> list[Job | None]:
        return self._job_class.fetch_many(ids, connection=self._queue.connection, serializer=self._queue.serializer)

    def push_back(self, ids: list[str]) -> None:
        taking.put_back(self._queue.connection, self._taker, self._queue.key, ids)

    def drop(self, ids: list[str]) -> None:
        taking.drop(self._queue.connection, self._taker, ids)


def collect(
    source: JobSource,
    *,
    room: int,
    join: Callable[[Job], int | None],
    skip: Callable[[Job], bool],
    stop: Callable[[], bool] = lambda: False,
) -> tuple[int, Job | None]:
    """Offer waiting jobs to ``join`` until ``room`` pairs are used, the queue is empty or ``stop()``.

    ``join(job)`` takes a job into the batch and returns its pairs, or returns None for a job that
    cannot be batched: collecting stops there and that job is returned, to be run on its own. Jobs
    for which ``skip(job)`` is true (cancelled while queued) are dropped. Returns the pairs taken.
    """
    taken = 0
    while taken < room and not stop():
        ids = source.pop(POP_GROUP)
        if not ids:
            break
        gone: list[str] = []
        try:
            for index, job in enumerate(source.fetch(ids)):
                if taken >= room:
                    source.push_back(ids[index:])
                    return taken, None
                if job is None or skip(job):  # expired or cancelled while queued: its caller gave up
                    gone.append(ids[index])
                    continue
                pairs = join(job)
                if pairs is None:
                    source.push_back(ids[index + 1 :])
                    return taken, job
                taken += pairs
        finally:
            source.drop(gone)
    return taken, None
