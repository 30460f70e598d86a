"""The worker in-process on fakeredis: real model, real RQ worker class, JSON jobs, the allowlist."""

from __future__ import annotations

import logging
import pickle
import zlib

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE, RerankResult
from tests.support.in_process_worker import fetch, make_worker
from tests.support.seed import REQUESTS, SEED_CANDIDATES, SEED_QUERY


def test_job_scores_equal_cross_encoder_predict(run_burst, queue: Queue, cross_encoder) -> None:
    job = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
    worker = run_burst(queue)
    result = RerankResult.model_validate(fetch(queue, job.id).return_value())
    want = cross_encoder.predict([(SEED_QUERY, c) for c in SEED_CANDIDATES])
    assert [r.index for r in result.results] == sorted(range(3), key=lambda i: -want[i])
    for r in result.results:
        assert r.score == pytest.approx(float(want[r.index]), abs=1e-6)
    assert result.device == "cpu"
    assert result.worker == worker.name
    assert worker.jobs_done == 1
    assert (result.batch_jobs, result.batch_pairs) == (1, 3)


def test_a_plain_rq_worker_fails_rerank_jobs_clearly(queue: Queue) -> None:
    """Only `rerank-server worker` holds the model; RQ's own worker gets a clear error, not a crash."""
    from rq import SimpleWorker

    job = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
    SimpleWorker([queue], connection=queue.connection, serializer=SERIALIZER).work(burst=True)
    failed = fetch(queue, job.id)
    assert failed.get_status() == JobStatus.FAILED
    assert "NotARerankWorker: rerank jobs run only on `rerank-server worker`" in failed.latest_result().exc_string


def test_raw_scores_are_logits(run_burst, queue: Queue, cross_encoder) -> None:
    import torch

    job = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES, "score_mode": "raw"})
    run_burst(queue)
    result = RerankResult.model_validate(fetch(queue, job.id).return_value())
    logits = cross_encoder.predict([(SEED_QUERY, c) for c in SEED_CANDIDATES], activation_fn=torch.nn.Identity())
    assert {r.index: r.score for r in result.results} == pytest.approx(dict(enumerate(map(float, logits))), abs=1e-5)
    assert min(r.score for r in result.results) < 0  # logits, not probabilities


def test_bad_payload_fails_that_job_only(run_burst, queue: Queue) -> None:
    bad = queue.enqueue(RERANK_JOB, {"query": "q", "candidates": "not a list"})
    good = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
    worker = run_burst(queue)
    assert fetch(queue, bad.id).get_status() == JobStatus.FAILED
    assert "candidates" in fetch(queue, bad.id).latest_result().exc_string
    assert fetch(queue, good.id).get_status() == JobStatus.FINISHED
    assert (worker.jobs_done, worker.jobs_failed) == (1, 1)


def test_job_naming_another_function_is_refused_not_run(run_burst, queue: Queue, tmp_path) -> None:
    marker = tmp_path / "pwned"
    job = queue.enqueue("os.system", f"touch {marker}")
    run_burst(queue)
    assert not marker.exists()
    failed = fetch(queue, job.id)
    assert failed.get_status() == JobStatus.FAILED
    assert "refused" in failed.latest_result().exc_string


def test_pickled_job_is_refused_and_worker_goes_on(run_burst, queue: Queue, tmp_path) -> None:
    pickled = Queue(SYNC_QUEUE, connection=queue.connection)  # default serializer: pickle
    marker = tmp_path / "pwned"
    evil = pickled.enqueue("os.system", f"touch {marker}")
    good = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
    raw = queue.connection.hget(evil.key, "data")
    assert pickle.loads(zlib.decompress(raw))[0] == "os.system"  # a real pickle, as sent
    worker = run_burst(queue)
    assert not marker.exists()
    assert queue.connection.hget(evil.key, "status") == b"failed"
    assert fetch(queue, good.id).get_status() == JobStatus.FINISHED
    assert (worker.jobs_done, worker.jobs_failed) == (1, 1)


def test_waiting_jobs_run_as_one_batch_with_the_same_scores_as_one_at_a_time(
    run_burst, queue: Queue, cross_encoder
) -> None:
    ids = [queue.enqueue(RERANK_JOB, {"query": q, "candidates": c}).id for q, c in REQUESTS]
    raw = queue.enqueue(RERANK_JOB, {"query": "astronomy", "candidates": ["planets and stars"], "score_mode": "raw"})
    worker = run_burst(queue)
    assert worker.batches == 1
    assert worker.jobs_done == len(REQUESTS) + 1
    pairs = sum(len(c) for _, c in REQUESTS) + 1
    for job_id, (query, candidates) in zip(ids, REQUESTS, strict=True):
        result = RerankResult.model_validate(fetch(queue, job_id).return_value())
        assert (result.batch_jobs, result.batch_pairs) == (len(REQUESTS) + 1, pairs)
        want = cross_encoder.predict([(query, c) for c in candidates])
        assert [r.index for r in result.results] == sorted(range(len(candidates)), key=lambda i: -want[i])
        assert {r.index: r.score for r in result.results} == pytest.approx(dict(enumerate(want.tolist())), abs=1e-5)
    import torch

    raw_score = RerankResult.model_validate(fetch(queue, raw.id).return_value()).results[0].score
    logit = cross_encoder.predict([("astronomy", "planets and stars")], activation_fn=torch.nn.Identity())[0]
    assert raw_score == pytest.approx(float(logit), abs=1e-5)  # a logit, though batched with activated jobs


