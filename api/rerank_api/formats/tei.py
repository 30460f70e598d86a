"""Text Embeddings Inference's rerank API: ``POST /rerank`` (a bare array) and ``GET /info``, as Dify's
TEI provider, RAGFlow and LlamaIndex's TEI reranker call them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from rerank_api.deps import DispatcherDep, MonitorDep, SettingsDep
from rerank_api.errors import ErrorType, responses
from rerank_api.ranking import RERANK_ERRORS, RankerDep
from rerank_contract import __version__
from rerank_contract.jobs import RerankPayload, ScoreMode, TruncationSide


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class TeiRerankRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"query": "machine learning", "texts": ["deep learning", "cooking recipes"], "return_text": True}
            ]
        }
    )

    query: str
    texts: list[str]
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

    model_id: str = Field(description="The live workers' model (comma-separated if they differ).")
    model_sha: str | None = None
    model_type: TeiModelType
    max_input_length: int = Field(description="Tokens per (query, text) pair: the smallest of the live workers'.")
    max_client_batch_size: int = Field(description="Texts per request (RERANK_MAX_CANDIDATES).")
    auto_truncate: bool = Field(True, description="Too-long pairs are cut unless a request sends truncate=false.")
    version: str


router = APIRouter(tags=["Text Embeddings Inference (TEI)"])


@router.post(
    "/rerank",
    response_model=list[TeiRank],
    response_model_exclude_none=True,
    summary="Rank texts (TEI format): a bare array, best first",
    responses=responses(*RERANK_ERRORS, ErrorType.INPUT_TOO_LONG),
)
async def rerank_tei(body: TeiRerankRequest, ranker: RankerDep) -> list[TeiRank]:
    """Every text's index and score, best first."""
    payload = RerankPayload(
        query=body.query,
        candidates=body.texts,
        score_mode=ScoreMode.RAW if body.raw_scores else ScoreMode.ACTIVATED,
        truncate=body.truncate is not False,
        truncation_side=body.truncation_direction,
    )
    ranked = await ranker.rank(payload)
    return [
        TeiRank(index=r.index, score=r.score, text=body.texts[r.index] if body.return_text else None)
        for r in ranked.results
    ]


@router.get(
    "/info",
    response_model=TeiInfo,
    summary="The served model, as TEI describes it",
    responses=responses(ErrorType.NO_WORKER, ErrorType.QUEUE_UNAVAILABLE),
)
async def info(settings: SettingsDep, dispatcher: DispatcherDep, monitor: MonitorDep) -> TeiInfo:
    """Needs a live worker: the model and its max length are the workers' own (503 when none is alive)."""
    dispatcher.check_can_serve()
    workers = monitor.snapshot.workers
    return TeiInfo(
        model_id=",".join(sorted({w.model for w in workers})),
        model_type=TeiModelType(reranker=RerankerLabels(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})),
        max_input_length=min(w.max_length for w in workers),
        max_client_batch_size=settings.max_candidates,
        version=__version__,
    )
