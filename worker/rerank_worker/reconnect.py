"""Riding out a Redis outage: capped back-off between tries, and one log line per change of state.

A worker keeps its model however long Redis is away; what it must not do is fill its log with a line
(or a traceback) per try, or wait minutes after Redis is back. :class:`Reconnect` says how long to wait
before the next try and logs only when Redis goes away and when it answers again.
"""

from __future__ import annotations

import logging
import time

from rerank_contract.defaults import WORKER_RECONNECT_CAP_S, WORKER_RECONNECT_FIRST_S

log = logging.getLogger("rerank_worker")


class Reconnect:
    """The state of the worker's link to Redis: up, or down since a moment, with the next back-off."""

    def __init__(self, first_s: float = WORKER_RECONNECT_FIRST_S, cap_s: float = WORKER_RECONNECT_CAP_S) -> None:
        self._first_s = first_s
        self._cap_s = cap_s
        self._delay_s = first_s
        #: Monotonic time Redis was found gone, None while it answers.
        self.down_since: float | None = None

    def lost(self, reason: str) -> float:
        """Redis failed a call (``reason``); returns how long to wait before trying again. Logs on the first
        failure of an outage only."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            self._delay_s = self._first_s
            log.warning("lost Redis (%s): model kept, reconnecting every %g s at most", reason, self._cap_s)
            return self._delay_s
        self._delay_s = min(self._delay_s * 2, self._cap_s)
        return self._delay_s

    def back(self) -> None:
        """Redis answered: logs the end of an outage, once."""
        if self.down_since is not None:
            log.info("Redis is back after %.1f s: serving again", time.monotonic() - self.down_since)
            self.down_since = None


def _not_an_rq_retry(record: logging.LogRecord) -> bool:
    """RQ's wait for a job logs a line per reconnect try; :class:`Reconnect` says it once per outage instead."""
    return "could not connect to Redis" not in str(record.msg)


def quiet_rq_retries() -> None:
    """Drop RQ's own per-try reconnect lines from its worker log (idempotent)."""
    rq_log = logging.getLogger("rq.worker")
    if _not_an_rq_retry not in rq_log.filters:
        rq_log.addFilter(_not_an_rq_retry)
