"""Bulk job items over the tiny model's topics: each query with passages of every topic, in turn."""

from __future__ import annotations

from tests.support.tiny_model import TOPICS

PASSAGES = [p for docs in TOPICS.values() for p in docs]


def items(n: int, per_item: int) -> list[dict]:
    topics = list(TOPICS)
    return [
        {"id": f"i{i}", "query": topics[i % 5], "candidates": [PASSAGES[(i + k) % 20] for k in range(per_item)]}
        for i in range(n)
    ]
