"""Instructions, long-document chunking and token counts in the worker's jobs, with the trained tiny model."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Queue

from rerank_contract.jobs import BULK_JOB, BULK_QUEUE, SERIALIZER, SYNC_QUEUE, BulkResult, RerankPayload, ScoreMode
from rerank_worker import jobs
from rerank_worker.fake_scorer import FakeScorer
from tests.worker_fixtures import fetch

QUERY = "machine learning"
RELEVANT = "deep learning neural networks"
OTHERS = ["stock market", "pasta sauce", "garden soil"]


def long_document(reranker, chunks: int) -> str:
    """Cooking filler that fills ``chunks - 1`` chunks exactly, then the relevant sentence at the very end."""
    tokenizer = reranker.model.tokenizer
    room = reranker.max_length - reranker.measure(QUERY, [""], None)[0]  # what the query leaves for a document
    filler = " ".join(["cooking recipes baking bread kitchen knives pasta sauce"] * 40).split()
    words = []
    while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < room * (chunks - 1):
        words.append(filler[len(words)])
    assert len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) == room * (chunks - 1)
    return " ".join(words) + " " + RELEVANT


def test_chunking_reads_the_end_that_truncation_cuts_off(reranker, cross_encoder) -> None:
    # Asserted on predict of the pieces the worker should have scored, not on how the toy model (trained at test
    # time, on short texts) happens to rate a long one: that changes with the installed libraries.
    long = long_document(reranker, 3)
    docs = [*OTHERS, long]
    cut = jobs.score_payloads(reranker, [RerankPayload(query=QUERY, candidates=docs)])

    payload = RerankPayload(query=QUERY, candidates=docs, max_chunks_per_doc=5)
    prepared = reranker.prepare(payload)
    assert prepared.owners == [0, 1, 2, 3, 3, 3]
    assert "".join(prepared.texts[3:]).replace(" ", "") == long.replace(" ", "")  # the chunks cover it all
    assert prepared.texts[-1].strip() == RELEVANT  # the end is a chunk of its own
    assert all(n <= reranker.max_length for n in reranker.measure(QUERY, prepared.texts, None))
    chunk_scores = [float(s) for s in cross_encoder.predict([(QUERY, t) for t in prepared.texts[3:]])]
    assert chunk_scores[-1] != pytest.approx(chunk_scores[0], abs=1e-6)  # so reading the end changes the answer

    assert cut.scores[0][3] == pytest.approx(chunk_scores[0], abs=1e-6)  # cut: only the first chunk is read
    chunked = jobs.score_payloads(reranker, [payload])
    assert chunked.scores[0][3] == pytest.approx(max(chunk_scores), abs=1e-6)  # chunked: the best of all of them
    assert chunked.scores[0][:3] == pytest.approx(cut.scores[0][:3], abs=1e-6)
    assert chunked.tokens == [sum(reranker.measure(QUERY, prepared.texts, None))]  # every chunk is read
    assert cut.tokens == [sum(reranker.measure(QUERY, OTHERS, None)) + reranker.max_length]


def test_chunks_stop_at_max_chunks_per_doc(reranker) -> None:
    long = long_document(reranker, 4)
    prepared = reranker.prepare(RerankPayload(query=QUERY, candidates=[long], max_chunks_per_doc=2))
    assert prepared.owners == [0, 0] and long.startswith(prepared.texts[0])


def test_an_instruction_is_the_query_prefix_of_a_bert_model(reranker, cross_encoder) -> None:
    instruction = "Find passages about it:"
    docs = [RELEVANT, *OTHERS]
    got = reranker.score(QUERY, docs, ScoreMode.ACTIVATED, instruction)
    assert got == pytest.approx(
        [float(s) for s in cross_encoder.predict([(QUERY, d) for d in docs], prompt=instruction)]
    )
    assert got != pytest.approx(reranker.score(QUERY, docs))
    (tokens,) = jobs.score_payloads(
        reranker, [RerankPayload(query=QUERY, candidates=docs, instruction=instruction)]
    ).tokens
    tokenizer = reranker.model.tokenizer
    assert tokens == sum(len(tokenizer(instruction + QUERY, d)["input_ids"]) for d in docs)


class SpyScorer(FakeScorer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str | None, list[str]]] = []

    def score_many(self, requests, mode, instruction=None):
        self.calls.append((instruction, [q for q, _ in requests]))
        return super().score_many(requests, mode, instruction)


def test_jobs_with_different_instructions_never_share_a_model_call() -> None:
    scorer = SpyScorer()
    payloads = [
        RerankPayload(query="a", candidates=["a b"], instruction="one"),
        RerankPayload(query="b", candidates=["b"]),
        RerankPayload(query="c", candidates=["c"], instruction="two"),
        RerankPayload(query="d", candidates=["d"], instruction="one"),
        RerankPayload(query="e", candidates=["e"], instruction="one", score_mode="raw"),
    ]
    scored = jobs.score_payloads(scorer, payloads)
    assert sorted(scorer.calls, key=str) == sorted(
        [("one", ["a", "d"]), (None, ["b"]), ("two", ["c"]), ("one", ["e"])], key=str
    )
    assert scored.tokens == [3 + 1, 2, 3, 3, 3]  # the fake counts words: instruction, query and candidate
    assert scored.scores[0] == FakeScorer().score_many([("a", ["a b"])], ScoreMode.ACTIVATED).scores[0]


def test_fake_scorer_chunks_by_words() -> None:
    scorer = FakeScorer(max_length=4)
    prepared = scorer.prepare(RerankPayload(query="q", candidates=["x y z w v q"], max_chunks_per_doc=3))
    assert prepared.texts == ["x y z", "w v q"] and prepared.owners == [0, 0]
    (scores,) = jobs.score_payloads(
        scorer, [RerankPayload(query="q", candidates=["x y z w v q"], max_chunks_per_doc=3)]
    ).scores
    assert scores == [pytest.approx(1 / (1 + 2.718281828459045**-4))]  # the chunk holding the query word


def test_bulk_jobs_chunk_long_documents_as_sync_jobs_do(reranker) -> None:
    from rerank_worker.worker import RerankWorker

    long = long_document(reranker, 3)
    connection = fakeredis.FakeStrictRedis()
    bulk = Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER)
    sync = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
    items = [{"id": "x", "query": QUERY, "candidates": [*OTHERS, long]}]
    job = bulk.enqueue(BULK_JOB, {"items": items, "max_chunks_per_doc": 5})
    worker = RerankWorker(
        [sync, bulk],
        connection=connection,
        serializer=SERIALIZER,
        scorer=reranker,
        max_batch_pairs=8,
        bulk_chunk_pairs=2,
    )
    worker.work(burst=True)
    result = BulkResult.model_validate(fetch(bulk, job.id).return_value())
    want = jobs.score_payloads(reranker, [RerankPayload(query=QUERY, candidates=[*OTHERS, long], max_chunks_per_doc=5)])
    assert result.items[0].results[0].index == 3
    assert {r.index: r.score for r in result.items[0].results} == pytest.approx(dict(enumerate(want.scores[0])))
    assert result.tokens == want.tokens[0]


def test_bulk_jobs_carry_new_fields_only_when_set() -> None:
    """Workers older than ``instruction`` and ``max_chunks_per_doc`` refuse payloads naming them, even as null."""
    from rerank_contract.bulk_jobs import BulkJobs
    from rerank_contract.jobs import BulkPayload

    bulk_jobs = BulkJobs(fakeredis.FakeStrictRedis(), job_timeout_s=60, result_ttl_s=60, failure_ttl_s=60, retries=0)
    plain = bulk_jobs.fetch(bulk_jobs.submit(BulkPayload(items=[{"query": "q", "candidates": ["a"]}])))
    assert set(plain.args[0]) == {"items", "score_mode"}
    instructed = BulkPayload(items=[{"query": "q", "candidates": ["a"]}], instruction="i", max_chunks_per_doc=2)
    job = bulk_jobs.fetch(bulk_jobs.submit(instructed))
    assert BulkPayload.model_validate(job.args[0]) == instructed
