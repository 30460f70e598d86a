"""The model runtime: one CrossEncoder, loaded once, scoring (query, candidate) pairs.

The worker process holds exactly one :class:`Reranker` (see :func:`install` / :func:`resident`),
so jobs reuse the loaded weights instead of reloading them.
"""

from __future__ import annotations

import logging
import time

import torch
from sentence_transformers import CrossEncoder

from rerank_server.contract import RerankPayload, ScoreMode
from rerank_worker import lengths

log = logging.getLogger(__name__)


class Reranker:
    """A CrossEncoder on one device, with the scoring options the service exposes."""

    def __init__(self, model: str, *, device: str, batch_size: int, max_length: int | None) -> None:
        started = time.perf_counter()
        self.model_name = model
        self.batch_size = batch_size
        self.model = CrossEncoder(model, device=device, max_length=max_length)
        if self.model.num_labels != 1:
            raise ValueError(f"{model} gives {self.model.num_labels} scores per pair; a reranker must give one")
        self.device = str(self.model.device)
        self.max_length = int(self.model.max_seq_length)
        log.info(
            "model loaded: %s on %s (max_length=%d) in %.1fs",
            model,
            self.device,
            self.max_length,
            time.perf_counter() - started,
        )

    def prepare(self, payload: RerankPayload) -> list[str]:
        """The payload's candidates after its length rules (see :mod:`rerank_worker.lengths`)."""
        return lengths.fit(self.model.tokenizer, self.max_length, payload)

    def score(self, query: str, candidates: list[str], mode: ScoreMode = ScoreMode.ACTIVATED) -> list[float]:
        """Scores in input order, as ``CrossEncoder.predict`` gives them, as plain floats (JSON-safe)."""
        if not candidates:
            return []
        activation = torch.nn.Identity() if mode is ScoreMode.RAW else None
        scores = self.model.predict(
            [(query, c) for c in candidates],
            batch_size=self.batch_size,
            activation_fn=activation,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in scores.reshape(len(candidates))]

    def warmup(self) -> None:
        """One small forward pass so kernels and allocator pools exist before the first request."""
        started = time.perf_counter()
        self.score("warm up", ["the first request should not pay for start-up"] * 2)
        log.info("warm-up done in %.0f ms", (time.perf_counter() - started) * 1000)


_resident: Reranker | None = None
#: How many models this process has installed; 1 for the life of a healthy worker.
loads = 0


def install(reranker: Reranker) -> None:
    """Make ``reranker`` the model every job in this process uses."""
    global _resident, loads
    _resident = reranker
    loads += 1


def resident() -> Reranker:
    """The process's model; jobs fail clearly if a worker forgot to load one."""
    if _resident is None:
        raise RuntimeError("no model is loaded in this process: start jobs with `rerank-server worker`")
    return _resident