def test_budget_of_one_pair_runs_jobs_one_by_one_with_equal_results(run_burst, queue: Queue) -> None:
    ids = [queue.enqueue(RERANK_JOB, {"query": q, "candidates": c}).id for q, c in REQUESTS]
    worker = run_burst(queue, max_batch_pairs=1)
    assert worker.batches == len(REQUESTS)
    alone = [RerankResult.model_validate(fetch(queue, i).return_value()) for i in ids]
    assert [(r.batch_jobs, r.batch_pairs) for r in alone] == [(1, len(c)) for _, c in REQUESTS]
    one_by_one = [fetch(queue, i).return_value()["results"] for i in ids]
    ids = [queue.enqueue(RERANK_JOB, {"query": q, "candidates": c}).id for q, c in REQUESTS]
    assert run_burst(queue).batches == 1
    batched = [fetch(queue, i).return_value()["results"] for i in ids]
    for a, b in zip(one_by_one, batched, strict=True):
        assert [r["index"] for r in a] == [r["index"] for r in b]
        assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-5)


def test_a_job_that_breaks_the_model_call_fails_alone(run_burst, queue: Queue, reranker, monkeypatch, caplog) -> None:
    real = reranker.score_many

    def fragile(requests, mode):
        if any(query == "boom" for query, _ in requests):
            raise RuntimeError("tokenizer exploded on 'boom'")
        return real(requests, mode)

    monkeypatch.setattr(reranker, "score_many", fragile)
    good = [queue.enqueue(RERANK_JOB, {"query": q, "candidates": c}).id for q, c in REQUESTS[:2]]
    bad = queue.enqueue(RERANK_JOB, {"query": "boom", "candidates": ["x"]}).id
    with caplog.at_level(logging.ERROR, logger="rq.worker"):
        worker = run_burst(queue)
    assert worker.batches == 1
    assert fetch(queue, bad).get_status() == JobStatus.FAILED
    assert "tokenizer exploded" in fetch(queue, bad).latest_result().exc_string
    # The worker's log names the failed job and carries its traceback, in batch mode too.
    (logged,) = [r.getMessage() for r in caplog.records if bad in r.getMessage()]
    assert "RuntimeError: tokenizer exploded on 'boom'" in logged
    assert [fetch(queue, i).get_status() for i in good] == [JobStatus.FINISHED] * 2
    # The shared call failed, so the good jobs were scored again one by one, and say so.
    retried = [RerankResult.model_validate(fetch(queue, i).return_value()) for i in good]
    assert [(r.batch_jobs, r.batch_pairs) for r in retried] == [(1, len(c)) for _, c in REQUESTS[:2]]
    assert (worker.jobs_done, worker.jobs_failed) == (2, 1)


def test_batch_stops_at_a_foreign_job_and_runs_it_after(run_burst, queue: Queue, tmp_path) -> None:
    first = queue.enqueue(RERANK_JOB, {"query": "finance", "candidates": ["bank loans"]}).id
    foreign = queue.enqueue("os.getcwd").id
    last = queue.enqueue(RERANK_JOB, {"query": "finance", "candidates": ["stock market"]}).id
    worker = run_burst(queue)
    assert fetch(queue, foreign).get_status() == JobStatus.FAILED
    assert [fetch(queue, i).get_status() for i in (first, last)] == [JobStatus.FINISHED] * 2
    assert worker.batches == 2


def test_dtype_auto_is_half_on_gpus_and_float_on_cpu() -> None:
    from rerank_worker.runtime import resolve_dtype

    assert [resolve_dtype("auto", d) for d in ("cuda", "cuda:1", "mps", "cpu")] == ["float16"] * 3 + ["float32"]
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"


