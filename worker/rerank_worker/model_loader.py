"""Loading the scorer a worker serves: the fake one, or the model checked, loaded and set up on its device.

Apart from :mod:`rerank_worker.scorer` (the protocol), so that the runtime can use the scorer's types and this
module can build the runtime without an import cycle. torch is imported only when a real model is loaded.
"""

from __future__ import annotations

import logging

from rerank_contract.settings import Settings
from rerank_worker import model_source
from rerank_worker.fake_scorer import FakeScorer
from rerank_worker.scorer import Scorer


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
