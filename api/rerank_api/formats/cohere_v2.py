"""``POST /v2/rerank``: Cohere's v2 format, as the ``cohere`` SDK's ``ClientV2.rerank``, LangChain and
LlamaIndex send it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from rerank_api.errors import responses
from rerank_api.formats.common import CohereMeta, Instruction, TopN, cohere_meta, response_id
from rerank_api.ranking import RERANK_ERRORS, RankerDep
from rerank_contract.jobs import RerankPayload


class CohereV2Request(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "rerank-v3.5",
                    "query": "machine learning",
                    "documents": ["deep learning", "cooking recipes", "neural networks"],
                    "top_n": 2,
                }
            ]
        }
    )

    model: str | None = Field(
        None,
        description="Required by the SDK: the served model (any of its names, see GET /v1/models); optional here "
        "(default: the default model).",
    )
    query: str
    documents: list[str]
    top_n: TopN | None = None
    max_tokens_per_doc: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        None,
        description="Cut each document to this many tokens before scoring; the pair is still cut to the model's "
        "max length.",
    )
    instruction: Instruction = None


class CohereV2Result(BaseModel):
    index: int
    relevance_score: float = Field(description="Sigmoid of the model's logit, in [0, 1].")


class CohereV2Response(BaseModel):
    id: str
    results: list[CohereV2Result]
    meta: CohereMeta


router = APIRouter(tags=["Cohere v2"])


@router.post(
    "/v2/rerank",
    response_model=CohereV2Response,
    summary="Rank documents (Cohere v2 format)",
    responses=responses(*RERANK_ERRORS),
)
async def rerank_v2(body: CohereV2Request, ranker: RankerDep) -> CohereV2Response:
    """Results best first, cut to ``top_n``; ``meta.tokens.input_tokens`` counts the tokens the model read."""
    payload = RerankPayload(
        query=body.query,
        candidates=body.documents,
        max_tokens_per_doc=body.max_tokens_per_doc,
        instruction=body.instruction,
    )
    ranked = await ranker.rank(payload, body.top_n, body.model)
    return CohereV2Response(
        id=response_id(),
        results=[CohereV2Result(index=r.index, relevance_score=r.score) for r in ranked.results],
        meta=cohere_meta("2", len(body.documents), ranked.tokens),
    )
