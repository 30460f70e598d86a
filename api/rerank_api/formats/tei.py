"""Text Embeddings Inference's rerank API: ``POST /rerank`` (a bare array) and ``GET /info``, as Dify's
TEI provider, RAGFlow and LlamaIndex's TEI reranker call them.

``POST /rerank`` also takes Infinity's and vLLM's body (:mod:`rerank_api.formats.infinity`): the list
field picks the format, ``texts`` (TEI) or ``documents`` (Infinity / vLLM); both or neither is a 422."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from rerank_api.deps import DispatcherDep, SettingsDep
from rerank_api.errors import ErrorType, responses
from rerank_api.formats import infinity
from rerank_api.formats.common import Instruction, MaxChunks, TopN
from rerank_api.ranking import RERANK_ERRORS, RankerDep
from rerank_contract import __version__
from rerank_contract.jobs import RerankPayload, ScoreMode, TruncationSide


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


LISTS = "`texts` (TEI format) or `documents` (Infinity / vLLM format)"


class TeiRerankRequest(BaseModel):
    """Exactly one of ``texts`` (TEI's format) or ``documents`` (Infinity's / vLLM's)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["texts"]}, {"required": ["documents"]}],
            "examples": [
                {"query": "machine learning", "texts": ["deep learning", "cooking recipes"], "return_text": True},
                {
                    "model": "reranker",
                    "query": "machine learning",
                    "documents": ["deep learning", "cooking"],
                    "top_n": 1,
                },
            ],
        }
    )

    query: str
    texts: list[str] | None = Field(None, description="TEI format: the answer is a bare array `[{index, score}]`.")
    documents: list[str] | None = Field(
        None,
        description="Infinity / vLLM format: the answer is `{object, id, created, model, results: [{relevance_score, "
        "index, document?}], usage}`.",
    )
    model: str | None = Field(
        None,
        description="The served model (any of its names, see GET /v1/models); default: the default model (TEI's "
        "body has none).",
    )
    top_n: TopN | None = None
    return_documents: bool = Field(False, description="Infinity / vLLM format: echo each document.")
    instruction: Instruction = None
    max_chunks_per_doc: MaxChunks = None
    max_tokens_per_doc: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        None, description="Cut each text to this many tokens before scoring (as Cohere v2 and vLLM)."
    )
    raw_scores: bool = Field(False, description="Raw logits instead of sigmoid scores in [0, 1].")
    return_text: bool = Field(False, description="Echo each text in the results.")
    truncate: bool | None = Field(
        None,
        description="Cut pairs longer than the model's max length (null: yes). false answers 413 for such a pair.",
    )
    truncation_direction: Annotated[TruncationSide, BeforeValidator(_lower)] = Field(
        TruncationSide.RIGHT,
        description="Which end of a too-long text is cut: `Right` keeps its start, `Left` its end (case-insensitive).",
    )

    @model_validator(mode="after")
    def _exactly_one_list(self) -> TeiRerankRequest:
        if self.texts is None and self.documents is None:
            raise PydanticCustomError("missing", f"{LISTS} is required")
        if self.texts is not None and self.documents is not None:
            raise PydanticCustomError("format", f"both `texts` and `documents` given: send one, {LISTS}")
        return self


class TeiRank(BaseModel):
    index: int
    text: str | None = Field(None, description="The text, when `return_text` is true.")
    score: float


class RerankerLabels(BaseModel):
    id2label: dict[str, str]
    label2id: dict[str, int]


class TeiModelType(BaseModel):
    reranker: RerankerLabels


class TeiInfo(BaseModel):
    """The fields of TEI's ``/info`` that this server can state truthfully."""

    model_id: str = Field(description="The default model's canonical name.")
    model_sha: str | None = None
    model_type: TeiModelType
    max_input_length: int = Field(description="Tokens per (query, text) pair: the smallest of the live workers'.")
    max_client_batch_size: int = Field(description="Texts per request (RERANK_MAX_CANDIDATES).")
    auto_truncate: bool = Field(True, description="Too-long pairs are cut unless a request sends truncate=false.")
    version: str


router = APIRouter(tags=["Text Embeddings Inference (TEI)"])


@router.post(
    "/rerank",
    response_model=list[TeiRank] | infinity.InfinityResponse,
    response_model_exclude_none=True,
    summary="Rank texts (TEI format: a bare array, best first) or documents (Infinity / vLLM format)",
    responses={
        200: {"description": "A bare array of `TeiRank` for `texts`, `InfinityResponse` for `documents`."},
        **responses(*RERANK_ERRORS, ErrorType.INPUT_TOO_LONG),
    },
)
async def rerank_tei(body: TeiRerankRequest, ranker: RankerDep) -> Any:
    """Every text's index and score, best first (``top_n`` cuts either format). The tokens the model read are
    in the ``x-compute-tokens`` header (and the Infinity answer's ``usage``)."""
    texts = body.texts if body.texts is not None else body.documents
    assert texts is not None
    payload = RerankPayload(
        query=body.query,
        candidates=texts,
        score_mode=ScoreMode.RAW if body.raw_scores else ScoreMode.ACTIVATED,
        truncate=body.truncate is not False,
        truncation_side=body.truncation_direction,
        instruction=body.instruction,
        max_chunks_per_doc=body.max_chunks_per_doc,
        max_tokens_per_doc=body.max_tokens_per_doc,
    )
    ranked = await ranker.rank(payload, body.top_n, body.model)
    if body.documents is not None:
        return infinity.answer(ranked, texts, body.return_documents)
    return [
        TeiRank(index=r.index, score=r.score, text=texts[r.index] if body.return_text else None) for r in ranked.results
    ]


@router.get(
    "/info",
    response_model=TeiInfo,
    summary="The served model, as TEI describes it",
    responses=responses(ErrorType.NO_WORKER, ErrorType.QUEUE_UNAVAILABLE),
)
async def info(settings: SettingsDep, dispatcher: DispatcherDep) -> TeiInfo:
    """The default model (TEI serves one): its canonical name and its workers' max length (503 when none is alive)."""
    model = await dispatcher.route(None)
    workers = model.workers
    return TeiInfo(
        model_id=model.name,
        model_type=TeiModelType(reranker=RerankerLabels(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})),
        max_input_length=min(w.max_length for w in workers),
        max_client_batch_size=settings.max_candidates,
        version=__version__,
    )
