"""A torch-free scorer: word overlap, so the worker's plumbing can be tried and tested without a model.

``RERANK_SCORER=fake`` runs it: batching, RQ bookkeeping, bulk chunks, length rules and faults behave as
with a real model, and a test can compute every score by hand.
"""

from __future__ import annotations

import math
from typing import ClassVar

from rerank_contract.defaults import BATCH_SIZE_UNMEASURED
from rerank_contract.jobs import InputTooLong, RerankPayload, ScoreMode, TruncationSide
from rerank_worker.scorer import Prepared, Scores


class FakeScorer:
    """Scores a pair by the share of the query's words found in the candidate (raw: a logit, 8 x share - 4).

    Tokens are whitespace-separated words, so the length rules behave as they do with a tokenizer; an
    instruction's words count as tokens and are otherwise ignored; chunks are runs of words.
    """

    loads: ClassVar[int] = 0

    def __init__(self, *, max_length: int | None = None, max_chunks_per_doc: int | None = None) -> None:
        type(self).loads += 1
        self.max_chunks_per_doc = max_chunks_per_doc
        self.model_name = "fake"
        self.device = "cpu"
        self.dtype = "float32"
        self.backend = "fake"
        self.backend_file: str | None = None
        self.max_length = max_length or 512
        self.batch_size = BATCH_SIZE_UNMEASURED

    def prepare(self, payload: RerankPayload) -> Prepared:
        candidates = payload.candidates
        if payload.max_tokens_per_doc is not None:
            candidates = [_clip(c, payload.max_tokens_per_doc, payload.truncation_side) for c in candidates]
        overhead = len(payload.query.split()) + len((payload.instruction or "").split())
        room = max(1, self.max_length - overhead)
        texts, owners = [], []
        for index, candidate in enumerate(candidates):
            words = candidate.split()
            if not payload.truncate and overhead + len(words) > self.max_length:
                raise InputTooLong(
                    f"candidate {index} with the query is {overhead + len(words)} tokens, the model takes at most "
                    f"{self.max_length}: shorten it or send truncate=true to have it cut"
                )
            chunks = payload.max_chunks_per_doc or self.max_chunks_per_doc
            if chunks is not None and len(words) > room:
                pieces = [words[i : i + room] for i in range(0, len(words), room)][:chunks]
                texts += [" ".join(piece) for piece in pieces]
                owners += [index] * len(pieces)
            else:
                texts.append(candidate)
                owners.append(index)
        return Prepared(texts, owners if len(owners) > len(candidates) else None)

    def score_many(
        self, requests: list[tuple[str, list[str]]], mode: ScoreMode, instruction: str | None = None
    ) -> Scores:
        out, tokens = [], []
        overhead = len((instruction or "").split())
        for query, candidates in requests:
            words = set(query.lower().split())
            logits = [8 * len(words & set(c.lower().split())) / max(1, len(words)) - 4 for c in candidates]
            out.append(logits if mode is ScoreMode.RAW else [1 / (1 + math.exp(-x)) for x in logits])
            reads = overhead + len(query.split())
            tokens.append(sum(min(self.max_length, reads + len(c.split())) for c in candidates))
        return Scores(out, tokens)

    def warmup(self) -> None:
        self.score_many([("warm up", ["warm"])], ScoreMode.ACTIVATED)

    def tune(self) -> None:
        return None  # words cost nothing per batch


def _clip(text: str, limit: int, side: TruncationSide) -> str:
    words = text.split()
    if len(words) <= limit:
        return text
    return " ".join(words[:limit] if side is TruncationSide.RIGHT else words[-limit:])
