"""A worker that retires after a job count or a memory limit: the decision (under a real ``up``: tests/e2e)."""

from __future__ import annotations

import threading

from rerank_worker.retire import Retirement, resident_bytes


def test_it_retires_past_either_limit_and_not_before() -> None:
    state = {"jobs": 0, "memory": 100 * 2**20}
    retirement = Retirement(max_jobs=3, max_memory_mb=200, jobs=lambda: state["jobs"], memory=lambda: state["memory"])
    assert retirement.enabled and retirement.reason() is None
    state["jobs"] = 3
    assert retirement.reason() == "3 jobs done (RERANK_WORKER_MAX_JOBS=3)"
    state["jobs"], state["memory"] = 0, 250 * 2**20
    assert retirement.reason() == "250 MiB in use (RERANK_WORKER_MAX_MEMORY_MB=200)"
    assert not Retirement(max_jobs=None, max_memory_mb=None, jobs=lambda: 10**9).enabled


def test_the_watcher_retires_once_and_stops_watching() -> None:
    state = {"jobs": 0}
    calls: list[int] = []
    retirement = Retirement(max_jobs=2, max_memory_mb=None, jobs=lambda: state["jobs"])
    watcher = threading.Thread(
        target=retirement.run, args=(0.01, threading.Event(), lambda: calls.append(state["jobs"]))
    )
    watcher.start()
    state["jobs"] = 2
    watcher.join(10)
    assert not watcher.is_alive() and calls == [2]


def test_resident_memory_is_measured() -> None:
    assert 10 * 2**20 < resident_bytes() < 64 * 2**30
