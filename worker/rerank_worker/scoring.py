"""The worker's scoring interface: what the worker needs of a model, and the two kinds it can load.

The worker is handed a :class:`Scorer` at start-up and passes it to what needs it, so no module holds
the model in a global. ``cross-encoder`` is the real runtime (:mod:`rerank_worker.runtime`, the only
module that imports torch); ``fake`` is a torch-free word-overlap scorer, so the worker's plumbing
(batching, RQ bookkeeping, bulk chunks, faults) can be tested and demonstrated without a model.
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

from rerank_contract.jobs import InputTooLong, RerankPayload, ScoreMode, TruncationSide
from rerank_contract.settings import Settings


class Scorer(Protocol):
    """A reranker resident in this process: one score per (query, candidate) pair."""

    model_name: str
    device: str
    dtype: str
    max_length: int
    #: How many scorers of this kind this process has loaded: 1 for the life of a healthy worker.
    loads: ClassVar[int]

    def prepare(self, payload: RerankPayload) -> list[str]:
        """The payload's candidates after its length rules; raises :class:`InputTooLong` for ``truncate=False``."""
        ...

    def score_many(self, requests: list[tuple[str, list[str]]], mode: ScoreMode) -> list[list[float]]:
        """Scores for several (query, candidates) requests, in input order, as plain floats."""
        ...

    def warmup(self) -> None:
        """One small call, so the first request does not pay for start-up."""
        ...


class FakeScorer:
    """Scores a pair by the share of the query's words found in the candidate (raw: a logit, 8 x share - 4).

    Tokens are whitespace-separated words, so the length rules behave as they do with a tokenizer.
    """

    loads: ClassVar[int] = 0

    def __init__(self, *, max_length: int | None = None) -> None:
        type(self).loads += 1
        self.model_name = "fake"
        self.device = "cpu"
        self.dtype = "float32"
        self.max_length = max_length or 512

    def prepare(self, payload: RerankPayload) -> list[str]:
        candidates = payload.candidates
        if payload.max_tokens_per_doc is not None:
            candidates = [_clip(c, payload.max_tokens_per_doc, payload.truncation_side) for c in candidates]
        query_words = len(payload.query.split())
        for index, candidate in enumerate(candidates):
            words = query_words + len(candidate.split())
            if not payload.truncate and words > self.max_length:
                raise InputTooLong(
                    f"candidate {index} with the query is {words} tokens, the model takes at most {self.max_length}: "
                    "shorten it or send truncate=true to have it cut"
                )
        return candidates

    def score_many(self, requests: list[tuple[str, list[str]]], mode: ScoreMode) -> list[list[float]]:
        out = []
        for query, candidates in requests:
            words = set(query.lower().split())
            logits = [8 * len(words & set(c.lower().split())) / max(1, len(words)) - 4 for c in candidates]
            out.append(logits if mode is ScoreMode.RAW else [1 / (1 + math.exp(-x)) for x in logits])
        return out

    def warmup(self) -> None:
        self.score_many([("warm up", ["warm"])], ScoreMode.ACTIVATED)


def _clip(text: str, limit: int, side: TruncationSide) -> str:
    words = text.split()
    if len(words) <= limit:
        return text
    return " ".join(words[:limit] if side is TruncationSide.RIGHT else words[-limit:])


def load(settings: Settings) -> Scorer:
    """The scorer ``settings.scorer`` names, on ``settings.device``; torch is imported only for the real one."""
    if settings.scorer == "fake":
        return FakeScorer(max_length=settings.max_length)
    from rerank_worker import padding
    from rerank_worker.device import resolve_device
    from rerank_worker.runtime import Reranker

    reranker = Reranker(
        settings.model,
        device=resolve_device(settings.device),
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        dtype=settings.dtype,
    )
    if padding.wanted(settings.bucket_padding, reranker.device):
        padding.install(reranker.model, reranker.max_length)
    return reranker
