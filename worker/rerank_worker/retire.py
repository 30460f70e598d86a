"""A worker that retires: past a job count or a memory limit it finishes the job in hand and exits 0.

Memory that a long-running worker cannot give back (MPS's per-shape graph cache, allocator
fragmentation) is released only by a fresh process. With ``RERANK_WORKER_MAX_JOBS`` or
``RERANK_WORKER_MAX_MEMORY_MB`` set, a watcher thread checks every ``RETIRE_CHECK_S`` and, once past
either, sends this process one SIGTERM: RQ's warm shutdown, which lets the job in hand finish (a bulk
job stops only at its end) and takes no new one. The process exits with 0, and its supervisor (``up``,
launchd, systemd, Compose) starts a fresh one; jobs still queued wait for it.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("rerank_worker")


def resident_bytes() -> int:
    """This process's resident memory: current on Linux, its peak elsewhere (macOS has no /proc)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class Retirement:
    """Decides when this worker has done enough; ``run`` watches and signals the process once."""

    def __init__(
        self,
        *,
        max_jobs: int | None,
        max_memory_mb: int | None,
        jobs: Callable[[], int],
        memory: Callable[[], int] = resident_bytes,
    ) -> None:
        self.max_jobs = max_jobs
        self.max_memory_mb = max_memory_mb
        self._jobs = jobs
        self._memory = memory

    @property
    def enabled(self) -> bool:
        return self.max_jobs is not None or self.max_memory_mb is not None

    def reason(self) -> str | None:
        """Why this worker should retire now, or None."""
        if self.max_jobs is not None and (done := self._jobs()) >= self.max_jobs:
            return f"{done} jobs done (RERANK_WORKER_MAX_JOBS={self.max_jobs})"
        if self.max_memory_mb is not None and (used := self._memory() // 2**20) >= self.max_memory_mb:
            return f"{used} MiB in use (RERANK_WORKER_MAX_MEMORY_MB={self.max_memory_mb})"
        return None

    def run(self, interval_s: float, stopped: threading.Event, retire: Callable[[], None] | None = None) -> None:
        """Until ``stopped``: check every ``interval_s``; past a limit, log why and ``retire`` (SIGTERM to self)."""
        while not stopped.wait(interval_s):
            try:
                why = self.reason()
            except Exception:  # a failed measurement must not end the worker
                log.exception("cannot check the worker's limits")
                continue
            if why is not None:
                log.info("worker retiring: %s; finishing the job in hand, then exiting for a fresh one", why)
                (retire or _terminate_self)()
                return


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
