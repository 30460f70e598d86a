"""End to end with a decoder reranker: every format's instruction, token usage and body, over real processes.

The stack serves the tiny Qwen3-Reranker-style model as sentence-transformers saves it (activation Identity),
so activated scores must still be the sigmoid of the logit difference, as in every format's docs.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from tests.support.error_answers import assert_error
from tests.support.redis_server import RedisServer
from tests.support.services import Stack
from tests.support.waiting import wait_until

QUERY = "machine learning"
DOCS = ["cooking recipes", "deep learning neural networks", "stock market", "black holes"]
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
MAX_LENGTH = 128


@pytest.fixture(scope="module")
def decoder_stack(
    redis_server: RedisServer, decoder_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis_server.client().flushall()
    s = Stack(
        redis_server.url, decoder_dirs["st"], tmp_path_factory.mktemp("decoder-stack"), MAX_LENGTH=str(MAX_LENGTH)
    )
    s.start_api()
    s.start_worker()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def reference(decoder_dirs: dict[str, Path]):
    from rerank_worker.runtime import Reranker

    return Reranker(str(decoder_dirs["st"]), device="cpu", batch_size=8, max_length=MAX_LENGTH)


def sigmoid_predict(reference, docs: list[str], instruction: str | None) -> list[float]:
    raw = reference.model.predict([(QUERY, d) for d in docs], prompt=instruction, activation_fn=torch.nn.Identity())
    return [1 / (1 + math.exp(-float(x))) for x in raw]


def tokens(reference, docs: list[str], instruction: str | None) -> int:
    return sum(min(n, MAX_LENGTH) for n in reference.measure(QUERY, docs, instruction))


def post(stack: Stack, path: str, body: dict) -> httpx.Response:
    response = httpx.post(f"{stack.url}{path}", json=body, timeout=30)
    assert response.status_code in (200, 202), response.text
    return response


def by_index(results: list[dict], score: str = "relevance_score") -> dict[int, float]:
    assert [r[score] for r in results] == sorted((r[score] for r in results), reverse=True)
    return {r["index"]: r[score] for r in results}


def test_info_reports_the_served_max_length(decoder_stack: Stack) -> None:
    info = httpx.get(f"{decoder_stack.url}/info").json()
    assert info["max_input_length"] == MAX_LENGTH


@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_every_format_passes_the_instruction_and_reports_tokens(decoder_stack: Stack, reference, instruction) -> None:
    want = dict(enumerate(sigmoid_predict(reference, DOCS, instruction)))
    used = tokens(reference, DOCS, instruction)
    extra = {"instruction": instruction} if instruction else {}
    base = {"query": QUERY, **extra}

    seed = post(decoder_stack, "/v1/rerank", {**base, "candidates": DOCS}).json()
    assert by_index(seed["results"], "score") == pytest.approx(want, abs=1e-5)
    assert seed["tokens"] == used

    jina = post(decoder_stack, "/v1/rerank", {**base, "model": "m", "documents": DOCS, "top_n": None}).json()
    assert by_index(jina["results"]) == pytest.approx(want, abs=1e-5)
    assert jina["usage"] == {"prompt_tokens": used, "total_tokens": used}
    assert jina["meta"]["tokens"]["input_tokens"] == used

    v2 = post(decoder_stack, "/v2/rerank", {**base, "model": "m", "documents": DOCS}).json()
    assert by_index(v2["results"]) == pytest.approx(want, abs=1e-5)
    assert v2["meta"]["billed_units"]["search_units"] == 1 and v2["meta"]["tokens"]["input_tokens"] == used

    tei = post(decoder_stack, "/rerank", {**base, "texts": DOCS})
    assert by_index(tei.json(), "score") == pytest.approx(want, abs=1e-5)
    assert tei.headers["x-compute-tokens"] == str(used)

    infinity = post(
        decoder_stack, "/rerank", {**base, "model": "m", "documents": DOCS, "top_n": 2, "return_documents": True}
    ).json()
    assert infinity["object"] == "rerank" and infinity["usage"] == {"prompt_tokens": used, "total_tokens": used}
    best = sorted(want, key=lambda i: -want[i])[:2]
    assert [r["index"] for r in infinity["results"]] == best
    assert [r["document"] for r in infinity["results"]] == [{"text": DOCS[i]} for i in best]
    assert all(0 <= r["relevance_score"] <= 1 for r in infinity["results"])


def test_raw_scores_are_the_logit_difference(decoder_stack: Stack, reference) -> None:
    raw = reference.model.predict([(QUERY, d) for d in DOCS], activation_fn=torch.nn.Identity())
    for body in ({"texts": DOCS}, {"documents": DOCS}):
        answer = post(decoder_stack, "/rerank", {"query": QUERY, "raw_scores": True, **body}).json()
        results = answer if isinstance(answer, list) else answer["results"]
        key = "score" if isinstance(answer, list) else "relevance_score"
        assert by_index(results, key) == pytest.approx({i: float(x) for i, x in enumerate(raw)}, abs=1e-5)


def test_jina_answers_carry_usage_even_with_nothing_to_score(decoder_stack: Stack) -> None:
    answer = post(decoder_stack, "/v1/rerank", {"query": QUERY, "documents": []}).json()
    assert answer["usage"] == {"prompt_tokens": 0, "total_tokens": 0} and answer["results"] == []


def test_truncate_false_counts_the_rendered_template(decoder_stack: Stack, reference) -> None:
    tokenizer = reference.model.tokenizer
    text = "cooking recipes"
    while len(tokenizer(QUERY, text + " cooking recipes")["input_ids"]) < MAX_LENGTH - 10:
        text += " cooking recipes"
    body = {"query": QUERY, "texts": [text], "truncate": False}
    message = assert_error(httpx.post(f"{decoder_stack.url}/rerank", json=body, timeout=30), 413, "input_too_long")
    assert f"at most {MAX_LENGTH}" in message


def test_tokens_counter_and_bulk_jobs_with_instructions(decoder_stack: Stack, reference) -> None:
    def counted() -> float:
        text = httpx.get(f"{decoder_stack.url}/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("rerank_tokens_total"))

    before = counted()
    post(decoder_stack, "/v1/rerank", {"query": QUERY, "candidates": DOCS, "instruction": INSTRUCTION})
    assert counted() - before == tokens(reference, DOCS, INSTRUCTION)

    items = [{"id": "a", "query": QUERY, "candidates": DOCS}]
    job = post(decoder_stack, "/v1/jobs", {"items": items, "instruction": INSTRUCTION}).json()
    url = f"{decoder_stack.url}{job['status_url']}"
    wait_until(lambda: httpx.get(url).json()["status"] not in ("queued", "started"), 30, "the bulk job to end")
    state = httpx.get(url).json()
    assert state["status"] == "finished", state
    result = state["result"]
    assert result["tokens"] == tokens(reference, DOCS, INSTRUCTION)
    want = dict(enumerate(sigmoid_predict(reference, DOCS, INSTRUCTION)))
    assert {r["index"]: r["score"] for r in result["items"][0]["results"]} == pytest.approx(want, abs=1e-5)


# --- real client libraries, where they install (the test extra pins them) ------------------------------------

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def keyed_api(decoder_stack: Stack, decoder_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """A second API with a key, in front of the same worker: clients must see the real error message."""
    keyed = Stack(
        decoder_stack.redis_url,
        decoder_dirs["st"],
        tmp_path_factory.mktemp("keyed-decoder-api"),
        MAX_LENGTH=str(MAX_LENGTH),
        API_KEY=KEY,
    )
    keyed.start_api()
    yield keyed
    keyed.stop()


@pytest.fixture(scope="module")
def litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of its price list
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    with warnings.catch_warnings():  # its own import warns (pydantic on its TypedDicts): not this project's concern
        warnings.simplefilter("ignore")
        return pytest.importorskip("litellm")


#: The libraries' own warnings (their pydantic models, their HTTP clients) are not this project's to fix.
LIBRARY_WARNINGS = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@LIBRARY_WARNINGS
@pytest.mark.parametrize(
    ("provider", "instruction", "documents"),
    [
        # Infinity answers a returned document as a bare string, vLLM as {text}, to the same body: this server
        # answers vLLM's (docs/api.md), so LiteLLM's infinity/ provider is called without documents back.
        ("infinity", None, False),
        ("hosted_vllm", INSTRUCTION, True),
        ("cohere", None, False),  # LiteLLM's cohere/ speaks /v2/rerank, which has no documents to return
        ("jina_ai", None, True),
    ],
)
def test_litellm_providers_get_the_order_and_scores(
    keyed_api: Stack, reference, litellm, provider, instruction, documents
) -> None:
    options = {"api_base": keyed_api.url, "return_documents": documents}
    extra = {"instruction": instruction} if instruction else {}
    response = litellm.rerank(model=f"{provider}/m", query=QUERY, documents=DOCS, api_key=KEY, **options, **extra)
    want = dict(enumerate(sigmoid_predict(reference, DOCS, instruction)))
    got = [(r["index"], r["relevance_score"]) for r in response.results]
    assert [i for i, _ in got] == sorted(want, key=lambda i: -want[i])
    assert dict(got) == pytest.approx(want, abs=1e-5)
    if documents:
        assert [r["document"]["text"] for r in response.results] == [DOCS[i] for i, _ in got]
    with pytest.raises(Exception, match="wrong API key"):
        litellm.rerank(model=f"{provider}/m", query=QUERY, documents=DOCS, api_key="wrong", **options)


@LIBRARY_WARNINGS
def test_jina_haystack_ranker_reads_usage_and_the_error_detail(keyed_api: Stack, reference) -> None:
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jina = pytest.importorskip("haystack_integrations.components.rankers.jina")
    from haystack import Document
    from haystack.utils import Secret

    ranker = jina.JinaRanker(api_key=Secret.from_token(KEY), base_url=f"{keyed_api.url}/v1/rerank", model="m")
    out = ranker.run(query=QUERY, documents=[Document(content=d) for d in DOCS])
    want = dict(enumerate(sigmoid_predict(reference, DOCS, None)))
    assert [d.content for d in out["documents"]] == [DOCS[i] for i in sorted(want, key=lambda i: -want[i])]
    assert [d.score for d in out["documents"]] == pytest.approx(sorted(want.values(), reverse=True), abs=1e-5)
    assert out["meta"]["usage"]["total_tokens"] == tokens(reference, DOCS, None)
    wrong = jina.JinaRanker(api_key=Secret.from_token("wrong"), base_url=f"{keyed_api.url}/v1/rerank", model="m")
    with pytest.raises(RuntimeError, match="wrong API key"):
        wrong.run(query=QUERY, documents=[Document(content=d) for d in DOCS])
