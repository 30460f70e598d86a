"""Error messages that say what to fix (bad JSON, no JSON content type); a metrics label for every real route."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support.error_answers import assert_error

BODY = b'{"query": "q", "candidates": ["a"]}'


@pytest.fixture
def client(api_client: Callable[..., TestClient]) -> TestClient:
    return api_client(max_body_bytes=2048)


def test_malformed_json_names_the_problem_and_where(client: TestClient) -> None:
    response = client.post("/v1/rerank", content=b'{"query": "q",, }', headers={"content-type": "application/json"})
    message = assert_error(response, 422, "validation")
    assert message.startswith("body is not valid JSON (Expecting property name enclosed in double quotes at character")
    assert "send one JSON object" in message


@pytest.mark.parametrize(("headers", "sent"), [({}, "no Content-Type"), ({"content-type": "text/plain"}, "text/plain")])
def test_a_body_without_a_json_content_type_names_the_header(client: TestClient, headers: dict, sent: str) -> None:
    message = assert_error(client.post("/v1/rerank", content=BODY, headers=headers), 422, "validation")
    assert sent in message and "Content-Type: application/json" in message


def test_curls_default_form_content_type_is_named(client: TestClient) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    message = assert_error(client.post("/v2/rerank", content=BODY, headers=headers), 422, "validation")
    assert "application/x-www-form-urlencoded" in message and "-H 'Content-Type: application/json'" in message


def test_json_that_is_not_an_object(client: TestClient) -> None:
    response = client.post("/v1/rerank", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert assert_error(response, 422, "validation") == "body: send one JSON object ({...}), not a list or value"


def _requests(client: TestClient) -> dict[tuple[str, str, str], float]:
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("rerank_http_requests_total{"):
            labels, value = line[len("rerank_http_requests_total{") :].split("} ")
            parts = dict(p.split("=", 1) for p in labels.split(","))
            out[(parts["method"].strip('"'), parts["route"].strip('"'), parts["status"].strip('"'))] = float(value)
    return out


def test_every_real_route_has_its_own_label(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 200
    big = b"x" * 4096
    assert client.post("/v1/rerank", content=big, headers={"content-type": "application/json"}).status_code == 413
    assert client.post("/v1/jobs", content=big, headers={"content-type": "application/json"}).status_code == 413
    assert client.get("/v1/jobs/some-id").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    seen = _requests(client)
    for key in [
        ("GET", "/docs", "200"),
        ("GET", "/redoc", "200"),
        ("GET", "/openapi.json", "200"),
        ("POST", "/v1/rerank", "413"),
        ("POST", "/v1/jobs", "413"),
        ("GET", "/v1/jobs/{job_id}", "404"),
        ("GET", "unmatched", "404"),
    ]:
        assert seen.get(key) == 1, (key, seen)
