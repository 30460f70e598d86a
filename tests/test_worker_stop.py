"""A stop request (SIGTERM) is never lost and never drops a job, wherever in RQ's loop it lands."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from rq import Queue
from rq.exceptions import StopRequested
from rq.job import JobStatus
from rq.worker import WorkerStatus

from rerank_contract.jobs import RERANK_JOB, RerankResult
from tests.conftest import SEED_CANDIDATES, SEED_QUERY
from tests.worker_fixtures import fetch, make_worker


@pytest.fixture(autouse=True)
def _signal_handlers() -> Iterator[None]:
    """RQ's handler installs its cold-stop handlers: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_a_stop_that_lands_after_rqs_own_check_ends_the_wait_for_jobs(queue: Queue, scorer) -> None:
    """RQ's loop checks its stop flag, then its dequeue marks the worker idle: a SIGTERM in between finds the
    worker BUSY (from the last job) and is only noted. The wait for a job must honour it, not block."""
    worker = make_worker(queue, scorer)
    worker.set_state(WorkerStatus.BUSY)  # the last job's state, still there when RQ's loop has checked
    worker.request_stop(signal.SIGTERM, None)
    started = time.monotonic()
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(1, max_idle_time=1)  # RQ's own would wait out the second, then None
    assert time.monotonic() - started < 0.5
    assert worker.stopping


def test_a_stop_between_the_dequeue_and_the_start_lets_the_job_run(queue: Queue, scorer, cross_encoder) -> None:
    """RQ's handler raises whenever the worker is not BUSY; right after its dequeue the popped job is in no
    queue and not started yet, so raising there would drop it. The job runs, and the worker stops after it."""
    job = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
    worker = make_worker(queue, scorer)
    dequeued, from_queue = worker.dequeue_job_and_maintain_ttl(1, max_idle_time=1)
    assert dequeued.id == job.id and worker.get_state() == WorkerStatus.IDLE
    assert queue.count == 0  # it is in the worker's hands only
    worker.request_stop(signal.SIGTERM, None)  # must not raise here
    worker.execute_job(dequeued, from_queue)
    finished = fetch(queue, job.id)
    assert finished.get_status() == JobStatus.FINISHED
    result = RerankResult.model_validate(finished.return_value())
    want = cross_encoder.predict([(SEED_QUERY, c) for c in SEED_CANDIDATES])
    assert {r.index: r.score for r in result.results} == pytest.approx(dict(enumerate(want.tolist())), abs=1e-6)
    with pytest.raises(StopRequested):  # and it waits for no further job
        worker.dequeue_job_and_maintain_ttl(1, max_idle_time=1)


def test_a_stop_while_waiting_for_jobs_ends_the_wait_at_once(queue: Queue, scorer) -> None:
    """While RQ's dequeue blocks, the request still raises, as RQ's does: an idle worker stops at once."""
    worker = make_worker(queue, scorer)
    signal.signal(signal.SIGALRM, lambda *_: worker.request_stop(signal.SIGTERM, None))
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    started = time.monotonic()
    try:
        with pytest.raises(StopRequested):
            worker.dequeue_job_and_maintain_ttl(5, max_idle_time=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert time.monotonic() - started < 3


def test_stopping_the_command_channel_waits_at_most_one_short_read(redis_server) -> None:
    """RQ unsubscribes, then stops its pub/sub thread. When the thread reads the UNSUBSCRIBE reply first, it waits
    for a new subscription as long as its read time, which RQ sets to 60 s, and redis-py 8.2's ``stop`` waits for
    the thread: a worker stop (SIGTERM, retirement) took up to a minute. The worker reads in short slices."""
    import threading

    from redis import Redis

    from rerank_contract.defaults import PUBSUB_POLL_S
    from rerank_contract.jobs import SERIALIZER, SYNC_QUEUE
    from rerank_worker.fake_scorer import FakeScorer
    from tests.conftest import wait_until

    connection = Redis.from_url(redis_server.url)
    worker = make_worker(Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER), FakeScorer())
    worker.subscribe()
    wait_until(lambda: worker.pubsub.subscribed, 10, "the subscription")
    worker.pubsub.unsubscribe()  # RQ's unsubscribe, first half
    wait_until(lambda: not worker.pubsub.subscribed, 10, "the thread to read the UNSUBSCRIBE reply")
    stopper = threading.Thread(target=worker.pubsub_thread.stop)  # its second half, once the thread waits again
    stopper.start()
    stopper.join(timeout=PUBSUB_POLL_S + 10)
    assert not stopper.is_alive(), "stopping the command channel's thread waited for its long read"
    worker.pubsub.close()
