"""Rankings checked against the reference: ``CrossEncoder.predict`` on the same pairs, in this process."""

from __future__ import annotations

import httpx
import pytest

from rerank_contract.jobs import BulkResult
from tests.support.services import Stack


def expected(cross_encoder, query: str, candidates: list[str]) -> list[tuple[int, float]]:
    scores = cross_encoder.predict([(query, c) for c in candidates])
    return sorted(((i, float(s)) for i, s in enumerate(scores)), key=lambda t: -t[1])


def assert_matches(body: dict, want: list[tuple[int, float]]) -> None:
    got = [(r["index"], r["score"]) for r in body["results"]]
    assert [i for i, _ in got] == [i for i, _ in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-5)


def sync_results(stack: Stack, query: str, candidates: list[str], **options: object) -> list[dict]:
    """``/v1/rerank``'s results; ``options``: its optional fields (instruction, max_chunks_per_doc)."""
    body = {"query": query, "candidates": candidates, **options}
    response = httpx.post(f"{stack.url}/v1/rerank", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def assert_equals_predict(result: BulkResult, payload: dict, cross_encoder) -> None:
    pairs = [(item["query"], c) for item in payload["items"] for c in item["candidates"]]
    flat = cross_encoder.predict(pairs, batch_size=len(pairs)).tolist()
    start = 0
    for item, got in zip(payload["items"], result.items, strict=True):
        want = flat[start : start + len(item["candidates"])]
        start += len(item["candidates"])
        assert got.id == item["id"]
        assert {r.index: r.score for r in got.results} == pytest.approx(dict(enumerate(want)), abs=1e-5)
