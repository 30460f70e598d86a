"""Deterministic queries and passages of varied length (8 to 48 words: short RAG chunks, CPU-sized)."""

from __future__ import annotations

import random

_TEXT = (
    "retrieval augmented generation ranks passages by relevance using a cross encoder that reads the query "
    "and each candidate together while embeddings compare vectors computed separately neural networks learn "
    "representations from data gradient descent updates weights the index stores documents chunks overlap "
    "search engines answer questions about history science cooking finance astronomy gardening travel health "
    "the model scores pairs and the service sorts them best first latency throughput batch size matters"
)
WORDS = _TEXT.split()


def passages(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(8, 48))) for _ in range(n)]


def queries(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) for _ in range(n)]


class Workload:
    """Requests of ``size`` candidates drawn round-robin from a fixed pool."""

    def __init__(self, pool: int = 2000) -> None:
        self.pool = passages(pool)
        self.queries = queries(64)
        self._next = 0

    def request(self, size: int) -> tuple[str, list[str]]:
        start = self._next
        self._next = (self._next + size) % (len(self.pool) - size)
        return self.queries[start % len(self.queries)], self.pool[start : start + size]
