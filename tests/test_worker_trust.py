"""The trust boundary: a Redis writer can enqueue our jobs, and nothing more.

A job hash can name callbacks (RQ would import and call them) and webhooks (RQ would send them to any
URL). Each path that could act on them is tried with jobs that ask for ``builtins.print`` callbacks and
webhooks to a local listener: the batched path, the bulk path, RQ's own worker path, RQ's registry
clean-up and the reaper. Nothing is printed, nothing reaches the listener, and jobs that ask are failed
with a reason. The worker runs with the fake scorer: no torch here.
"""

from __future__ import annotations

import builtins
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import fakeredis
import pytest
from rq import Callback, Queue, Retry, SimpleWorker
from rq.job import Job, JobStatus
from rq.webhook import Webhook

from rerank_contract.jobs import BULK_JOB, BULK_QUEUE, RERANK_JOB, SERIALIZER, SYNC_QUEUE, RerankResult

PAYLOAD = {"query": "machine learning", "candidates": ["machine learning basics", "cooking"]}


class Listener:
    """A local HTTP server that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                listener.requests.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hooks(self) -> list[Webhook]:
        return [Webhook(self.url, "finished"), Webhook(self.url, "failed")]


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.server.shutdown()


@pytest.fixture
def printed(monkeypatch) -> list[tuple]:
    """Calls of ``builtins.print``, which is what a ``builtins.print`` callback name resolves to."""
    calls: list[tuple] = []
    monkeypatch.setattr(builtins, "print", lambda *args, **kwargs: calls.append(args))
    return calls


@pytest.fixture
def queues() -> tuple[Queue, Queue]:
    connection = fakeredis.FakeStrictRedis()
    return (
        Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER),
        Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER),
    )


def callbacks() -> dict:
    return {
        "on_success": Callback("builtins.print"),
        "on_failure": Callback("builtins.print"),
        "on_stopped": Callback("builtins.print"),
    }


def fake_worker(queues):
    from rerank_worker.fake_scorer import FakeScorer
    from rerank_worker.worker import RerankWorker

    return RerankWorker(
        list(queues),
        connection=queues[0].connection,
        serializer=SERIALIZER,
        scorer=FakeScorer(),
        max_batch_pairs=512,
        bulk_chunk_pairs=2,
    )


def fetch(queue: Queue, job_id: str) -> Job:
    return Job.fetch(job_id, connection=queue.connection, serializer=SERIALIZER)


def assert_refused(queue: Queue, job_id: str, *asked: str) -> None:
    job = fetch(queue, job_id)
    assert job.get_status() == JobStatus.FAILED
    error = job.latest_result().exc_string
    assert f"RefusedJob: refused job {job_id}: this service runs no" in error
    for what in asked:
        assert what in error, error


def settle(listener: Listener) -> None:
    time.sleep(0.3)  # a webhook RQ sent would have arrived by now
    assert listener.requests == []


def test_batched_jobs_asking_for_callbacks_or_webhooks_are_refused_and_others_run(
    queues, listener: Listener, printed: list
) -> None:
    sync = queues[0]
    before = sync.enqueue(RERANK_JOB, PAYLOAD)
    with_callbacks = sync.enqueue(RERANK_JOB, PAYLOAD, **callbacks())
    with_webhooks = sync.enqueue(RERANK_JOB, PAYLOAD, webhooks=listener.hooks())
    after = sync.enqueue(RERANK_JOB, PAYLOAD)
    worker = fake_worker(queues)
    worker.work(burst=True)
    assert_refused(sync, with_callbacks.id, "success=builtins.print", "failure=builtins.print", "stopped=")
    assert_refused(sync, with_webhooks.id, f"webhooks ({listener.url}, {listener.url})")
    for job in (before, after):
        result = RerankResult.model_validate(fetch(sync, job.id).return_value())
        assert [r.index for r in result.results] == [0, 1]  # the fake scorer: word overlap
    assert (worker.jobs_done, worker.jobs_failed, worker.refused) == (2, 2, 2)
    assert printed == []
    settle(listener)


def test_bulk_jobs_asking_for_callbacks_or_webhooks_are_refused(queues, listener: Listener, printed: list) -> None:
    bulk = queues[1]
    items = {"items": [PAYLOAD, PAYLOAD]}
    job = bulk.enqueue(BULK_JOB, items, webhooks=listener.hooks(), retry=Retry(max=3), **callbacks())
    fine = bulk.enqueue(BULK_JOB, items)
    fake_worker(queues).work(burst=True)
    assert_refused(bulk, job.id, "callbacks", "webhooks")
    assert fetch(bulk, job.id).retries_left == 0  # refused once, not run again
    assert fetch(bulk, fine.id).get_status() == JobStatus.FINISHED
    assert printed == []
    settle(listener)


def test_repeats_are_refused(queues) -> None:
    from rq import Repeat

    job = queues[0].enqueue(RERANK_JOB, PAYLOAD, repeat=Repeat(times=3))
    fake_worker(queues).work(burst=True)
    assert_refused(queues[0], job.id, "repeats")


def test_rqs_own_worker_path_with_our_job_class_imports_and_sends_nothing(
    queues, listener: Listener, printed: list
) -> None:
    """Even a plain RQ worker using RerankJob (RQ's perform_job: success and failure paths) cannot be made to."""
    from rerank_worker.rq_seam import RerankJob

    sync = Queue(SYNC_QUEUE, connection=queues[0].connection, serializer=SERIALIZER, job_class=RerankJob)
    succeeds = sync.enqueue("os.getcwd", webhooks=listener.hooks(), **callbacks())
    fails = sync.enqueue("os.listdir", "/no/such/folder", webhooks=listener.hooks(), **callbacks())
    SimpleWorker([sync], connection=sync.connection, serializer=SERIALIZER, job_class=RerankJob).work(burst=True)
    assert fetch(sync, succeeds.id).get_status() == JobStatus.FINISHED
    assert fetch(sync, fails.id).get_status() == JobStatus.FAILED
    assert printed == []
    settle(listener)


def test_registry_clean_up_of_an_abandoned_job_calls_no_callback(queues, printed: list) -> None:
    """RQ's StartedJobRegistry.cleanup (run by any worker's maintenance) calls the failure callback of the jobs
    it expires: with RerankJob as the queue's job class it finds none."""
    from rerank_worker import rq_seam

    sync = Queue(SYNC_QUEUE, connection=queues[0].connection, serializer=SERIALIZER, job_class=rq_seam.RerankJob)
    job = sync.enqueue(RERANK_JOB, PAYLOAD, **callbacks())
    worker = fake_worker(queues)
    running = rq_seam.Running(sync.dequeue_any([sync], None, connection=sync.connection)[0], sync)
    rq_seam.start(worker, [running])  # a worker took it, then died
    sync.started_job_registry.cleanup(timestamp=time.time() + 10**6)
    assert fetch(sync, job.id).get_status() == JobStatus.FAILED
    assert printed == []


def test_reaper_fails_a_dead_workers_job_that_asks_for_callbacks_instead_of_re_running_it(
    queues, listener: Listener, printed: list
) -> None:
    from rerank_worker import rq_seam
    from rerank_worker.reaper import Reaper

    connection = queues[0].connection
    bulk = Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER, job_class=rq_seam.RerankJob)
    asks = bulk.enqueue(BULK_JOB, {"items": [PAYLOAD]}, retry=Retry(max=3), webhooks=listener.hooks(), **callbacks())
    plain = bulk.enqueue(BULK_JOB, {"items": [PAYLOAD]}, retry=Retry(max=3))
    dead = fake_worker(queues)  # never heartbeats: its record does not exist, as for a dead worker
    for job in (asks, plain):
        rq_seam.start(
            dead, [rq_seam.Running(rq_seam.RerankJob.fetch(job.id, connection=connection, serializer=SERIALIZER), bulk)]
        )
    connection.delete(bulk.key)
    reaper = Reaper(connection, [bulk], grace_s=0)
    assert sorted(reaper.sweep()) == sorted([asks.id, plain.id])
    assert_refused(bulk, asks.id, "callbacks", "webhooks")
    assert fetch(bulk, plain.id).get_status() == JobStatus.QUEUED  # handed back to RQ: re-run, it has retries
    assert bulk.get_job_ids() == [plain.id]
    assert reaper.swept_at is not None and reaper.swept_at > time.time() - 5
    assert printed == []
    settle(listener)


def test_the_reaper_refuses_queues_that_would_import_callbacks(queues) -> None:
    from rerank_worker.reaper import Reaper

    with pytest.raises(TypeError, match="RerankJob"):
        Reaper(queues[0].connection, [queues[0]], grace_s=1)


def test_the_worker_and_the_fake_scorer_need_no_torch() -> None:
    code = (
        "import sys; import rerank_worker.main, rerank_worker.worker, rerank_worker.reaper; "
        "from rerank_worker.model_loader import load; from rerank_contract.settings import Settings; "
        "s = load(Settings(scorer='fake')); s.warmup(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
