"""End to end: every client format, sent as each client sends it, against real redis, worker and API processes.

Every score is checked against ``CrossEncoder.predict`` on the same pairs (the reference model in this process).
"""

from __future__ import annotations

from collections.abc import Iterator

import cohere
import httpx
import pytest
import torch

from tests.support.services import Stack

QUERY = "machine learning"
DOCS = ["cooking recipes", "deep learning", "stock market", "neural networks", "baking bread"]


def predict(cross_encoder, docs: list[str], query: str = QUERY, raw: bool = False) -> list[float]:
    activation = torch.nn.Identity() if raw else None
    return [float(s) for s in cross_encoder.predict([(query, d) for d in docs], activation_fn=activation)]


def best_first(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def assert_ranked(got: list[tuple[int, float]], want: list[float], top_n: int | None = None) -> None:
    """``got`` is (index, score) best first: the order and scores of ``want`` (by index), cut to ``top_n``."""
    assert [i for i, _ in got] == best_first(want)[:top_n]
    for index, score in got:
        assert score == pytest.approx(want[index], abs=1e-5)


def post(stack: Stack, path: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{stack.url}{path}", json=body, headers=headers, timeout=30)


# --- the official cohere SDK ---------------------------------------------------------------------


def test_cohere_sdk_client_v2_reranks(stack: Stack, cross_encoder) -> None:
    client = cohere.ClientV2(api_key="any-key", base_url=stack.url, max_retries=0)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    assert_ranked([(r.index, r.relevance_score) for r in response.results], predict(cross_encoder, DOCS), top_n=3)
    assert response.id
    assert response.meta.api_version.version == "2"
    assert response.meta.billed_units.search_units == 1


def test_cohere_sdk_client_v1_reranks(stack: Stack, cross_encoder) -> None:
    client = cohere.Client(api_key="any-key", base_url=stack.url, max_retries=0)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, return_documents=False)
    assert_ranked([(r.index, r.relevance_score) for r in response.results], predict(cross_encoder, DOCS))
    assert all(r.document is None for r in response.results)
    assert response.meta.api_version.version == "1"


def test_cohere_sdk_v1_echoes_document_objects(stack: Stack, cross_encoder) -> None:
    client = cohere.Client(api_key="any-key", base_url=stack.url, max_retries=0)
    docs = [{"text": d, "id": f"doc-{i}"} for i, d in enumerate(DOCS)]
    response = client.rerank(query=QUERY, documents=docs, top_n=2, return_documents=True)
    assert_ranked([(r.index, r.relevance_score) for r in response.results], predict(cross_encoder, DOCS), top_n=2)
    for r in response.results:
        assert r.document.text == DOCS[r.index]
        assert r.document.id == f"doc-{r.index}"  # other fields come back untouched


# --- raw HTTP, exactly as each client in the notes sends it ---------------------------------------


def test_open_webui_gets_every_document_scored(stack: Stack, cross_encoder) -> None:
    body = {"model": "BAAI/bge-reranker-v2-m3", "query": QUERY, "documents": DOCS, "top_n": len(DOCS)}
    response = post(stack, "/v1/rerank", body, authorization="Bearer sk-anything")
    assert response.status_code == 200
    results = response.json()["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))  # it re-sorts by index
    assert_ranked([(r["index"], r["relevance_score"]) for r in results], predict(cross_encoder, DOCS))


def test_dify_openai_compatible_mode(stack: Stack, cross_encoder, model_dir) -> None:
    body = {"model": "my-reranker", "query": QUERY, "documents": DOCS, "top_n": 2}
    response = post(stack, "/v1/rerank", body, authorization="Bearer dify-key")
    assert response.status_code == 200
    payload = response.json()
    assert payload["model"] == str(model_dir)  # Jina's field: the model that actually answered
    assert_ranked([(r["index"], r["relevance_score"]) for r in payload["results"]], predict(cross_encoder, DOCS), 2)
    assert [r["document"] for r in payload["results"]] == [{"text": DOCS[r["index"]]} for r in payload["results"]]


def test_dify_tei_mode_reads_info_then_reranks(stack: Stack, cross_encoder, model_dir) -> None:
    info = httpx.get(f"{stack.url}/info", headers={"authorization": "Bearer dify-key"})
    assert info.status_code == 200
    assert list(info.json()["model_type"]) == ["reranker"]
    assert info.json()["max_input_length"] == 64  # the tiny model's, as the worker reports it
    assert info.json()["model_id"] == str(model_dir)
    response = post(stack, "/rerank", {"query": QUERY, "texts": DOCS, "return_text": True})
    assert response.status_code == 200
    ranks = response.json()
    assert isinstance(ranks, list)
    assert all(set(r) == {"index", "text", "score"} and r["text"] == DOCS[r["index"]] for r in ranks)
    assert_ranked([(r["index"], r["score"]) for r in ranks], predict(cross_encoder, DOCS))


def test_ragflow_and_llamaindex_tei_get_a_bare_array(stack: Stack, cross_encoder) -> None:
    response = post(stack, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": False, "truncate": True})
    assert response.status_code == 200
    ranks = response.json()
    assert all(set(r) == {"index", "score"} for r in ranks)
    assert_ranked([(r["index"], r["score"]) for r in ranks], predict(cross_encoder, DOCS))


# --- scores: every format gives the same numbers ----------------------------------------------------


def scores_by_format(stack: Stack) -> dict[str, dict[int, float]]:
    seed = post(stack, "/v1/rerank", {"query": QUERY, "candidates": DOCS}).json()["results"]
    jina = post(stack, "/v1/rerank", {"query": QUERY, "documents": DOCS}).json()["results"]
    v2 = post(stack, "/v2/rerank", {"model": "m", "query": QUERY, "documents": DOCS}).json()["results"]
    tei = post(stack, "/rerank", {"query": QUERY, "texts": DOCS}).json()
    return {
        "seed": {r["index"]: r["score"] for r in seed},
        "v1 documents": {r["index"]: r["relevance_score"] for r in jina},
        "v2": {r["index"]: r["relevance_score"] for r in v2},
        "tei": {r["index"]: r["score"] for r in tei},
    }


def test_every_format_gives_predict_scores(stack: Stack, cross_encoder) -> None:
    want = dict(enumerate(predict(cross_encoder, DOCS)))
    for name, got in scores_by_format(stack).items():
        assert got == pytest.approx(want, abs=1e-5), name
    assert all(0 <= s <= 1 for s in want.values())


def test_tei_raw_scores_are_logits(stack: Stack, cross_encoder) -> None:
    ranks = post(stack, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    logits = predict(cross_encoder, DOCS, raw=True)
    assert_ranked([(r["index"], r["score"]) for r in ranks], logits)
    assert min(logits) < 0 < max(logits)


@pytest.mark.parametrize("top_n", [1, 3, len(DOCS), len(DOCS) + 10])
def test_top_n_keeps_the_best(stack: Stack, cross_encoder, top_n: int) -> None:
    want = predict(cross_encoder, DOCS)
    v2 = post(stack, "/v2/rerank", {"model": "m", "query": QUERY, "documents": DOCS, "top_n": top_n}).json()
    seed = post(stack, "/v1/rerank", {"query": QUERY, "candidates": DOCS, "top_n": top_n}).json()
    assert_ranked([(r["index"], r["relevance_score"]) for r in v2["results"]], want, top_n)
    assert_ranked([(r["index"], r["score"]) for r in seed["results"]], want, top_n)


# --- lengths: truncation by default, truncate=false, direction, max_tokens_per_doc -----------------

# Every word below is one token of the tiny model; with the query (2 tokens) and 3 special tokens,
# a pair holds at most 64 - 5 = 59 text tokens.
LONG = " ".join(["cooking"] * 60 + ["deep", "learning"])


def test_long_text_is_truncated_by_default(stack: Stack, cross_encoder) -> None:
    ranks = post(stack, "/rerank", {"query": QUERY, "texts": ["deep learning", LONG]}).json()
    assert {r["index"]: r["score"] for r in ranks} == pytest.approx(
        dict(enumerate(predict(cross_encoder, ["deep learning", LONG]))), abs=1e-5
    )


def test_truncate_false_rejects_too_long_text_with_413(stack: Stack) -> None:
    response = post(stack, "/rerank", {"query": QUERY, "texts": ["deep learning", LONG], "truncate": False})
    assert response.status_code == 413
    body = response.json()
    assert body["error_type"] == "input_too_long"
    assert "candidate 1" in body["error"] and "67 tokens" in body["error"] and "64" in body["error"]
    fits = post(stack, "/rerank", {"query": QUERY, "texts": ["deep learning"], "truncate": False})
    assert fits.status_code == 200  # and the worker is still serving


def test_left_truncation_keeps_the_end(stack: Stack, cross_encoder) -> None:
    # The relevant words lead, so cutting from the right (the default) keeps them and cutting from the left
    # does not. How far apart the two scores are depends on what this machine's training made of the tiny model
    # (0.03 on one machine), so the check is that the score is the kept end's and clearly not the other's.
    leading = " ".join(["deep", "learning", "neural", "networks"] + ["cooking"] * 60)
    body = {"query": QUERY, "texts": [leading], "truncation_direction": "Left"}
    score = post(stack, "/rerank", body).json()[0]["score"]
    kept = " ".join(["cooking"] * 59)  # the last 59 tokens
    assert score == pytest.approx(predict(cross_encoder, [kept])[0], abs=1e-5)
    assert abs(score - predict(cross_encoder, [leading])[0]) > 1e-3


def test_max_tokens_per_doc_cuts_each_document(stack: Stack, cross_encoder) -> None:
    docs = ["cooking recipes deep learning", "deep learning cooking recipes"]
    body = {"model": "m", "query": QUERY, "documents": docs, "max_tokens_per_doc": 2}
    results = post(stack, "/v2/rerank", body).json()["results"]
    want = predict(cross_encoder, ["cooking recipes", "deep learning"])
    assert_ranked([(r["index"], r["relevance_score"]) for r in results], want)


# --- auth: a second API process with a key, served by the same worker ------------------------------


@pytest.fixture(scope="module")
def keyed_stack(stack: Stack, model_dir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    keyed = Stack(stack.redis_url, model_dir, tmp_path_factory.mktemp("keyed-api"), API_KEY="s3cret-key")
    keyed.start_api()
    yield keyed
    keyed.stop()


def test_api_key_guards_every_format_but_health(keyed_stack: Stack, cross_encoder) -> None:
    stack = keyed_stack
    assert httpx.get(f"{stack.url}/health").status_code == 200
    v2 = {"model": "m", "query": QUERY, "documents": DOCS}
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret-key"}):
        response = post(stack, "/v2/rerank", v2, **headers)
        assert response.status_code == 401
        assert response.json()["error_type"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert post(stack, "/v2/rerank", v2, authorization="Bearer s3cret-key").status_code == 200

    good = cohere.ClientV2(api_key="s3cret-key", base_url=stack.url, max_retries=0)
    results = good.rerank(model="m", query=QUERY, documents=DOCS).results
    assert_ranked([(r.index, r.relevance_score) for r in results], predict(cross_encoder, DOCS))
    with pytest.raises(cohere.UnauthorizedError):
        cohere.ClientV2(api_key="wrong", base_url=stack.url, max_retries=0).rerank(
            model="m", query=QUERY, documents=DOCS
        )


def test_default_requests_enqueue_the_original_payload(stack: Stack, redis_server) -> None:
    """New fields travel only when used, so workers of an older version still serve default requests."""
    from rq.job import Job

    from rerank_contract.jobs import SERIALIZER

    post(stack, "/rerank", {"query": "payload check a", "texts": ["deep learning"]})
    post(stack, "/rerank", {"query": "payload check b", "texts": ["deep learning"], "truncate": False})
    connection = redis_server.client()
    payloads = {}
    for key in connection.keys("rq:job:*"):
        job_id = key.decode().removeprefix("rq:job:")
        if ":" not in job_id:  # not a job's side key
            job = Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
            payloads[job.args[0]["query"]] = job.args[0]
    assert payloads["payload check a"] == {"query": "payload check a", "candidates": ["deep learning"]}
    assert payloads["payload check b"]["truncate"] is False
