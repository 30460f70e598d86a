"""The model runtime: one CrossEncoder, loaded once, scoring (query, candidate) pairs.

The worker process holds exactly one :class:`Reranker` (see :func:`install` / :func:`resident`),
so jobs reuse the loaded weights instead of reloading them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

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

    def __init__(
        self, model: str, *, device: str, batch_size: int, max_length: int | None, dtype: str = "float32"
    ) -> None:
        started = time.perf_counter()
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


#: On GPUs, the thread sync batches are scored on, so that the worker's queue work overlaps the model
#: call; the warm-up runs there too, as the first calls on a new thread are slower. (Bulk jobs, the
#: sync jobs served between their chunks, and everything on CPUs run on the worker's own thread; the
#: model never runs two calls at once.)
_model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")


def on_model_thread(device: str) -> bool:
    """Whether sync batches on ``device`` run on the model thread, overlapping the worker's queue work.

    Not on CPUs: there the worker's Python would take cores from torch's own threads (on 2 cores it
    cost about 15% of throughput).
    """
    return not device.startswith("cpu")


def submit(call: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run ``call(*args)`` on the model thread."""
    return _model_thread.submit(call, *args)


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
