"""A table of hostile request bodies against a real API and worker: each gets a JSON 4xx from the error
table (or a 200 where the input is legitimately valid), never a 5xx, and the same worker process goes
on scoring correctly after every one of them.

The stack runs with small ``RERANK_MAX_BODY_BYTES`` and ``RERANK_MAX_TEXT_CHARS`` so the cases
exercise those limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rerank_api.errors import STATUS, ErrorType
from tests.support.redis_server import RedisServer
from tests.support.seed import SEED_CANDIDATES, SEED_QUERY
from tests.support.services import Stack

MAX_BODY_BYTES = 1_000_000
MAX_TEXT_CHARS = 20_000
MAX_CANDIDATES = 1000
EMOJI = "\N{GRINNING FACE}"
JSON = "application/json"


@dataclass(frozen=True)
class Hostile:
    id: str
    path: str
    body: bytes
    status: int
    content_type: str = JSON
    method: str = "POST"


def js(value: object) -> bytes:
    """JSON with non-ASCII characters as they are (UTF-8), as most clients send it."""
    return json.dumps(value, ensure_ascii=False).encode()


CASES = [
    Hostile("malformed-json", "/v1/rerank", b'{"query": ', 422),
    Hostile("wrong-types", "/v1/rerank", js({"query": 1, "candidates": "deep learning"}), 422),
    Hostile("wrong-item-type", "/v2/rerank", js({"query": "q", "documents": ["a", {"text": "b"}]}), 422),
    Hostile("non-utf8-bytes", "/v1/rerank", b'{"query": "caf\xe9 \xff\xfe", "candidates": ["a"]}', 422),
    Hostile("non-utf8-bytes-tei", "/rerank", b'{"query": "q", "texts": ["\xc3\x28"]}', 422),
    Hostile("nul-bytes-in-texts", "/v1/rerank", js({"query": "q\x00", "candidates": ["a\x00b", "\x00", ""]}), 200),
    Hostile("nul-bytes-returned", "/rerank", js({"query": "q", "texts": ["a\x00b"], "return_text": True}), 200),
    Hostile("lone-surrogate-text", "/v1/rerank", b'{"query": "q", "candidates": ["a\\ud800b"]}', 422),
    Hostile("lone-surrogate-query", "/v2/rerank", b'{"query": "\\udfff", "documents": ["a"]}', 422),
    Hostile(
        "lone-surrogate-returned",
        "/rerank",
        b'{"query": "q", "texts": ["\\ud800"], "return_text": true}',
        422,
    ),
    Hostile(
        "lone-surrogate-document-field",
        "/v1/rerank",
        b'{"query": "q", "documents": [{"text": "a", "title": "\\ud800"}]}',
        422,
    ),
    Hostile("lone-surrogate-bulk-text", "/v1/jobs", b'{"items": [{"query": "q", "candidates": ["\\ud83d"]}]}', 422),
    Hostile(
        "lone-surrogate-bulk",
        "/v1/jobs",
        b'{"items": [{"id": "\\udc00", "query": "q", "candidates": ["a"]}]}',
        422,
    ),
    Hostile("huge-unicode-text", "/v1/rerank", js({"query": "q", "candidates": [EMOJI * 100_000]}), 413),
    Hostile("long-unicode-text-within-limits", "/v1/rerank", js({"query": EMOJI, "candidates": [EMOJI * 15_000]}), 200),
    Hostile(
        "deeply-nested", "/v1/rerank", b'{"query": "q", "candidates": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422
    ),
    Hostile(
        "nested-but-parseable", "/v1/rerank", b'{"query": "q", "candidates": ' + b"[" * 500 + b"]" * 500 + b"}", 422
    ),
    Hostile("huge-integer", "/v1/rerank", b'{"query": "q", "candidates": ["a"], "top_n": 1' + b"0" * 5000 + b"}", 422),
    Hostile("nan", "/v1/rerank", b'{"query": "q", "candidates": ["a"], "top_n": NaN}', 422),
    Hostile(
        "big-but-valid-integers",
        "/v2/rerank",
        js({"query": "q", "documents": ["a"], "top_n": 2**64, "max_tokens_per_doc": 2**64}),
        200,
    ),
    Hostile("extra-fields", "/v1/rerank", js({"query": "q", "candidates": ["a"], "extra": {"x": [1, None]}}), 200),
    Hostile("extra-fields-bulk", "/v1/jobs", js({"items": [{"query": "q", "candidates": ["a"], "x": 1}]}), 422),
    Hostile("empty-strings", "/v1/rerank", js({"query": "", "candidates": ["", ""]}), 200),
    Hostile("max-candidates", "/v1/rerank", js({"query": "q", "candidates": ["a"] * MAX_CANDIDATES}), 200),
    Hostile("too-many-candidates", "/v1/rerank", js({"query": "q", "candidates": ["a"] * (MAX_CANDIDATES + 1)}), 413),
    Hostile("too-many-characters", "/v1/rerank", js({"query": "q", "candidates": ["a" * 2_000_001]}), 413),
    Hostile(
        "oversized-body",
        "/v1/rerank",
        b'{"query": "q", "candidates": ["a"]' + b" " * MAX_BODY_BYTES + b"}",
        413,
    ),
    Hostile("body-is-array", "/v1/rerank", b'[{"query": "q", "candidates": ["a"]}]', 422),
    Hostile("body-is-number", "/v2/rerank", b"3", 422),
    Hostile("body-is-null", "/rerank", b"null", 422),
    Hostile("body-is-string", "/v1/jobs", b'"items"', 422),
    Hostile("empty-body", "/v1/rerank", b"", 422),
    Hostile("not-json-content-type", "/v1/rerank", js({"query": "q", "candidates": ["a"]}), 422, "text/plain"),
    Hostile("wrong-method", "/v1/rerank", b"", 405, method="PUT"),
]


@pytest.fixture(scope="module")
def hostile_stack(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis_server.client().flushall()
    s = Stack(
        redis_server.url,
        model_dir,
        tmp_path_factory.mktemp("hostile-logs"),
        max_body_bytes=str(MAX_BODY_BYTES),
        max_text_chars=str(MAX_TEXT_CHARS),
        max_candidates=str(MAX_CANDIDATES),
    )
    s.start_api()
    s.start_worker()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def worker_pid(hostile_stack: Stack) -> int:
    (worker,) = hostile_stack.health()["workers"]
    return worker["pid"]


@pytest.fixture(scope="module")
def seed_scores(cross_encoder) -> dict[int, float]:
    return dict(enumerate(cross_encoder.predict([(SEED_QUERY, c) for c in SEED_CANDIDATES]).tolist()))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_input_gets_a_json_answer_and_the_worker_survives(
    hostile_stack: Stack, worker_pid: int, seed_scores: dict[int, float], case: Hostile
) -> None:
    response = httpx.request(
        case.method,
        hostile_stack.url + case.path,
        content=case.body,
        headers={"content-type": case.content_type},
        timeout=60,
    )
    assert_worker_serves(hostile_stack, worker_pid, seed_scores)
    assert response.status_code < 500, response.text[:2000]
    assert response.headers["content-type"] == JSON
    body = response.json()
    if case.status >= 400:
        assert set(body) == {"error", "error_type", "detail"}, body
        assert STATUS[ErrorType(body["error_type"])] == response.status_code, body
    if case.status == 200 and case.path == "/v1/rerank":
        sent = json.loads(case.body)
        assert sorted(r["index"] for r in body["results"]) == list(range(len(sent["candidates"])))
    if case.status == 405:
        assert response.headers["allow"] == "POST"
    assert response.status_code == case.status, response.text[:2000]


def test_the_worker_survived_every_case(hostile_stack: Stack, worker_pid: int, seed_scores: dict[int, float]) -> None:
    """Also after the cases above that are expected to fail for now."""
    assert_worker_serves(hostile_stack, worker_pid, seed_scores)
    assert hostile_stack.workers[0].proc.poll() is None


def assert_worker_serves(stack: Stack, pid: int, seed_scores: dict[int, float]) -> None:
    """The same worker process still scores a normal request exactly as the model does."""
    normal = stack.rerank(SEED_QUERY, SEED_CANDIDATES)
    assert normal.status_code == 200, normal.text
    assert {r["index"]: r["score"] for r in normal.json()["results"]} == pytest.approx(seed_scores, abs=1e-6)
    assert [w["pid"] for w in stack.health()["workers"]] == [pid]
