"""Decoder rerankers (a causal LM plus ``LogitScore``, as Qwen3-Reranker) in both folder layouts, on the tiny model.

Scores equal ``CrossEncoder.predict`` (with ``prompt=`` for instructions); activated scores are the sigmoid
of the logit difference, raw ones the difference itself; the length rules work on the chat-rendered input.
"""

from __future__ import annotations

import math
from pathlib import Path

import fakeredis
import pytest
import torch
from rq import Queue

from rerank_contract.defaults import EXIT_STARTUP_FAILED, MODEL_MAX_LENGTH_CAP
from rerank_contract.jobs import (
    BULK_JOB,
    BULK_QUEUE,
    SERIALIZER,
    SYNC_QUEUE,
    BulkResult,
    InputTooLong,
    RerankPayload,
    ScoreMode,
)
from rerank_contract.settings import Settings
from rerank_worker import jobs
from tests.support import tiny_decoder
from tests.support.in_process_worker import fetch

QUERY = "machine learning"
DOCS = ["deep learning neural networks", "cooking recipes", "black holes and distant galaxies"]
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
MAX_LENGTH = 128


@pytest.fixture(scope="session")
def decoders(decoder_dirs: dict[str, Path]):
    from rerank_worker.runtime import Reranker

    return {
        layout: Reranker(str(folder), device="cpu", batch_size=8, max_length=MAX_LENGTH)
        for layout, folder in decoder_dirs.items()
    }


@pytest.fixture(scope="session")
def cross_encoders(decoder_dirs: dict[str, Path]):
    from sentence_transformers import CrossEncoder

    return {
        layout: CrossEncoder(str(folder), device="cpu", max_length=MAX_LENGTH)
        for layout, folder in decoder_dirs.items()
    }


def predict_raw(model, pairs, **kwargs) -> list[float]:
    return [float(s) for s in model.predict(pairs, activation_fn=torch.nn.Identity(), **kwargs)]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("layout", ["hub", "st"])
@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_scores_equal_predict_activated_in_unit_interval(decoders, cross_encoders, layout, instruction) -> None:
    reranker, model = decoders[layout], cross_encoders[layout]
    assert reranker.decoder and reranker.max_length == MAX_LENGTH
    pairs = [(QUERY, d) for d in DOCS]
    raw = predict_raw(model, pairs, prompt=instruction)
    assert reranker.score(QUERY, DOCS, ScoreMode.RAW, instruction) == pytest.approx(raw, abs=1e-5)
    activated = reranker.score(QUERY, DOCS, ScoreMode.ACTIVATED, instruction)
    assert activated == pytest.approx([sigmoid(x) for x in raw], abs=1e-6)
    assert all(0 <= s <= 1 for s in activated)
    if layout == "hub":  # its activation is the library's default Sigmoid: exactly what predict gives
        assert activated == pytest.approx([float(s) for s in model.predict(pairs, prompt=instruction)], abs=1e-6)
    else:  # saved with Identity: predict gives the raw logit difference, the API still gives P(yes)
        assert [float(s) for s in model.predict(pairs, prompt=instruction)] == pytest.approx(raw, abs=1e-6)


def test_an_instruction_changes_what_the_model_reads(decoders) -> None:
    reranker = decoders["hub"]
    plain = reranker.score(QUERY, DOCS, ScoreMode.RAW)
    instructed = reranker.score(QUERY, DOCS, ScoreMode.RAW, INSTRUCTION)
    assert plain != pytest.approx(instructed, abs=1e-6)
    rendered = reranker.model.tokenizer.decode(
        reranker.model.preprocess([(QUERY, DOCS[0])], prompt=INSTRUCTION)["input_ids"][0]
    )
    assert f"<Instruct>: {INSTRUCTION}" in rendered


def rendered_length(reranker, text: str, instruction: str | None = None) -> int:
    return reranker.measure(QUERY, [text], instruction)[0]


def test_lengths_count_the_rendered_template(decoders) -> None:
    reranker = decoders["hub"]
    tokenizer = reranker.model.tokenizer
    plain = len(tokenizer(QUERY, DOCS[0])["input_ids"])
    rendered = rendered_length(reranker, DOCS[0])
    assert rendered > plain + 20  # the template's system text and markers
    assert rendered_length(reranker, DOCS[0], INSTRUCTION) > rendered
    (tokens,) = jobs.score_payloads(
        reranker, [RerankPayload(query=QUERY, candidates=DOCS, instruction=INSTRUCTION)]
    ).tokens
    assert tokens == sum(rendered_length(reranker, d, INSTRUCTION) for d in DOCS)
    features = reranker.model.preprocess([(QUERY, d) for d in DOCS], prompt=INSTRUCTION)
    assert tokens == int(features["attention_mask"].sum())  # what predict feeds the model


