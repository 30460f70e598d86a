"""Fault injection for tests only: ``RERANK_TEST_FAULT`` names a point where the worker SIGKILLs itself.

``before-start:N``: in :func:`rerank_worker.rq_seam.start`, once jobs are taken off their queue and before
they are started, when the start holds at least N jobs. Tests kill the worker inside the window that
:mod:`rerank_worker.taking` closes, at the exact point rather than by a timing race. Unset (always, outside
tests), each point costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal

ENV = "RERANK_TEST_FAULT"


def before_start(jobs: int) -> None:
    """The point between taking ``jobs`` and starting them."""
    fault = os.environ.get(ENV)
    if fault and fault.startswith("before-start:") and jobs >= int(fault.split(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)
