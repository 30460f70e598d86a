"""Which registry ``/metrics`` reads: the app's own (one API process), or every process's files (several).

Several processes are simulated in this one: prometheus-client's multiprocess values take the process id
from a function, so two apps given two ids write two processes' files, as two uvicorn children would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from rerank_api import metrics
from rerank_api.app import create_app
from rerank_api.metrics import MULTIPROC_DIR_ENV, Metrics
from rerank_contract.settings import Settings


def samples(exposition: bytes) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition.decode())
        for s in family.samples
    }


def requests_total(exposition: bytes, status: str = "200") -> float:
    labels = frozenset({"method": "POST", "route": "/v1/rerank", "status": status}.items())
    return samples(exposition).get(("rerank_http_requests_total", labels), 0.0)


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], str]:
    """A multiprocess metrics folder; ``as_process(pid)`` makes the metrics built next that process's."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(folder))

    def as_process(pid: int) -> str:
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid))
        return str(folder)

    return as_process


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_one_process_counts_in_a_registry_of_each_apps_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    assert metrics.multiprocess_dir() is None
    first, second = (create_app(Settings()).state.metrics for _ in range(2))
    assert first.multiprocess_dir is None
    first.requests.labels("POST", "/v1/rerank", "200").inc()
    assert requests_total(first.exposition()) == 1
    assert requests_total(second.exposition()) == 0  # apps in one process do not share counts
    assert first.registry is not second.registry


def test_a_folder_set_after_prometheus_client_was_imported_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)  # as imported without the variable
    with pytest.raises(RuntimeError, match="set after prometheus_client was imported"):
        metrics.multiprocess_dir()


def test_apps_of_several_processes_show_the_sum_whichever_answers(shared_dir) -> None:
    folder = shared_dir(1001)
    first = create_app(Settings()).state.metrics
    assert metrics.multiprocess_dir() == folder and first.multiprocess_dir == folder
    shared_dir(1002)
    second = Metrics(lambda: None, multiprocess_dir=folder)
    first.requests.labels("POST", "/v1/rerank", "200").inc(2)
    second.requests.labels("POST", "/v1/rerank", "200").inc(3)
    second.requests.labels("POST", "/v1/rerank", "422").inc()
    first.latency.labels("POST", "/v1/rerank").observe(0.5)
    second.latency.labels("POST", "/v1/rerank").observe(0.25)
    for scraped in (first, second):
        text = scraped.exposition()
        assert requests_total(text) == 5 and requests_total(text, "422") == 1
        count = samples(text)[("rerank_http_request_duration_seconds_count", frozenset(ok_route().items()))]
        assert count == 2
        (family,) = scraped.latency_families()  # what /v1/status sums for the page
        sums = [s.value for s in family.samples if s.name.endswith("_sum") and s.labels == ok_route()]
        assert sums == [0.75]


def ok_route() -> dict[str, str]:
    return {"method": "POST", "route": "/v1/rerank"}


def test_in_flight_is_summed_over_live_processes_only(shared_dir) -> None:
    import os

    folder = shared_dir(os.getpid())
    alive = Metrics(lambda: None, multiprocess_dir=folder)
    gone = dead_pid()
    shared_dir(gone)
    dead = Metrics(lambda: None, multiprocess_dir=folder)
    alive.in_flight.inc()
    dead.in_flight.inc(4)  # a process killed with requests in hand
    dead.requests.labels("POST", "/v1/rerank", "200").inc(7)
    text = alive.exposition()
    assert samples(text)[("rerank_http_requests_in_flight", frozenset())] == 1
    assert requests_total(text) == 7  # what it answered stays counted: totals never go down
    assert not list(Path(folder).glob(f"gauge_live*_{gone}.db"))


def test_the_monitor_gauges_are_the_answering_processs_own(shared_dir) -> None:
    from rerank_api.monitor import Snapshot

    folder = shared_dir(2001)
    first = Metrics(lambda: Snapshot(redis_error=None, queue_depth={"rerank": 3}), multiprocess_dir=folder)
    shared_dir(2002)
    Metrics(lambda: Snapshot(redis_error=None, queue_depth={"rerank": 3}), multiprocess_dir=folder)
    got = samples(first.exposition())
    assert got[("rerank_queue_depth", frozenset({"queue": "rerank"}.items()))] == 3  # not 6
    assert got[("rerank_redis_up", frozenset())] == 1


def test_metrics_endpoint_of_a_shared_app_reads_every_process(shared_dir) -> None:
    folder = shared_dir(3001)
    other = Metrics(lambda: None, multiprocess_dir=folder)
    other.requests.labels("POST", "/v1/rerank", "200").inc(4)
    shared_dir(3002)
    app = create_app(Settings())
    with TestClient(app) as client:  # no Redis needed: the monitor reports it unreachable
        client.get("/metrics")
        text = client.get("/metrics").content
    assert requests_total(text) == 4
    labels = frozenset({"method": "GET", "route": "/metrics", "status": "200"}.items())
    assert samples(text)[("rerank_http_requests_total", labels)] == 1
