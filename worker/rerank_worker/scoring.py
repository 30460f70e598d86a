"""The worker's scoring interface: what the worker needs of a model, and the two kinds it can load.

The worker is handed a :class:`Scorer` at start-up and passes it to what needs it, so no module holds
the model in a global. ``cross-encoder`` is the real runtime (:mod:`rerank_worker.runtime`, the only
module that imports torch); ``fake`` is a torch-free word-overlap scorer, so the worker's plumbing
(batching, RQ bookkeeping, bulk chunks, faults) can be tested and demonstrated without a model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

from rerank_contract.defaults import BATCH_SIZE_UNMEASURED
from rerank_contract.jobs import InputTooLong, RerankPayload, ScoreMode, TruncationSide
from rerank_contract.settings import Settings
from rerank_worker import model_source


@dataclass(frozen=True)
class Prepared:
    """A payload's candidates as they are scored, after its length rules.

    ``texts`` are what the model scores: one per candidate, or, with ``max_chunks_per_doc``, several for a
    candidate split into chunks; ``owners[i]`` is the candidate of ``texts[i]`` (None: text i is candidate i).
    """

    texts: list[str]
    owners: list[int] | None = None

    def best(self, scores: list[float], candidates: int) -> list[float]:
        """One score per candidate: its own, or its best chunk's."""
        if self.owners is None:
            return scores
        out = [-math.inf] * candidates
        for owner, score in zip(self.owners, scores, strict=True):
            out[owner] = max(out[owner], score)
        return out


@dataclass(frozen=True)
class Scores:
    """What one scoring call gives back, per request in input order: a plain float per candidate, and the tokens
    the model read for all its candidates (template, instruction and special tokens included, after truncation).

    The tokens are counted on the inputs the model scored, so no request is tokenized twice just to count them.
    """

    scores: list[list[float]]
    tokens: list[int]


class Scorer(Protocol):
    """A reranker resident in this process: one score per (query, candidate) pair."""

    model_name: str
    device: str
    dtype: str
    max_length: int
    #: What runs the forward pass (RERANK_BACKEND), and the exported file it runs (None: the model as loaded).
    backend: str
    backend_file: str | None
    #: Pairs per forward pass (after :meth:`tune`, the measured best where none was set).
    batch_size: int
    #: How many scorers of this kind this process has loaded: 1 for the life of a healthy worker.
    loads: ClassVar[int]

    def prepare(self, payload: RerankPayload) -> Prepared:
        """The payload's texts after its length rules; raises :class:`InputTooLong` for ``truncate=False``."""
        ...

    def score_many(
        self, requests: list[tuple[str, list[str]]], mode: ScoreMode, instruction: str | None = None
    ) -> Scores:
        """Scores (and tokens read) for several (query, candidates) requests with one instruction, in input order."""
        ...

    def warmup(self) -> None:
        """One small call, so the first request does not pay for start-up."""
        ...

    def tune(self) -> str | None:
        """Settle what is measured on this hardware (the micro-batch size); a line for the log, or None."""
        ...


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
        self.backend_file = None
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


def load(settings: Settings) -> Scorer:
    """The scorer ``settings.scorer`` names, on ``settings.device``; torch is imported only for the real one.

    Raises :class:`~rerank_worker.model_source.ModelUnavailable` (one line: the reason and the ways out) when the
    model cannot be had.
    """
    if settings.scorer == "fake":
        return FakeScorer(max_length=settings.max_length, max_chunks_per_doc=settings.max_chunks_per_doc)
    model_source.check_available(settings.model)
    from rerank_worker import padding
    from rerank_worker.device import resolve_device
    from rerank_worker.runtime import ModelUnusable, Reranker

    notice = model_source.DropNewModelNotice()
    st_logger = logging.getLogger("sentence_transformers.base.model")
    st_logger.addFilter(notice)
    try:
        reranker = Reranker(
            settings.model,
            device=resolve_device(settings.device),
            batch_size=None if settings.batch_size == "auto" else settings.batch_size,
            max_length=settings.max_length,
            dtype=settings.dtype,
            instruction=settings.instruction,
            max_chunks_per_doc=settings.max_chunks_per_doc,
            backend=settings.backend,
            backend_variant=settings.backend_variant,
        )
    except ModelUnusable:  # a model was found but cannot rerank: its own message says why
        raise
    except (OSError, ValueError) as exc:  # transformers: a folder or repository without a (reranker) model in it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise model_source.ModelUnavailable(
            f"cannot load model {settings.model}: {first.rstrip('.')}; {model_source.WAYS_OUT}"
        ) from exc
    finally:
        st_logger.removeFilter(notice)
    if padding.wanted(settings.bucket_padding, reranker.device):
        padding.install(reranker.model, reranker.max_length)
    return reranker