def test_reduced_precision_model_loads_in_that_dtype_and_ranks_alike(model_dir, reranker) -> None:
    import torch

    from rerank_worker.runtime import Reranker

    loads = Reranker.loads
    half = Reranker(str(model_dir), device="cpu", batch_size=8, max_length=None, dtype="bfloat16")
    assert Reranker.loads == loads + 1  # what a worker's record reports as model_loads
    assert next(half.model.parameters()).dtype == torch.bfloat16
    full_scores = reranker.score(SEED_QUERY, SEED_CANDIDATES)
    half_scores = half.score(SEED_QUERY, SEED_CANDIDATES)
    assert half_scores == pytest.approx(full_scores, abs=0.05)
    assert sorted(range(3), key=lambda i: -half_scores[i]) == sorted(range(3), key=lambda i: -full_scores[i])


def test_job_cancelled_after_being_popped_is_not_run(queue: Queue, scorer) -> None:
    """The caller gave up after a worker's blocking pop took the job: the worker drops it unrun."""
    from rerank_worker.rq_seam import RerankJob

    job = queue.enqueue(RERANK_JOB, {"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
    job.cancel()  # e.g. the API's caller disconnected after the worker's blocking pop took the id
    worker = make_worker(queue, scorer)
    worker.execute_job(RerankJob.fetch(job.id, connection=queue.connection, serializer=SERIALIZER), queue)
    assert (worker.jobs_done, worker.jobs_failed, worker.batches) == (0, 0, 0)
    assert fetch(queue, job.id).get_status() == JobStatus.CANCELED
    assert fetch(queue, job.id).latest_result() is None


def test_jobs_past_the_pair_budget_wait_in_order_for_the_next_batch(run_burst, queue: Queue) -> None:
    ids = [queue.enqueue(RERANK_JOB, {"query": "finance", "candidates": [f"loan {i}"]}).id for i in range(40)]
    worker = run_burst(queue, max_batch_pairs=6)
    assert worker.batches == 7  # 6 + 6 + ... + 4: ids taken in groups past the budget went back to the front
    ended = [fetch(queue, i).ended_at for i in ids]
    assert ended == sorted(ended)  # first in, first served, across the put-back ids
    sizes = [RerankResult.model_validate(fetch(queue, i).return_value()).batch_jobs for i in ids]
    assert sizes == [6] * 36 + [4] * 4


def test_batched_bookkeeping_leaves_rq_registries_as_rq_does(run_burst, queue: Queue) -> None:
    ids = [queue.enqueue(RERANK_JOB, {"query": q, "candidates": c}).id for q, c in REQUESTS]
    worker = run_burst(queue)
    assert worker.batches == 1
    assert queue.started_job_registry.get_job_ids() == []
    assert sorted(queue.finished_job_registry.get_job_ids()) == sorted(ids)
    assert worker.connection.hget(worker.key, "successful_job_count") == str(len(ids)).encode()
    for job_id in ids:
        job = fetch(queue, job_id)
        assert job.get_status() == JobStatus.FINISHED
        assert job.worker_name == worker.name
        assert job.started_at <= job.ended_at
        assert job.latest_result().type.name == "SUCCESSFUL"
        assert 0 < queue.connection.ttl(job.key) <= 500  # RQ's default result_ttl


def test_dependents_of_a_batched_job_are_enqueued_by_rq(run_burst, queue: Queue) -> None:
    first = queue.enqueue(RERANK_JOB, {"query": "finance", "candidates": ["bank loans"]})
    other = queue.enqueue(RERANK_JOB, {"query": "astronomy", "candidates": ["black holes"]})
    after = queue.enqueue(RERANK_JOB, {"query": "finance", "candidates": ["stock market"]}, depends_on=first)
    assert after.get_status() == JobStatus.DEFERRED
    worker = run_burst(queue)
    assert [fetch(queue, j.id).get_status() for j in (first, other, after)] == [JobStatus.FINISHED] * 3
    assert worker.jobs_done == 3


def test_a_dependent_registered_while_its_parent_is_scored_is_enqueued(
    run_burst, queue: Queue, reranker, monkeypatch
) -> None:
    """The race RQ guards with WATCH: the dependent arrives after the batch started, before it finished."""
    real = reranker.score_many
    dependents: list[Job] = []

    def register_a_dependent(requests, mode):
        if not dependents:
            parent = fetch(queue, first.id)
            assert parent.get_status() == JobStatus.STARTED
            dependents.append(queue.enqueue(RERANK_JOB, {"query": "x", "candidates": ["y"]}, depends_on=parent))
            assert dependents[0].get_status() == JobStatus.DEFERRED
        return real(requests, mode)

    monkeypatch.setattr(reranker, "score_many", register_a_dependent)
    first = queue.enqueue(RERANK_JOB, {"query": "finance", "candidates": ["bank loans"]})
    worker = run_burst(queue)
    assert fetch(queue, dependents[0].id).get_status() == JobStatus.FINISHED
    assert worker.jobs_done == 2
    assert queue.deferred_job_registry.get_job_ids() == []
