"""The model runtime: one CrossEncoder, loaded once, scoring (query, candidate) pairs.

The only module that imports torch. The worker process loads one :class:`Reranker` at start-up and
hands it to the worker as its :class:`~rerank_worker.scoring.Scorer`, so jobs reuse the loaded weights.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar

import torch
from sentence_transformers import CrossEncoder

from rerank_contract.jobs import RerankPayload, ScoreMode
from rerank_worker import lengths

log = logging.getLogger(__name__)


def resolve_dtype(requested: str, device: str) -> str:
    """``auto``: float16 where it is fast and well supported (cuda, mps), float32 on cpu."""
    if requested != "auto":
        return requested
    return "float16" if device.startswith(("cuda", "mps")) else "float32"


class Reranker:
    """A CrossEncoder on one device, with the scoring options the service exposes."""

    #: CrossEncoders this process has built: a worker that reloaded its model per job would show it here.
    loads: ClassVar[int] = 0

    def __init__(
        self, model: str, *, device: str, batch_size: int, max_length: int | None, dtype: str = "float32"
    ) -> None:
        started = time.perf_counter()
        type(self).loads += 1
        self.model_name = model
        self.batch_size = batch_size
        self.dtype = resolve_dtype(dtype, device)
        self.model = CrossEncoder(
            model, device=device, max_length=max_length, model_kwargs={"dtype": getattr(torch, self.dtype)}
        )
        if self.model.num_labels != 1:
            raise ValueError(f"{model} gives {self.model.num_labels} scores per pair; a reranker must give one")
        self.device = str(self.model.device)
        self.max_length = int(self.model.max_seq_length)
        self._empty_cache = torch.mps.empty_cache if self.device.startswith("mps") else None
        log.info(
            "model loaded: %s on %s, %s (max_length=%d) in %.1fs",
            model,
            self.device,
            self.dtype,
            self.max_length,
            time.perf_counter() - started,
        )

    def prepare(self, payload: RerankPayload) -> list[str]:
        """The payload's candidates after its length rules (see :mod:`rerank_worker.lengths`)."""
        return lengths.fit(self.model.tokenizer, self.max_length, payload)

    def score(self, query: str, candidates: list[str], mode: ScoreMode = ScoreMode.ACTIVATED) -> list[float]:
        """Scores in input order, as ``CrossEncoder.predict`` gives them, as plain floats (JSON-safe)."""
        return self.score_many([(query, candidates)], mode)[0]

    def score_many(self, requests: list[tuple[str, list[str]]], mode: ScoreMode) -> list[list[float]]:
        """Scores for several (query, candidates) requests from one ``predict`` call.

        ``predict`` sorts all pairs by length before cutting micro-batches, so pairs from different
        requests share batches with little padding; each pair's score does not depend on its batch.
        """
        pairs = [(query, c) for query, candidates in requests for c in candidates]
        if not pairs:
            return [[] for _ in requests]
        activation = torch.nn.Identity() if mode is ScoreMode.RAW else None
        flat = self.model.predict(
            pairs,
            batch_size=self.batch_size,
            activation_fn=activation,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        if self._empty_cache is not None:
            self._empty_cache()  # the MPS allocator otherwise keeps every batch's buffers
        scores = [float(s) for s in flat.reshape(len(pairs))]
        out, start = [], 0
        for _, candidates in requests:
            out.append(scores[start : start + len(candidates)])
            start += len(candidates)
        return out

    def warmup(self) -> None:
        """One small forward pass so kernels and allocator pools exist before the first request."""
        started = time.perf_counter()
        self.score("warm up", ["the first request should not pay for start-up"] * 2)
        log.info("warm-up done in %.0f ms", (time.perf_counter() - started) * 1000)
