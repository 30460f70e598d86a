"""``rerank-server worker``: load the model once, then serve the queues until SIGTERM
(:class:`~rerank_worker.process.WorkerProcess` does the work; this is the command's entry point)."""

from __future__ import annotations

from rerank_contract.settings import Settings
from rerank_worker.process import WorkerProcess


def run(settings: Settings) -> int:
    """Run one worker process; returns its exit code."""
    return WorkerProcess(settings).run()
