"""The facade's answers to bad input and missing back-ends, against a real Redis with no worker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support.error_answers import assert_error
from tests.support.redis_server import RedisServer
from tests.support.seed import SEED_CANDIDATES, SEED_QUERY


@pytest.fixture
def client(api_client: Callable[..., TestClient]) -> TestClient:
    return api_client(
        max_candidates=3, max_request_chars=100, max_text_chars=60, max_body_bytes=2048, model="some/model"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"query": "q"},
            "body: `candidates` (this server's format) or `documents` (Cohere v1 / Jina format) is required",
        ),
        ({"candidates": ["a"]}, "query: Field required"),
        ({"query": "q", "candidates": "abc"}, "candidates: Input should be a valid list"),
        ({"query": "q", "candidates": ["a", 3]}, "candidates.1: Input should be a valid string"),
        ({"query": None, "candidates": ["a"]}, "query: Input should be a valid string"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    assert field in assert_error(client.post("/v1/rerank", json=body), 422, "validation")


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/v1/rerank", content=b'{"query": ', headers={"content-type": "application/json"})
    assert "JSON" in assert_error(response, 422, "validation")


def test_too_many_candidates_is_413(client: TestClient) -> None:
    message = assert_error(client.post("/v1/rerank", json={"query": "q", "candidates": ["a"] * 4}), 413, "too_large")
    assert "RERANK_MAX_CANDIDATES" in message


def test_too_many_characters_is_413(client: TestClient) -> None:
    message = assert_error(
        client.post("/v1/rerank", json={"query": "q" * 50, "candidates": ["a" * 55]}), 413, "too_large"
    )
    assert "RERANK_MAX_REQUEST_CHARS" in message


def test_empty_candidates_is_200_without_enqueueing(client: TestClient, flushed_redis: RedisServer) -> None:
    response = client.post("/v1/rerank", json={"query": "q", "candidates": []})
    assert response.status_code == 200
    assert response.json()["results"] == []
    assert response.json()["model"] == "some/model"
    assert flushed_redis.client().keys("rq:*") == []


def test_no_worker_is_503_at_once_and_enqueues_nothing(client: TestClient, flushed_redis: RedisServer) -> None:
    started = time.monotonic()
    response = client.post("/v1/rerank", json={"query": SEED_QUERY, "candidates": SEED_CANDIDATES})
    assert time.monotonic() - started < 1
    assert "rerank-server worker" in assert_error(response, 503, "no_worker")
    assert flushed_redis.client().llen("rq:queue:rerank") == 0
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "no_worker"


def test_unknown_route_is_json_404(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found")


def test_openapi_documents_error_answers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/v1/rerank"]["post"]["responses"]
    assert {"200", "413", "422", "503", "504"} <= set(responses)
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_too_long_text_is_413(client: TestClient) -> None:
    message = assert_error(client.post("/v1/rerank", json={"query": "q", "candidates": ["a" * 61]}), 413, "too_large")
    assert "RERANK_MAX_TEXT_CHARS" in message


def test_lone_surrogate_is_422_not_a_worker_crash(client: TestClient, flushed_redis: RedisServer) -> None:
    body = b'{"query": "q", "candidates": ["ok", "bad \\ud800 text"]}'
    response = client.post("/v1/rerank", content=body, headers={"content-type": "application/json"})
    assert "not valid Unicode" in assert_error(response, 422, "validation")
    assert flushed_redis.client().keys("rq:*") == []


def test_body_over_the_limit_is_413_by_length_or_as_it_streams(client: TestClient) -> None:
    big = b'{"query": "q", "candidates": ["' + b"a" * 3000 + b'"]}'
    declared = client.post("/v1/rerank", content=big, headers={"content-type": "application/json"})
    assert "RERANK_MAX_BODY_BYTES" in assert_error(declared, 413, "too_large")

    def chunks():  # no Content-Length: the limit applies as the body arrives
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    streamed = client.post("/v1/rerank", content=chunks(), headers={"content-type": "application/json"})
    assert "RERANK_MAX_BODY_BYTES" in assert_error(streamed, 413, "too_large")


def test_bulk_texts_are_checked_before_enqueueing(client: TestClient, flushed_redis: RedisServer) -> None:
    body = {"items": [{"query": "q", "candidates": ["a" * 61]}]}
    assert "RERANK_MAX_TEXT_CHARS" in assert_error(client.post("/v1/jobs", json=body), 413, "too_large")
    assert flushed_redis.client().keys("rq:*") == []
