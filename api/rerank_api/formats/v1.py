"""``POST /v1/rerank``: the seed's ``candidates`` format, or the Cohere v1 / Jina ``documents`` format.

The list field picks the format: ``candidates`` answers exactly as the seed did, ``documents``
answers in the Cohere v1 / Jina style. Giving both, or neither, is a 422 naming both fields.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError

from rerank_api.errors import responses
from rerank_api.formats.common import (
    CohereMeta,
    Document,
    Instruction,
    MaxChunks,
    TopN,
    Usage,
    cohere_meta,
    response_id,
    usage,
)
from rerank_api.ranking import RERANK_ERRORS, RankerDep
from rerank_contract.jobs import RerankPayload, ScoredIndex

SEED_EXAMPLE: JsonDict = {
    "query": "machine learning",
    "candidates": ["deep learning", "cooking recipes", "neural networks"],
}
DOCUMENTS_EXAMPLE: JsonDict = {
    "model": "BAAI/bge-reranker-v2-m3",
    "query": "machine learning",
    "documents": ["deep learning", {"text": "cooking recipes", "id": "doc-2"}, "neural networks"],
    "top_n": 2,
    "return_documents": True,
}

LISTS = "`candidates` (this server's format) or `documents` (Cohere v1 / Jina format)"


class V1RerankRequest(BaseModel):
    """Exactly one of ``candidates`` (this server's format) or ``documents`` (Cohere v1 / Jina format)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["candidates"]}, {"required": ["documents"]}],
            "examples": [SEED_EXAMPLE, DOCUMENTS_EXAMPLE],
        }
    )

    query: str = Field(description="The text the candidates or documents are scored against.")
    candidates: list[str] | None = Field(
        None, description="This server's format: texts to rank. The answer is `{results: [{index, score}], ...}`."
    )
    documents: list[str | Document] | None = Field(
        None,
        description="Cohere v1 / Jina format: texts, or objects whose `text` is scored. The answer is "
        "`{id, model, results: [{index, relevance_score, document?}], meta}`.",
    )
    top_n: TopN | None = None
    model: str | None = Field(
        None,
        description="The served model (any of its names, see GET /v1/models) to score with; default: the default "
        "model. The answer names its canonical name.",
    )
    return_documents: bool = Field(True, description="Documents format: echo each document as `{text, ...}`.")
    instruction: Instruction = None
    max_chunks_per_doc: MaxChunks = None

    @model_validator(mode="after")
    def _exactly_one_list(self) -> V1RerankRequest:
        if self.candidates is None and self.documents is None:
            raise PydanticCustomError("missing", f"{LISTS} is required")
        if self.candidates is not None and self.documents is not None:
            raise PydanticCustomError("format", f"both `candidates` and `documents` given: send one, {LISTS}")
        return self


class SeedResponse(BaseModel):
    """The seed's answer to ``candidates``: every candidate's index and score (or the best ``top_n``)."""

    results: list[ScoredIndex]
    model: str
    processing_time_ms: float
    tokens: int | None = Field(None, description="Tokens the model read for the request (template, chunks included).")


class DocumentResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(description="Sigmoid of the model's logit, in [0, 1].")
    document: Document | None = Field(None, description="The document as sent, when `return_documents` is true.")


class DocumentsResponse(BaseModel):
    """Cohere v1 (``id``, ``meta``) and Jina (``model``, ``usage``) answer in one: clients read ``results``."""

    id: str
    model: str
    usage: Usage
    results: list[DocumentResult]
    meta: CohereMeta


router = APIRouter(tags=["this server, Cohere v1, Jina"])


@router.post(
    "/v1/rerank",
    response_model=SeedResponse | DocumentsResponse,
    response_model_exclude_none=True,
    summary="Rank candidates (this server's format) or documents (Cohere v1 / Jina format)",
    responses={
        200: {"description": "`SeedResponse` for a body with `candidates`, `DocumentsResponse` for `documents`."},
        **responses(*RERANK_ERRORS),
    },
)
async def rerank_v1(body: V1RerankRequest, ranker: RankerDep) -> Any:
    """Results best first. Timings are in the ``x-queue-time``, ``x-inference-time`` and ``x-total-time``
    headers (milliseconds)."""
    options = {"instruction": body.instruction, "max_chunks_per_doc": body.max_chunks_per_doc}
    if body.candidates is not None:
        payload = RerankPayload(query=body.query, candidates=body.candidates, **options)
        ranked = await ranker.rank(payload, body.top_n, body.model)
        return SeedResponse(
            results=ranked.results, model=ranked.model, processing_time_ms=ranked.total_ms, tokens=ranked.tokens
        )
    assert body.documents is not None
    documents = [Document(text=d) if isinstance(d, str) else d for d in body.documents]
    payload = RerankPayload(query=body.query, candidates=[d.text for d in documents], **options)
    ranked = await ranker.rank(payload, body.top_n, body.model)
    return DocumentsResponse(
        id=response_id(),
        model=ranked.model,
        usage=usage(ranked.tokens),
        results=[
            DocumentResult(
                index=r.index,
                relevance_score=r.score,
                document=documents[r.index] if body.return_documents else None,
            )
            for r in ranked.results
        ],
        meta=cohere_meta("1", len(documents), ranked.tokens),
    )
