"""``GET /v1/models`` and ``GET /models``: the live models in OpenAI's list shape, as LiteLLM, Open WebUI and
vLLM's clients read it, each with what users ask about (aliases, workers, max length, batch size, queue depths)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from rerank_api.deps import DispatcherDep, MonitorDep
from rerank_api.errors import ApiError, ErrorType, responses


class ModelWorker(BaseModel):
    name: str
    host: str
    device: str
    dtype: str
    max_length: int
    batch_size: int | None


class ModelCard(BaseModel):
    """One live model: OpenAI's ``id``, ``object``, ``created``, ``owned_by``, then this server's fields."""

    id: str = Field(description="The canonical name: what answers carry.")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the longest-running live worker of the model started.")
    owned_by: str = "rerank-server"
    aliases: list[str] = Field(description="The other names requests may give in `model`.")
    default: bool = Field(description="Requests without `model` go to this model.")
    source: str | None = Field(description="What its workers loaded (RERANK_MODEL): a hub id or a folder.")
    max_length: int = Field(description="Tokens per (query, text) pair: the smallest of its workers'.")
    batch_size: int | None = Field(description="Pairs per forward pass: the smallest of its workers'.")
    queue_depth: dict[str, int] = Field(description="Jobs waiting in its sync and bulk queues.")
    workers: list[ModelWorker]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


router = APIRouter(tags=["models"])


@router.get(
    "/v1/models",
    response_model=ModelList,
    summary="The models served now, with their aliases, workers and queues (OpenAI's list shape)",
    responses=responses(ErrorType.QUEUE_UNAVAILABLE),
)
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def models(dispatcher: DispatcherDep, monitor: MonitorDep) -> ModelList:
    """Every model with a live worker, found from the workers' heartbeats (a new one shows within a second)."""
    snapshot = await monitor.refresh_or_last()
    if snapshot.redis_error is not None:
        raise ApiError(ErrorType.QUEUE_UNAVAILABLE, snapshot.redis_error)
    cards = []
    for model in dispatcher.models().live.values():
        workers = model.workers
        batch_sizes = [w.batch_size for w in workers if w.batch_size is not None]
        cards.append(
            ModelCard(
                id=model.name,
                created=int(min(w.started_at for w in workers)),
                aliases=[n for n in model.served_names if n != model.name],
                default=model.default,
                source=next((w.source for w in workers if w.source), None),
                max_length=min(w.max_length for w in workers),
                batch_size=min(batch_sizes) if batch_sizes else None,
                queue_depth={q: snapshot.queue_depth.get(q, 0) for q in (model.sync_queue, model.bulk_queue)},
                workers=[ModelWorker.model_validate(w.model_dump()) for w in workers],
            )
        )
    return ModelList(data=cards)
