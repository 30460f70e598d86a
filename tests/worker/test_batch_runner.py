"""When batches run (``rerank_worker.batch_runner``): overlapping the model on GPUs, and timeouts on both paths."""

from __future__ import annotations

import contextlib

import pytest
from rq import Queue
from rq.job import JobStatus

from rerank_contract.jobs import RERANK_JOB, RerankResult, ScoreMode
from tests.support.in_process_worker import fetch
from tests.support.seed import REQUESTS, SEED_CANDIDATES, SEED_QUERY
from tests.support.waiting import wait_until


def test_next_batch_is_collected_and_started_while_the_model_scores(
    run_burst, queue: Queue, reranker, monkeypatch
) -> None:
    """With overlap (GPU workers), under load, jobs arriving mid-call are started before the call returns."""
    real = reranker.score_many
    arrivals: list[str] = []
    started_during_call: list[bool] = []

    def slow_first_call(requests, mode):
        if not arrivals:
            arrivals.extend(queue.enqueue(RERANK_JOB, {"query": q, "candidates": c}).id for q, c in REQUESTS[2:])
            started = lambda: all(fetch(queue, i).get_status() == JobStatus.STARTED for i in arrivals)  # noqa: E731
            with contextlib.suppress(TimeoutError):  # asserted below, after the call
                wait_until(started, 10, "the jobs that arrived mid-call to start")
            started_during_call.append(started())
        return real(requests, mode)

    monkeypatch.setattr(reranker, "score_many", slow_first_call)
    first = [queue.enqueue(RERANK_JOB, {"query": q, "candidates": c}).id for q, c in REQUESTS[:2]]
    worker = run_burst(queue, overlap=True)
    assert started_during_call == [True]
    assert worker.batches == 2
    for job_id, (query, candidates) in zip([*first, *arrivals], REQUESTS, strict=True):
        result = RerankResult.model_validate(fetch(queue, job_id).return_value())
        want = real([(query, candidates)], ScoreMode.ACTIVATED).scores[0]
        assert [r.score for r in sorted(result.results, key=lambda r: r.index)] == pytest.approx(want, abs=1e-6)
    assert [RerankResult.model_validate(fetch(queue, i).return_value()).batch_jobs for i in arrivals] == [2] * 2


@pytest.mark.parametrize("overlap", [False, True], ids=["cpu-alarm", "gpu-model-thread"])
def test_a_batch_past_its_timeout_fails_its_jobs_and_the_worker_goes_on(
    run_burst, queue: Queue, reranker, monkeypatch, overlap: bool
) -> None:
    import time

    real = reranker.score_many

    def hangs_on_slow(requests, mode):
        if any(query == "slow" for query, _ in requests):
            time.sleep(2.5)  # a scorer that hangs past the job's 1 s timeout: the case under test
        return real(requests, mode)

    monkeypatch.setattr(reranker, "score_many", hangs_on_slow)
    slow = queue.enqueue(RERANK_JOB, {"query": "slow", "candidates": ["x"]}, job_timeout=1).id
    worker = run_burst(queue, overlap=overlap)
    failed = fetch(queue, slow)
    assert failed.get_status() == JobStatus.FAILED
    assert "JobTimeoutException" in failed.latest_result().exc_string
    good = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES}).id
    worker.work(burst=True)  # the same worker, its model thread free again
    assert fetch(queue, good).get_status() == JobStatus.FINISHED
    assert (worker.jobs_done, worker.jobs_failed) == (1, 1)
