"""What the worker needs of a model: the :class:`Scorer` protocol and the values a scoring call passes.

The worker is handed a :class:`Scorer` at start-up (:func:`rerank_worker.model_loader.load`) and passes it to
what needs it, so no module holds the model in a global. Two kinds implement it:
:class:`rerank_worker.runtime.Reranker` (the CrossEncoder, on torch or an exported runtime) and
:class:`rerank_worker.fake_scorer.FakeScorer` (torch-free). This module imports neither, so the worker's
plumbing and the length rules can use these types without loading a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

from rerank_contract.jobs import RerankPayload, ScoreMode


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
