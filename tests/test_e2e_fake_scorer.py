"""``RERANK_SCORER=fake``: a real worker process without torch or a model, behind the real API."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerank_contract.jobs import ScoreMode
from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def test_fake_scorer_serves_through_the_queue_without_loading_torch(make_stack) -> None:
    from rerank_worker.fake_scorer import FakeScorer

    stack: Stack = make_stack(SCORER="fake", MODEL="/no/such/model")  # the fake needs no model folder
    stack.start_api()
    worker = stack.start_worker()
    candidates = ["cooking recipes", "machine learning basics", "learning to cook"]
    response = stack.rerank("machine learning", candidates)
    assert response.status_code == 200, response.text
    (want,) = FakeScorer().score_many([("machine learning", candidates)], ScoreMode.ACTIVATED).scores
    assert {r["index"]: r["score"] for r in response.json()["results"]} == pytest.approx(dict(enumerate(want)))
    assert [r["index"] for r in response.json()["results"]] == [1, 2, 0]
    health = stack.health()
    assert (health["model"], health["device"]) == ("fake", "cpu")
    assert worker.proc is not None
    maps = Path(f"/proc/{worker.proc.pid}/maps").read_text()
    assert "libtorch" not in maps  # the worker process never loaded torch
