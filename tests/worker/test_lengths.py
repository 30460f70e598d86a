"""The worker's token-length rules, with the tiny model's real tokenizer, and how a refusal reaches the API."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue
from rq.job import Job, JobStatus

from rerank_contract.jobs import RERANK_JOB, SERIALIZER, SYNC_QUEUE, InputTooLong, RerankPayload, TruncationSide
from rerank_worker import jobs
from tests.support.in_process_worker import burst

QUERY = "machine learning"  # 2 tokens; a pair adds 3 special tokens, so 59 text tokens fit in 64
TEXT = "deep learning neural networks gradient descent training"  # 7 tokens


def ids(reranker, text: str) -> list[int]:
    return reranker.model.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize(
    ("side", "kept"), [(TruncationSide.RIGHT, slice(None, 3)), (TruncationSide.LEFT, slice(-3, None))]
)
def test_clip_keeps_exactly_the_first_or_last_tokens(reranker, side: TruncationSide, kept: slice) -> None:
    from rerank_worker.lengths import clip

    short, cut = clip(reranker.model.tokenizer, ["deep learning", TEXT], 3, side)
    assert short == "deep learning"  # within the limit: untouched
    assert ids(reranker, cut) == ids(reranker, TEXT)[kept]


def test_default_payload_is_cut_by_the_model_and_counted_at_max_length(reranker) -> None:
    payload = RerankPayload(query=QUERY, candidates=[" ".join([TEXT] * 50), TEXT])
    prepared = reranker.prepare(payload)
    assert prepared.texts == payload.candidates and prepared.owners is None  # the model's own truncation cuts
    assert jobs.score_payloads(reranker, [payload]).tokens == [
        64 + len(reranker.model.tokenizer(QUERY, TEXT)["input_ids"])
    ]


def test_max_tokens_per_doc_cuts_each_candidate(reranker) -> None:
    payload = RerankPayload(query=QUERY, candidates=[TEXT, "deep"], max_tokens_per_doc=2)
    assert reranker.prepare(payload).texts == ["deep learning", "deep"]


def test_left_truncation_keeps_what_fits_after_the_query(reranker) -> None:
    long = " ".join(["cooking"] * 70) + " " + TEXT
    (kept,) = reranker.prepare(RerankPayload(query=QUERY, candidates=[long], truncation_side="left")).texts
    assert ids(reranker, kept) == ids(reranker, long)[-59:]


def test_truncate_false_accepts_a_pair_of_exactly_max_length(reranker) -> None:
    fits = " ".join(["cooking"] * 59)
    payload = RerankPayload(query=QUERY, candidates=[fits], truncate=False)
    assert reranker.prepare(payload).texts == [fits]
    with pytest.raises(InputTooLong, match="candidate 1 with the query is 65 tokens, the model takes at most 64"):
        reranker.prepare(RerankPayload(query=QUERY, candidates=[fits, fits + " cooking"], truncate=False))


def test_too_long_job_fails_with_a_message_the_api_recognises(reranker) -> None:
    queue = Queue(SYNC_QUEUE, connection=fakeredis.FakeStrictRedis(), serializer=SERIALIZER)
    too_long = queue.enqueue(RERANK_JOB, {"query": QUERY, "candidates": [" ".join([TEXT] * 20)], "truncate": False})
    fine = queue.enqueue(RERANK_JOB, {"query": QUERY, "candidates": [" ".join([TEXT] * 20)]})
    burst(queue, reranker)
    failed = Job.fetch(too_long.id, connection=queue.connection, serializer=SERIALIZER)
    assert failed.get_status() == JobStatus.FAILED
    message = InputTooLong.find(failed.latest_result().exc_string)
    assert message is not None and message.startswith("candidate 0 with the query is 145 tokens")
    assert Job.fetch(fine.id, connection=queue.connection, serializer=SERIALIZER).get_status() == JobStatus.FINISHED


def test_find_ignores_other_failures() -> None:
    assert InputTooLong.find("Traceback ...\nValueError: candidate 0 is too long") is None
    assert InputTooLong.find("") is None


def test_only_the_rules_that_need_lengths_measure_pairs(reranker, monkeypatch) -> None:
    """A default payload is tokenized once, by the scoring call that also counts its tokens."""
    measured: list[list[str]] = []
    real = reranker.measure
    monkeypatch.setattr(reranker, "measure", lambda q, texts, i: measured.append(texts) or real(q, texts, i))
    default = RerankPayload(query=QUERY, candidates=[TEXT, "deep"])
    assert jobs.score_payloads(reranker, [default]).tokens == [sum(real(QUERY, [TEXT, "deep"], None))]
    assert measured == []
    for rule in ({"truncate": False}, {"truncation_side": TruncationSide.LEFT}, {"max_chunks_per_doc": 2}):
        jobs.score_payloads(reranker, [default.model_copy(update=rule)])
        assert measured.pop() == [TEXT, "deep"], rule
