"""Infinity's and vLLM's rerank body, which ``POST /rerank`` also takes (LiteLLM's ``infinity/`` and
``hosted_vllm/`` providers send it): ``{model, query, documents, top_n, return_documents, raw_scores}``.

The route is TEI's (:mod:`rerank_api.formats.tei`), which picks the format by the list field: ``texts``
is TEI's, ``documents`` this one. The answer is Infinity's ``{object, id, created, model, results, usage}``,
with ``relevance_score`` and ``index`` as vLLM's clients read them too.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from rerank_api.formats.common import Usage, response_id, usage
from rerank_api.ranking import Ranked


class DocumentText(BaseModel):
    text: str


class InfinityResult(BaseModel):
    relevance_score: float
    index: int
    document: DocumentText | None = Field(None, description="The document as `{text}`, when `return_documents`.")


class InfinityResponse(BaseModel):
    object: Literal["rerank"] = "rerank"
    id: str
    created: int
    model: str
    results: list[InfinityResult]
    usage: Usage


def answer(ranked: Ranked, documents: list[str], return_documents: bool) -> InfinityResponse:
    return InfinityResponse(
        id=response_id(),
        created=int(time.time()),
        model=ranked.model,
        results=[
            InfinityResult(
                relevance_score=r.score,
                index=r.index,
                document=DocumentText(text=documents[r.index]) if return_documents else None,
            )
            for r in ranked.results
        ],
        usage=usage(ranked.tokens),
    )