def test_truncate_false_refuses_a_pair_that_fits_only_without_its_template(decoders) -> None:
    reranker = decoders["hub"]
    tokenizer = reranker.model.tokenizer
    words = "cooking recipes baking bread"
    text = words
    while len(tokenizer(QUERY, text + " " + words)["input_ids"]) <= MAX_LENGTH - 10:
        text += " " + words
    assert len(tokenizer(QUERY, text)["input_ids"]) < MAX_LENGTH < rendered_length(reranker, text)
    with pytest.raises(InputTooLong, match=f"candidate 1 with the query is {rendered_length(reranker, text)} tokens"):
        reranker.prepare(RerankPayload(query=QUERY, candidates=[DOCS[0], text], truncate=False))
    payload = RerankPayload(query=QUERY, candidates=[DOCS[0], text])
    assert reranker.prepare(payload).texts == [DOCS[0], text]  # cut by the model, counted as it reads it
    assert jobs.score_payloads(reranker, [payload]).tokens == [rendered_length(reranker, DOCS[0]) + MAX_LENGTH]


def test_left_truncation_keeps_the_end_the_model_then_reads(decoders, cross_encoders) -> None:
    reranker, model = decoders["hub"], cross_encoders["hub"]
    long = " ".join(["cooking recipes"] * 80) + " black holes and distant galaxies"
    (kept,) = reranker.prepare(RerankPayload(query=QUERY, candidates=[long], truncation_side="left")).texts
    assert long.endswith(kept) and kept.endswith("distant galaxies")
    assert MAX_LENGTH - 3 <= rendered_length(reranker, kept) <= MAX_LENGTH  # nothing more is cut by the model
    (raw,) = reranker.score_many([(QUERY, [kept])], ScoreMode.RAW).scores
    assert raw == pytest.approx(predict_raw(model, [(QUERY, kept)]), abs=1e-5)


def test_huge_position_limit_gets_the_default_cap(tmp_path: Path, decoder_dirs, monkeypatch) -> None:
    from rerank_worker import runtime

    folder = tiny_decoder.build(tmp_path / "long", positions=40_960)
    assert runtime.Reranker(str(folder), device="cpu", batch_size=8, max_length=None).max_length == MODEL_MAX_LENGTH_CAP
    assert runtime.Reranker(str(folder), device="cpu", batch_size=8, max_length=16_384).max_length == 16_384
    monkeypatch.setattr(runtime, "MODEL_MAX_LENGTH_CAP", 100)  # the cap is what the model then reads
    capped = runtime.Reranker(str(decoder_dirs["hub"]), device="cpu", batch_size=8, max_length=None)
    long = " ".join(["cooking recipes"] * 100)
    assert capped.max_length == 100 and rendered_length(capped, long) > 100
    assert int(capped.model.preprocess([(QUERY, long)])["attention_mask"].sum()) == 100
    assert jobs.score_payloads(capped, [RerankPayload(query=QUERY, candidates=[long])]).tokens == [100]


def test_a_template_that_cannot_render_a_pair_fails_the_start(tmp_path: Path) -> None:
    from rerank_worker import main
    from rerank_worker.runtime import ModelUnusable, Reranker

    folder = tiny_decoder.build(tmp_path / "chat", template=tiny_decoder.CHAT_ONLY_TEMPLATE)
    with pytest.raises(ModelUnusable, match="cannot score a \\(query, document\\) pair"):
        Reranker(str(folder), device="cpu", batch_size=8, max_length=None)
    settings = Settings(model=str(folder), device="cpu", warmup=False, redis_url="redis://127.0.0.1:1/0")
    assert main.run(settings) == EXIT_STARTUP_FAILED


def test_bulk_job_with_an_instruction_scores_as_predict(decoders, cross_encoders) -> None:
    reranker, model = decoders["st"], cross_encoders["st"]
    from rerank_worker.worker import RerankWorker

    connection = fakeredis.FakeStrictRedis()
    queue = Queue(BULK_QUEUE, connection=connection, serializer=SERIALIZER)
    sync = Queue(SYNC_QUEUE, connection=connection, serializer=SERIALIZER)
    items = [{"id": "a", "query": QUERY, "candidates": DOCS}, {"id": "b", "query": "astronomy", "candidates": DOCS}]
    job = queue.enqueue(BULK_JOB, {"items": items, "instruction": INSTRUCTION, "score_mode": "raw"})
    worker = RerankWorker(
        [sync, queue],
        connection=connection,
        serializer=SERIALIZER,
        scorer=reranker,
        max_batch_pairs=8,
        bulk_chunk_pairs=4,
    )
    worker.work(burst=True)
    result = BulkResult.model_validate(fetch(queue, job.id).return_value())
    for item, got in zip(items, result.items, strict=True):
        want = predict_raw(model, [(item["query"], d) for d in DOCS], prompt=INSTRUCTION)
        assert {r.index: r.score for r in got.results} == pytest.approx(dict(enumerate(want)), abs=1e-5)
    assert result.tokens == sum(
        reranker.measure(item["query"], DOCS, INSTRUCTION)[i] for item in items for i in range(len(DOCS))
    )
