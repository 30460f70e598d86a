"""The worker's scoring interface: what the worker needs of a model, and the two kinds it can load.

The worker is handed a :class:`Scorer` at start-up and passes it to what needs it, so no module holds
the model in a global. ``cross-encoder`` is the real runtime (:mod:`rerank_worker.runtime`, the only
module that imports torch); ``fake`` is a torch-free word-overlap scorer, so the worker's plumbing
(batching, RQ bookkeeping, bulk chunks, faults) can be tested and demonstrated without a model.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
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


class ModelUnavailable(RuntimeError):
    """The model is neither a local folder nor in the Hugging Face cache, and cannot be downloaded now."""


#: The two ways out, named in every :class:`ModelUnavailable` message.
WAYS_OUT = (
    "either serve a local folder (--model FOLDER or RERANK_MODEL=FOLDER; `rerank-server model build ./models/tiny` "
    "makes a toy one offline, `rerank-server model fetch ./models/minilm` downloads a small real one), "
    "or connect to the internet (with HF_HUB_OFFLINE unset) so the model can be downloaded"
)


class _DropNewModelNotice(logging.Filter):
    """sentence-transformers says 'No modules.json found ..., initializing a new CrossEncoder model' for every
    plain transformers folder; the weights are loaded all the same, so the line only misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No modules.json found")


def check_available(model: str, *, hub_timeout_s: float = 5.0) -> None:
    """Raise :class:`ModelUnavailable` at once when loading ``model`` could only fail (after a minute of retries)."""
    if Path(model).expanduser().exists():
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelUnavailable(f"cannot load model {model}: there is no such folder; {WAYS_OUT}")
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(model, "config.json"), str):
            return  # downloaded before: loads offline
    except ValueError:  # not a valid repository id
        raise ModelUnavailable(f"cannot load model {model}: not a folder nor a Hugging Face id; {WAYS_OUT}") from None
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        import httpx

        try:
            httpx.head(constants.ENDPOINT, timeout=hub_timeout_s)
            return
        except httpx.HTTPError as exc:
            reason = f"{constants.ENDPOINT} cannot be reached ({type(exc).__name__}: {exc})"
    raise ModelUnavailable(
        f"cannot load model {model}: it is not a local folder nor in the Hugging Face cache, and {reason}; {WAYS_OUT}"
    )


def load(settings: Settings) -> Scorer:
    """The scorer ``settings.scorer`` names, on ``settings.device``; torch is imported only for the real one.

    Raises :class:`ModelUnavailable` (a one-line reason and the ways out) when the model cannot be had.
    """
    if settings.scorer == "fake":
        return FakeScorer(max_length=settings.max_length)
    check_available(settings.model)
    from rerank_worker.device import resolve_device
    from rerank_worker.runtime import Reranker

    notice = _DropNewModelNotice()
    st_logger = logging.getLogger("sentence_transformers.base.model")
    st_logger.addFilter(notice)
    try:
        return Reranker(
            settings.model,
            device=resolve_device(settings.device),
            batch_size=settings.batch_size,
            max_length=settings.max_length,
            dtype=settings.dtype,
        )
    except (OSError, ValueError) as exc:  # transformers: a folder or repository without a (reranker) model in it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(f"cannot load model {settings.model}: {first.rstrip('.')}; {WAYS_OUT}") from exc
    finally:
        st_logger.removeFilter(notice)
