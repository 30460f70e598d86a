"""The page at / and its /v1/status: open page, protected data, bulk jobs listed with their state."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support.error_answers import assert_error

KEY = "page-key"


@pytest.fixture
def client(api_client: Callable[..., TestClient]) -> TestClient:
    return api_client(api_key=KEY)


def test_the_page_and_its_files_are_open(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "static/page/app.js" in page.text and "https://" not in page.text  # nothing from a CDN
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        asset = client.get(f"/static/page/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
        assert "https://" not in asset.text


def test_status_needs_the_key_and_lists_waiting_bulk_jobs(client: TestClient) -> None:
    assert_error(client.get("/v1/status"), 401, "unauthorized")
    auth = {"Authorization": f"Bearer {KEY}"}
    job = client.post("/v1/jobs", json={"items": [{"query": "q", "candidates": ["a", "b"]}]}, headers=auth).json()
    status = client.get("/v1/status", headers=auth).json()
    assert status["redis"] == "ok" and status["workers"] == [] and status["problems"] == []
    assert status["queue_depth"]["rerank-bulk"] == 1
    assert [(j["id"], j["status"]) for j in status["bulk_jobs"]] == [(job["id"], "queued")]
    assert status["rerank_requests"] == 0 and status["rerank_seconds"] == 0
