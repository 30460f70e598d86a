"""Find jobs held by dead workers and hand them back to RQ, within seconds instead of RQ's minutes.

RQ only notices an abandoned job when its StartedJobRegistry entry expires (the job's timeout plus
a minute, or a day for bulk jobs). Every worker here keeps a short-lived heartbeat record, so a
job whose worker's record has been gone for ``grace_s`` is abandoned: the reaper marks its registry
entry expired and lets RQ's own ``cleanup`` deal with it, which re-enqueues jobs that have retries
left (bulk jobs are submitted with some) and fails the others (a sync request's caller has already
been answered 503 by then).
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from rq import Queue
from rq.job import Job

from rerank_contract.jobs import worker_key

log = logging.getLogger(__name__)


class Reaper:
    """Call :meth:`sweep` every few seconds, from any number of workers."""

    def __init__(self, connection: Redis, queues: list[Queue], *, grace_s: float) -> None:
        self._connection = connection
        self._queues = queues
        self._grace_s = grace_s
        self._orphaned_since: dict[str, float] = {}

    def sweep(self) -> list[str]:
        """Expire the registry entries of jobs whose worker stayed silent ``grace_s``; returns their ids."""
        now = time.monotonic()
        reaped: list[str] = []
        seen: set[str] = set()
        for queue in self._queues:
            registry = queue.started_job_registry
            expired = []
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                seen.add(job_id)
                if not self._orphaned(job_id):
                    self._orphaned_since.pop(job_id, None)
                    continue
                if now - self._orphaned_since.setdefault(job_id, now) >= self._grace_s:
                    expired.append(f"{job_id}:{execution_id}")
            if expired:
                # score 0 = long expired; cleanup(timestamp=1) then handles exactly these entries
                self._connection.zadd(registry.key, dict.fromkeys(expired, 0), xx=True)
                registry.cleanup(timestamp=1)
                reaped += [entry.split(":", 1)[0] for entry in expired]
        for job_id in reaped:
            log.warning("job %s was held by a dead worker: handed back to RQ (re-run if it has retries left)", job_id)
        self._orphaned_since = {k: v for k, v in self._orphaned_since.items() if k in seen and k not in reaped}
        return reaped

    def _orphaned(self, job_id: str) -> bool:
        worker = self._connection.hget(Job.key_for(job_id), "worker_name")
        return bool(worker) and not self._connection.exists(worker_key(worker.decode()))


def run_forever(reaper: Reaper, interval_s: float) -> None:
    """The reaper's thread body: sweep every ``interval_s``; Redis errors are logged, never fatal."""
    failing = False
    while True:
        time.sleep(interval_s)
        try:
            reaper.sweep()
        except Exception as exc:
            if not failing:
                log.warning("reaper cannot sweep, will keep trying: %s", exc)
            failing = True
        else:
            failing = False
