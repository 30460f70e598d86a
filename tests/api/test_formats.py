"""The client formats' validation, the API key and the OpenAPI schema, against a real Redis with no worker.

Requests that pass validation (and the key) reach the dispatcher and get ``503 no_worker``: that is how
these tests tell "accepted" from "refused" without a model.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from rerank_api.app import create_app
from rerank_contract.settings import Settings
from tests.support.error_answers import assert_error
from tests.support.redis_server import RedisServer


def client_for(redis: RedisServer, **settings) -> TestClient:
    return TestClient(create_app(Settings(redis_url=redis.url, model="some/model", **settings)))


@pytest.fixture
def client(api_client: Callable[..., TestClient]) -> TestClient:
    return api_client(model="some/model")


@pytest.fixture
def keyed(api_client: Callable[..., TestClient]) -> TestClient:
    return api_client(model="some/model", api_key="s3cret-key")


# --- /v1/rerank: candidates or documents -------------------------------------------------------------


def test_both_lists_are_422_naming_both(client: TestClient) -> None:
    body = {"query": "q", "candidates": ["a"], "documents": ["a"]}
    message = assert_error(client.post("/v1/rerank", json=body), 422, "validation")
    assert "both `candidates` and `documents`" in message


@pytest.mark.parametrize("body", [{"query": "q"}, {"query": "q", "candidates": None, "documents": None}])
def test_neither_list_is_422_naming_both(client: TestClient, body: dict) -> None:
    message = assert_error(client.post("/v1/rerank", json=body), 422, "validation")
    assert "`candidates`" in message and "`documents`" in message and "required" in message


@pytest.mark.parametrize(
    ("documents", "field"),
    [
        ("abc", "documents: Input should be a valid list"),
        ([{"title": "no text"}], "documents.0.Document.text: Field required"),
        ([3], "documents.0.str: Input should be a valid string"),
    ],
)
def test_bad_documents_are_422_naming_the_field(client: TestClient, documents, field: str) -> None:
    body = {"query": "q", "documents": documents}
    assert field in assert_error(client.post("/v1/rerank", json=body), 422, "validation")


def test_documents_as_strings_and_objects_are_accepted(client: TestClient) -> None:
    body = {"model": "m", "query": "q", "documents": ["a", {"text": "b", "id": 7}], "top_n": 1}
    assert_error(client.post("/v1/rerank", json=body), 503, "no_worker")


def test_empty_documents_answer_at_once_in_each_format(client: TestClient, flushed_redis: RedisServer) -> None:
    v1 = client.post("/v1/rerank", json={"query": "q", "documents": []})
    assert v1.status_code == 200
    assert v1.json()["results"] == [] and v1.json()["model"] == "some/model"
    v2 = client.post("/v2/rerank", json={"model": "m", "query": "q", "documents": []})
    assert v2.status_code == 200 and v2.json()["results"] == []
    tei = client.post("/rerank", json={"query": "q", "texts": []})
    assert tei.status_code == 200 and tei.json() == []
    assert flushed_redis.client().keys("rq:*") == []


# --- top_n and the other per-format fields ----------------------------------------------------------


@pytest.mark.parametrize("top_n", [0, -1, 2.5, "2", True, None])
@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_invalid_top_n_is_422(client: TestClient, path: str, top_n) -> None:
    body = {"model": "m", "query": "q", "documents": ["a", "b"], "top_n": top_n}
    if top_n is None:  # null means "not given": accepted
        assert_error(client.post(path, json=body), 503, "no_worker")
    else:
        assert "top_n" in assert_error(client.post(path, json=body), 422, "validation")


def test_top_n_with_candidates_is_validated_too(client: TestClient) -> None:
    body = {"query": "q", "candidates": ["a"], "top_n": 0}
    assert "top_n" in assert_error(client.post("/v1/rerank", json=body), 422, "validation")


@pytest.mark.parametrize("value", [0, -3, "4", 1.5])
def test_invalid_max_tokens_per_doc_is_422(client: TestClient, value) -> None:
    body = {"model": "m", "query": "q", "documents": ["a"], "max_tokens_per_doc": value}
    assert "max_tokens_per_doc" in assert_error(client.post("/v2/rerank", json=body), 422, "validation")


@pytest.mark.parametrize("direction", ["Left", "right", "RIGHT", "left"])
def test_tei_truncation_direction_any_case(client: TestClient, direction: str) -> None:
    body = {"query": "q", "texts": ["a"], "truncation_direction": direction}
    assert_error(client.post("/rerank", json=body), 503, "no_worker")


def test_tei_unknown_truncation_direction_is_422(client: TestClient) -> None:
    body = {"query": "q", "texts": ["a"], "truncation_direction": "middle"}
    assert "truncation_direction" in assert_error(client.post("/rerank", json=body), 422, "validation")


def test_tei_missing_texts_is_422_naming_both_lists(client: TestClient) -> None:
    message = assert_error(client.post("/rerank", json={"query": "q"}), 422, "validation")
    assert "`texts`" in message and "`documents`" in message and "required" in message
    both = {"query": "q", "texts": ["a"], "documents": ["a"]}
    assert "both `texts` and `documents`" in assert_error(client.post("/rerank", json=both), 422, "validation")


def test_v2_missing_documents_is_422(client: TestClient) -> None:
    body = {"model": "m", "query": "q"}
    assert "documents: Field required" in assert_error(client.post("/v2/rerank", json=body), 422, "validation")


def test_info_without_worker_is_503(client: TestClient) -> None:
    assert_error(client.get("/info"), 503, "no_worker")


def test_limits_apply_to_every_format(flushed_redis: RedisServer) -> None:
    with client_for(flushed_redis, max_candidates=2) as c:
        texts = ["a", "b", "c"]
        for path, body in [
            ("/v1/rerank", {"query": "q", "documents": texts}),
            ("/v2/rerank", {"model": "m", "query": "q", "documents": texts}),
            ("/rerank", {"query": "q", "texts": texts}),
        ]:
            assert "RERANK_MAX_CANDIDATES" in assert_error(c.post(path, json=body), 413, "too_large")


# --- the API key -----------------------------------------------------------------------------------

ROUTES = [
    ("post", "/v1/rerank", {"query": "q", "candidates": ["a"]}),
    ("post", "/v1/rerank", {"query": "q", "documents": ["a"]}),
    ("post", "/v2/rerank", {"model": "m", "query": "q", "documents": ["a"]}),
    ("post", "/rerank", {"query": "q", "texts": ["a"]}),
    ("get", "/info", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(
    ("authorization", "message"),
    [(None, "missing"), ("Bearer wrong-key", "wrong API key"), ("s3cret-key", "missing"), ("Bearer ", "missing")],
)
def test_key_set_refuses_missing_or_wrong_key(keyed: TestClient, method, path, body, authorization, message) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    response = keyed.request(method, path, json=body, headers=headers)
    assert message in assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_key_set_right_key_passes(keyed: TestClient, method, path, body) -> None:
    response = keyed.request(method, path, json=body, headers={"authorization": "Bearer s3cret-key"})
    assert_error(response, 503, "no_worker")  # past the key check, on to the (absent) worker


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_no_key_set_accepts_any_or_no_bearer_header(client: TestClient, method, path, body) -> None:
    for headers in ({}, {"authorization": "Bearer whatever-the-client-sends"}):
        assert_error(client.request(method, path, json=body, headers=headers), 503, "no_worker")


def test_empty_key_means_no_key(flushed_redis: RedisServer) -> None:
    with client_for(flushed_redis, api_key="") as c:
        assert_error(c.post("/rerank", json={"query": "q", "texts": ["a"]}), 503, "no_worker")


def test_health_and_docs_stay_open_with_a_key(keyed: TestClient) -> None:
    assert keyed.get("/health").status_code == 503  # no worker, but answered without a key
    assert keyed.get("/docs").status_code == 200
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, methods in spec["paths"].items():
        for operation in methods.values():
            guarded = "security" in operation
            assert guarded == (path != "/health"), path
            assert ("401" in operation["responses"]) == guarded, path


def test_openapi_without_a_key_shows_no_security(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    assert all("401" not in op["responses"] for methods in spec["paths"].values() for op in methods.values())


# --- the OpenAPI schema describes every format ------------------------------------------------------


def schema_of(spec: dict, ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def test_openapi_describes_every_format(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/info", "/health"} <= set(paths)

    def request_schema(path: str) -> dict:
        return schema_of(spec, paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"])

    def ok_schema(path: str, method: str = "post") -> dict:
        return paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]

    v1 = request_schema("/v1/rerank")
    assert {"query", "candidates", "documents", "top_n", "return_documents", "model"} <= set(v1["properties"])
    assert v1["oneOf"] == [{"required": ["candidates"]}, {"required": ["documents"]}]
    v1_answers = {s["$ref"].rsplit("/", 1)[1] for s in ok_schema("/v1/rerank")["anyOf"]}
    assert v1_answers == {"SeedResponse", "DocumentsResponse"}

    v2 = request_schema("/v2/rerank")
    assert {"model", "query", "documents", "top_n", "max_tokens_per_doc"} <= set(v2["properties"])
    assert set(v2["required"]) == {"query", "documents"}
    assert {"id", "results", "meta"} <= set(schema_of(spec, ok_schema("/v2/rerank"))["properties"])

    tei = request_schema("/rerank")
    assert {"query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction"} <= set(tei["properties"])
    assert {"documents", "top_n", "return_documents", "model", "instruction"} <= set(tei["properties"])
    assert tei["oneOf"] == [{"required": ["texts"]}, {"required": ["documents"]}]
    tei_array, infinity_answer = ok_schema("/rerank")["anyOf"]
    assert tei_array["type"] == "array"
    assert set(schema_of(spec, tei_array["items"])["properties"]) == {"index", "text", "score"}
    assert {"object", "results", "usage", "model"} <= set(schema_of(spec, infinity_answer)["properties"])
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        assert "instruction" in request_schema(path)["properties"], path
    info = schema_of(spec, ok_schema("/info", "get"))
    assert {"model_id", "model_type", "max_input_length", "max_client_batch_size"} <= set(info["properties"])

    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):
        answers = paths[path]["post"]["responses"]
        assert {"413", "422", "503", "504"} <= set(answers), path
        assert answers["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "truncate=false" not in paths["/v2/rerank"]["post"]["responses"]["413"]["description"]
    assert "truncate=false" in paths["/rerank"]["post"]["responses"]["413"]["description"]


def test_a_401_carries_detail_for_jina_style_clients(keyed: TestClient) -> None:
    """The Jina rerankers of LlamaIndex and Haystack raise ``KeyError: 'detail'`` on a body without it."""
    body = {"model": "m", "query": "q", "documents": ["a"]}
    response = keyed.post("/v1/rerank", json=body, headers={"authorization": "Bearer wrong"})
    assert assert_error(response, 401, "unauthorized") == "wrong API key"
    assert response.json()["detail"] == "wrong API key"


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank"])
def test_a_non_string_instruction_is_422_naming_it(client: TestClient, path: str) -> None:
    body = {"model": "m", "query": "q", "documents": ["a"], "instruction": 3}
    assert "instruction" in assert_error(client.post(path, json=body), 422, "validation")


def test_max_chunks_per_doc_must_be_a_positive_integer(client: TestClient) -> None:
    body = {"query": "q", "documents": ["a"], "max_chunks_per_doc": 0}
    assert "max_chunks_per_doc" in assert_error(client.post("/v1/rerank", json=body), 422, "validation")
    body["max_chunks_per_doc"] = 2
    assert_error(client.post("/v1/rerank", json=body), 503, "no_worker")
