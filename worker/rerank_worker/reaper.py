"""Find jobs held by dead workers and hand them back to RQ, within seconds instead of RQ's minutes.

RQ only notices an abandoned job when its StartedJobRegistry entry expires (the job's timeout plus
a minute, or a day for bulk jobs). Every worker here keeps a short-lived heartbeat record, so a
job whose worker's record has been gone for ``grace_s`` is abandoned: the reaper hands its registry
entry to RQ's own clean-up, which re-enqueues jobs that have retries left (bulk jobs are submitted
with some) and fails the others (a sync request's caller has already been answered 503 by then).
Jobs a dead worker took off a queue but never started (:mod:`rerank_worker.taking`) go back to the head
of their queue after the same grace. An abandoned job that asks for what this service refuses (callbacks,
webhooks, ...) is failed with that reason instead, so it is not run again. The queues must use
:class:`~rerank_worker.rq_seam.RerankJob`, so RQ's clean-up imports no callback.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError

from rerank_contract.jobs import worker_key
from rerank_worker import admission, rq_seam, taking

log = logging.getLogger(__name__)


class Reaper:
    """Call :meth:`sweep` every few seconds, from any number of workers; :attr:`swept_at` says when it last worked."""

    def __init__(self, connection: Redis, queues: list[Queue] | Callable[[], list[Queue]], *, grace_s: float) -> None:
        self._connection = connection
        self._queues = queues if callable(queues) else lambda: queues
        self._checked(self._queues())
        self._grace_s = grace_s
        self._orphaned_since: dict[str, float] = {}
        #: Unix time of the last sweep that completed, None before the first.
        self.swept_at: float | None = None

    def sweep(self) -> list[str]:
        """Hand back (or fail) the jobs whose worker stayed silent ``grace_s``; returns their ids."""
        now = time.monotonic()
        reaped: list[str] = []
        seen: set[str] = set()
        for queue in self._checked(self._queues()):  # every model's queues: any live worker hands back any job
            registry = queue.started_job_registry
            expired = []
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                seen.add(job_id)
                if not self._orphaned(job_id):
                    self._orphaned_since.pop(job_id, None)
                    continue
                if now - self._orphaned_since.setdefault(job_id, now) < self._grace_s:
                    continue
                entry = f"{job_id}:{execution_id}"
                try:
                    job = queue.job_class.fetch(job_id, connection=self._connection, serializer=queue.serializer)
                except NoSuchJobError:  # gone meanwhile: RQ's clean-up drops the entry
                    job = None
                if job is not None and (reason := admission.refusal(job)) is not None:
                    rq_seam.fail_orphan(self._connection, registry, job, entry, _described(reason))
                    log.warning("job %s of a dead worker failed: %s", job_id, reason)
                else:
                    expired.append(entry)
                reaped.append(job_id)
            if expired:
                rq_seam.expire_started(self._connection, registry, expired)
                for entry in expired:
                    log.warning(
                        "job %s was held by a dead worker: handed back to RQ (re-run if it has retries left)",
                        entry.split(":", 1)[0],
                    )
        reaped += self._give_back_taken(now, seen)
        self._orphaned_since = {k: v for k, v in self._orphaned_since.items() if k in seen and k not in reaped}
        self.swept_at = time.time()
        return reaped

    def _give_back_taken(self, now: float, seen: set[str]) -> list[str]:
        """Jobs taken but never started by workers silent for ``grace_s``: back at the head of their queues."""
        back: list[str] = []
        for taker in taking.dead_takers(self._connection):
            mark = f"taker:{taker}"
            seen.add(mark)
            if now - self._orphaned_since.setdefault(mark, now) < self._grace_s:
                continue
            ids = taking.give_back(self._connection, taker, {q.name: q.key for q in self._queues()})
            if ids:
                log.warning("%d jobs taken by dead worker %s, never started: back in their queues", len(ids), taker)
            self._orphaned_since.pop(mark, None)
            back += ids
        return back

    @staticmethod
    def _checked(queues: list[Queue]) -> list[Queue]:
        if any(q.job_class is not rq_seam.RerankJob for q in queues):
            raise TypeError("the reaper's queues must use RerankJob, so RQ's clean-up imports no callback")
        return queues

    def _orphaned(self, job_id: str) -> bool:
        worker = rq_seam.worker_of(self._connection, job_id)
        return worker is not None and not self._connection.exists(worker_key(worker))

    def run(self, interval_s: float, stopped: threading.Event) -> None:
        """The reaper's thread body: sweep every ``interval_s`` until ``stopped``; errors are logged, never fatal
        (the worker's record carries :attr:`swept_at`, so a reaper that keeps failing shows in ``/health``)."""
        failing = False
        while not stopped.wait(interval_s):
            try:
                self.sweep()
            except RedisError as exc:  # an outage: one line, no traceback
                if not failing:
                    log.warning("reaper cannot sweep, will keep trying: %s", exc)
                failing = True
            except Exception:
                if not failing:
                    log.exception("reaper cannot sweep, will keep trying")
                failing = True
            else:
                if failing:
                    log.info("reaper sweeping again")
                failing = False


def _described(error: Exception) -> str:
    """The error as RQ stores a job's failure: ``module.Type: message``, the last line of a traceback."""
    return "".join(traceback.format_exception_only(error)).strip()
