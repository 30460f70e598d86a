"""The worker's own liveness record, independent of RQ's minutes-long worker TTLs.

A thread with its own Redis connection rewrites ``rerank:worker:<name>`` every
``heartbeat_interval_s`` with a TTL of ``heartbeat_ttl_s`` (and its model's
:class:`~rerank_contract.jobs.ModelRecord`, kept a day, so the API tells a model that is down from an unknown
name). While a job runs, RQ's SimpleWorker sends no heartbeats, but this thread keeps going (torch releases
the GIL), so the API can tell a busy worker from a dead one within seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis

from rerank_contract.defaults import KNOWN_MODEL_TTL_S
from rerank_contract.jobs import MODELS_SET, WORKERS_SET, ModelRecord, WorkerInfo, model_key, worker_key

log = logging.getLogger(__name__)


class Heartbeat:
    """Publishes ``info()`` until :meth:`stop`, then removes the record so readers see the exit at once."""

    def __init__(self, connection: Redis, info: Callable[[], WorkerInfo], *, interval_s: float, ttl_s: float) -> None:
        self._connection = connection
        self._info = info
        self._interval_s = interval_s
        self._ttl_ms = int(ttl_s * 1000)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rerank-heartbeat", daemon=True)
        self._failing = False

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        """Write the record once; Redis errors are logged (once per outage), never raised."""
        info = self._info()
        try:
            with self._connection.pipeline(transaction=False) as pipe:
                pipe.set(worker_key(info.name), info.model_dump_json(), px=self._ttl_ms)
                pipe.sadd(WORKERS_SET, info.name)
                record = ModelRecord(name=info.model, served_names=info.names, last_seen=time.time())
                pipe.set(model_key(info.model), record.model_dump_json(), ex=KNOWN_MODEL_TTL_S)
                pipe.sadd(MODELS_SET, info.model)
                pipe.execute()
        except Exception as exc:
            if not self._failing:
                log.warning("heartbeat failed, will keep trying: %s", exc)
            self._failing = True
        else:
            if self._failing:
                log.info("heartbeat restored")
            self._failing = False

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.beat()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval_s + 5)
        name = self._info().name
        try:
            with self._connection.pipeline(transaction=False) as pipe:
                pipe.delete(worker_key(name))
                pipe.srem(WORKERS_SET, name)
                pipe.execute()
        except Exception as exc:
            log.warning("could not remove heartbeat record of %s: %s", name, exc)
